//go:build integration

package region_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/analytics"
	"github.com/herald-notify/herald/analytics/wire"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/export"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/regiontest"
)

// central is central analytics running in-process on a free port with a private database; it
// can be stopped and started again on the same port and data.
type central struct {
	t    *testing.T
	cfg  analytics.Config
	db   *pgxpool.Pool
	stop func()
}

func startCentral(t *testing.T, tokens map[string]string) *central {
	t.Helper()
	cfg := analytics.DefaultConfig(t.TempDir())
	cfg.Listen = regiontest.FreePort(t)
	cfg.Ingest.Listen = regiontest.FreePort(t)
	srv := testenv.PKI(t).Server("analytics")
	cfg.Ingest.TLS = analytics.IngestTLSConfig{CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: srv.ClientCAFile}
	cfg.Postgres = testenv.Postgres(t)
	cfg.Regions = map[string]analytics.RegionConfig{}
	for name, tok := range tokens {
		cfg.Regions[name] = analytics.RegionConfig{Token: tok}
	}
	cfg.Operator.Token = "test-export-e2e-operator-token-0123456789abcdef"
	cfg.Categories = analytics.CategoriesConfig{Global: []string{"order", "security"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, 2*time.Minute)
	if err := analytics.Migrate(ctx, cfg, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	db, err := postgres.Connect(ctx, cfg.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	c := &central{t: t, cfg: cfg, db: db}
	t.Cleanup(func() { c.Stop(); db.Close() })
	c.Start()
	return c
}

// url is central's ingest listener (mutual TLS); opsURL its operators' listener.
func (c *central) url() string    { return "https://" + c.cfg.Ingest.Listen }
func (c *central) opsURL() string { return "http://" + c.cfg.Listen }

func (c *central) Start() {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- analytics.Run(ctx, c.cfg, slog.New(slog.DiscardHandler), "test") }()
	c.stop = func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				c.t.Errorf("analytics stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			c.t.Error("analytics did not stop within 30s")
		}
	}
	poll.Until(c.t, 30*time.Second, func() error {
		resp, err := http.Get(c.opsURL() + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
}

func (c *central) Stop() {
	if c.stop != nil {
		s := c.stop
		c.stop = nil
		s()
	}
}

// counts sums central's stored cells of one region by channel/stage/reason.
func (c *central) counts(region string) map[string]int64 {
	c.t.Helper()
	rows, err := c.db.Query(context.Background(), `SELECT channel, stage, reason, sum(count) FROM cells WHERE region = $1 GROUP BY 1, 2, 3`, region)
	if err != nil {
		c.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var ch, stage, reason string
		var n int64
		if err := rows.Scan(&ch, &stage, &reason, &n); err != nil {
			c.t.Fatal(err)
		}
		out[strings.TrimSuffix(ch+"/"+stage+"/"+reason, "/")] = n
	}
	return out
}

func (c *central) withheld(region string) int64 {
	c.t.Helper()
	var n int64
	if err := c.db.QueryRow(context.Background(), `SELECT coalesce(sum(withheld), 0) FROM batches WHERE region = $1`, region).Scan(&n); err != nil {
		c.t.Fatal(err)
	}
	return n
}

// simDispatch points a region's email and SMS dispatch at the simulators.
func simDispatch(t *testing.T) func(*region.Config) {
	s, sc := regiontest.StartSim(t, 1)
	info := s.Info()
	return func(c *region.Config) {
		c.Dispatch.Email.SMTP = dispatch.SMTPConfig{Addr: info.SMTP.Addr, Username: sc.SMTP.Username, Password: sc.SMTP.Password,
			From: "Herald <noreply@herald.local>", CAFile: info.CAFile}
		c.Dispatch.SMS.Twilio = dispatch.TwilioConfig{BaseURL: info.SMS.URL, AccountSID: sc.SMS.AccountSID, AuthToken: sc.SMS.AuthToken, From: "+15005550006"}
	}
}

// withExporter adds the exporter role, shipping to c with token, the region's exporter
// certificate of the test PKI and a short grace.
func withExporter(c *central, token string) func(*region.Config) {
	return func(rc *region.Config) {
		rc.Roles = append(region.AllRoles(), region.RoleExporter)
		rc.Export = export.DefaultConfig()
		rc.Export.CentralURL, rc.Export.Token = c.url(), token
		cc := testenv.Exporter(c.t, rc.Name)
		rc.Export.TLS = export.TLSConfig{CAFile: cc.CAFile, CertFile: cc.CertFile, KeyFile: cc.KeyFile}
		rc.Export.Grace, rc.Export.Interval = time.Second, 200*time.Millisecond
	}
}

// population is a test's users in one region: normal ones with an email and a German number,
// and hard-stopped ones, fewer than k, whose suppressions must not leave the region as a cell.
type population struct {
	normal, stopped []string
	secrets         []string // ids, emails, numbers
}

func register(t *testing.T, r *running, prefix string, normal, stopped int) population {
	t.Helper()
	var p population
	for i := range normal + stopped {
		user := fmt.Sprintf("%s-%s-%02d", prefix, testenv.Suffix(), i)
		email := user + "@example.org"
		phone := fmt.Sprintf("+49151%08d", 40000000+i)
		if code, b := r.call("PUT", "/v1/users/"+user, map[string]any{"email": email, "phone": phone}, r.app); code != 201 {
			t.Fatalf("put user: %d %v", code, b)
		}
		if i >= normal {
			if code, b := r.call("PUT", "/v1/users/"+user+"/preferences", map[string]any{"hard_stop": true}, r.app); code != 200 {
				t.Fatalf("hard stop: %d %v", code, b)
			}
			p.stopped = append(p.stopped, user)
		} else {
			p.normal = append(p.normal, user)
		}
		p.secrets = append(p.secrets, user, email, phone)
	}
	return p
}

// send sends one transactional order notification to every user on in-app, email and SMS.
func send(t *testing.T, r *running, users []string) string {
	t.Helper()
	code, b := r.call("POST", "/v1/notifications", map[string]any{"type": "transactional", "category": "order", "title": "Order", "body": "Shipped",
		"recipients": users, "channels": []string{"in_app", "email", "sms"}}, r.app)
	if code != 202 {
		t.Fatalf("send: %d %v", code, b)
	}
	return b["notification_id"].(string)
}

// wantCounts is what central must hold for one send to p, read by every normal user.
func wantCounts(p population, sends int64) map[string]int64 {
	n := int64(len(p.normal)) * sends
	return map[string]int64{
		"all/accepted":      int64(len(p.normal)+len(p.stopped)) * sends,
		"in_app/fanned_out": n, "email/fanned_out": n, "sms/fanned_out": n,
		"in_app/delivered": n, "email/delivered": n, "sms/delivered": n,
		"email/dispatched": n, "sms/dispatched": n,
		"in_app/read": n,
	}
}

// startOfQuietMinute waits, if needed, for a minute with room for a whole send, so a test's
// events fall in one window and its cells are not split below k across two.
func startOfQuietMinute(t *testing.T, room time.Duration) {
	if left := time.Until(time.Now().Truncate(time.Minute).Add(time.Minute)); left < room {
		t.Logf("waiting %s for the next minute", left.Round(time.Second))
		time.Sleep(left + 100*time.Millisecond)
	}
}

func (r *running) events() int64 {
	var n int64
	if err := r.pg.QueryRow(context.Background(), `SELECT count(*) FROM analytics_events`).Scan(&n); err != nil {
		r.t.Fatal(err)
	}
	return n
}

// Notifications to users of two regions reach central with the right count per stage; the
// hard-stopped few (below k) are withheld, no cell below k is stored, and central's database
// holds none of the users' ids, emails or numbers.
func TestDeliveryEventsOfTwoRegionsReachCentralExactlyAndAnonymously(t *testing.T) {
	names := []string{"zz-" + regiontest.Letters() + "-1", "zz-" + regiontest.Letters() + "-1"}
	tokens := map[string]string{names[0]: "test-export-token-a-0123456789", names[1]: "test-export-token-b-0123456789"}
	c := startCentral(t, tokens)
	sim := simDispatch(t)
	var regions []*running
	var pops []population
	for i, name := range names {
		r := startRegion(t, func(rc *region.Config) {
			n := regiontest.Config(t, name, "EU", t.TempDir())
			n.Listen, n.Scheduler.Interval = rc.Listen, rc.Scheduler.Interval
			*rc = n
		}, sim, withExporter(c, tokens[name]))
		regions = append(regions, r)
		pops = append(pops, register(t, r, fmt.Sprintf("u%d", i), 12, 3))
	}
	startOfQuietMinute(t, 40*time.Second)
	for i, r := range regions {
		send(t, r, append(pops[i].normal, pops[i].stopped...))
	}
	for i, r := range regions {
		for _, u := range pops[i].normal {
			poll.Until(t, 30*time.Second, func() error {
				code, b := r.call("POST", "/v1/notifications/read-all", map[string]any{"user_id": u}, r.app)
				if code != 200 || b["marked"].(float64) != 1 {
					return fmt.Errorf("read-all of %s: %d %v", u, code, b)
				}
				return nil
			})
		}
	}
	for i, name := range names {
		want := wantCounts(pops[i], 1)
		poll.Until(t, 3*time.Minute, func() error {
			if got := c.counts(name); !maps.Equal(got, want) {
				return fmt.Errorf("%s: central holds %v, want %v", name, got, want)
			}
			return nil
		})
		// 3 stopped users x 3 channels: a cell of 3 recipients, below k even as channel "all".
		if w := c.withheld(name); w != 9 {
			t.Errorf("%s: withheld %d, want 9", name, w)
		}
	}

	var below int64
	if err := c.db.QueryRow(context.Background(), `SELECT count(*) FROM cells WHERE distinct_recipients < $1`, wire.DefaultK).Scan(&below); err != nil || below != 0 {
		t.Errorf("%d cells below k stored centrally (%v)", below, err)
	}
	var secrets []string
	for _, p := range pops {
		secrets = append(secrets, p.secrets...)
	}
	scanForSecrets(t, c.db, secrets, "order")
	t.Logf("central holds %v and %v", c.counts(names[0]), c.counts(names[1]))
}

// scanForSecrets fails the test if any column of any table of db holds one of secrets, after
// checking that the scan finds a value that must be there.
func scanForSecrets(t *testing.T, db *pgxpool.Pool, secrets []string, present string) {
	t.Helper()
	ctx := context.Background()
	rows, err := db.Query(ctx, `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'`)
	if err != nil {
		t.Fatal(err)
	}
	var cols [][2]string
	for rows.Next() {
		var c [2]string
		if err := rows.Scan(&c[0], &c[1]); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	rows.Close()
	found := func(v string) []string {
		var where []string
		for _, c := range cols {
			var n int64
			if err := db.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %q WHERE position($1 in %q::text) > 0`, c[0], c[1]), v).Scan(&n); err != nil {
				t.Fatalf("scanning %s.%s: %v", c[0], c[1], err)
			}
			if n > 0 {
				where = append(where, c[0]+"."+c[1])
			}
		}
		return where
	}
	if len(found(present)) == 0 {
		t.Fatalf("the scan does not find %q: it would miss identifiers too", present)
	}
	for _, s := range secrets {
		if where := found(s); len(where) > 0 {
			t.Errorf("%q found centrally in %v", s, where)
		}
	}
	t.Logf("scanned %d columns for %d identifiers: none found", len(cols), len(secrets))
}

// The exporter killed with SIGKILL mid-window (before shipping it) and central restarted while
// events kept coming: the final counts equal the events sent. A record produced twice (a
// redelivered stage) counts once, even when the repeat comes a minute later.
func TestExporterKilledMidWindowAndCentralRestartedCountExactlyAndDuplicatesOnce(t *testing.T) {
	name := "zz-" + regiontest.Letters() + "-1"
	token := "test-export-token-c-0123456789"
	c := startCentral(t, map[string]string{name: token})
	r := startRegion(t, func(rc *region.Config) {
		n := regiontest.Config(t, name, "EU", t.TempDir())
		n.Listen, n.Scheduler.Interval = rc.Listen, rc.Scheduler.Interval
		*rc = n
	}, simDispatch(t))
	p := register(t, r, "k", 12, 3)
	exporterCfg := r.cfg
	withExporter(c, token)(&exporterCfg)
	startOfQuietMinute(t, 45*time.Second)

	child := startRoleChild(t, exporterCfg, []string{region.RoleExporter}, "exporter-1.log")
	send(t, r, append(p.normal, p.stopped...))
	// Killed once it stored part of the window, which cannot have closed yet.
	poll.Until(t, 30*time.Second, func() error {
		if n := r.events(); n < 30 {
			return fmt.Errorf("%d events stored", n)
		}
		return nil
	})
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = child.Process.Wait()
	var shipped int64
	_ = r.pg.QueryRow(context.Background(), `SELECT count(*) FROM analytics_windows WHERE shipped_version IS NOT NULL`).Scan(&shipped)
	if shipped != 0 {
		t.Fatalf("%d windows shipped before the kill: the test does not kill mid-window", shipped)
	}

	// Central goes down; more events arrive, among them one record twice.
	c.Stop()
	send(t, r, append(p.normal, p.stopped...))
	prod, err := kafka.NewProducer(r.cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	dup := notify.EventBatch{App: r.app, Tier: notify.Transactional, Category: "security", NotificationID: "dup-" + testenv.Suffix(), At: time.Now()}
	for _, u := range p.normal {
		dup.Outcomes = append(dup.Outcomes, notify.Outcome{User: u, Channel: notify.ChannelAll, Stage: notify.StageAccepted})
	}
	m, _, err := dup.Message(context.Background(), r.keys(), r.cfg.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := prod.Send(context.Background(), m, m); err != nil {
		t.Fatal(err)
	}
	c.Start()
	startRoleChild(t, exporterCfg, []string{region.RoleExporter}, "exporter-2.log")

	want := wantCounts(p, 2)
	delete(want, "in_app/read")
	want["all/accepted"] += int64(len(p.normal)) // the duplicated record, once
	poll.Until(t, 3*time.Minute, func() error {
		if got := c.counts(name); !maps.Equal(got, want) {
			return fmt.Errorf("central holds %v, want %v", got, want)
		}
		return nil
	})
	// The same record again, now in a later window: still once.
	dup.At = dup.At.Add(time.Minute)
	m, _, _ = dup.Message(context.Background(), r.keys(), r.cfg.Name)
	if err := prod.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	before := r.events()
	r.waitConsumed(export.Group(r.cfg.Name), m.Topic)
	if after := r.events(); after != before {
		t.Errorf("the repeat a minute later stored %d rows", after-before)
	}
	if got := c.counts(name); !maps.Equal(got, want) {
		t.Errorf("after the late repeat central holds %v, want %v", got, want)
	}
	if w := c.withheld(name); w != 18 {
		t.Errorf("withheld %d, want 18 (3 stopped users x 3 channels, twice)", w)
	}
	raw, _ := json.Marshal(c.counts(name))
	t.Logf("central after the kill and restart: %s", raw)
}
