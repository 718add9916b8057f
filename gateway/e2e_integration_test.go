//go:build integration

package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/gocql/gocql"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/gateway"
	"github.com/herald-notify/herald/gateway/apikey"
	"github.com/herald-notify/herald/platform/cassandra"
	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/region/userkeys"
	"github.com/herald-notify/herald/residency/scan"
)

// world is a gateway in front of three private regions: EU = [eu1, eu2] (failover order,
// sharing the EU database and keyspace), US = [us1], and IN = [in1], which never runs.
type world struct {
	t              *testing.T
	gw             string
	cfg            gateway.Config
	disc           discovery.Backend
	eu1, eu2, us1  *regiontest.Running
	key, otherKey  string
	app, otherApp  string
	keys           *apikey.Store
	log            *lockedBuffer
	policyTemplate string
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const testPolicy = `version: %d
jurisdictions:
  EU:
    regions: [%s, %s]
    countries: [DE, FR, AT%s]
    allow_transit: false
    gateway_url: %s
  US:
    regions: [%s]
    countries: [US, CA]
    allow_transit: true
    gateway_url: %s
  IN:
    regions: [%s]
    countries: [IN]
    allow_transit: false
    gateway_url: http://in-gateway.invalid
`

func (w *world) putPolicy(version int, extraEU string) {
	w.t.Helper()
	doc := fmt.Sprintf(testPolicy, version, w.eu1.Cfg.Name, w.eu2.Cfg.Name, extraEU, w.cfg.PublicURL, w.us1.Cfg.Name, w.cfg.PublicURL, w.regionName("4"))
	if err := w.disc.Put(context.Background(), w.cfg.PolicyKey, []byte(doc)); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) regionName(n string) string { return "zz-" + w.policyTemplate + "-" + n }

// newWorld starts the gateway and the regions; mutate adjusts region i's config (0 eu1, 1 eu2, 2 us1).
func newWorld(t *testing.T, mutate ...func(i int, c *region.Config)) *world {
	t.Helper()
	return newWorldWith(t, nil, mutate...)
}

// newWorldWith is newWorld with gw adjusting the gateway's config too.
func newWorldWith(t *testing.T, gw func(*gateway.Config), mutate ...func(i int, c *region.Config)) *world {
	t.Helper()
	dir := t.TempDir()
	w := &world{t: t, policyTemplate: regiontest.Letters()}
	var wg sync.WaitGroup
	cfgs := make([]region.Config, 3)
	for i, j := range []string{"EU", "EU", "US"} {
		cfgs[i] = regiontest.Config(t, w.regionName(fmt.Sprint(i+1)), j, dir)
		cfgs[i].InternalToken = "region-secret"
		if i == 1 {
			// The EU regions share the jurisdiction's database and keyspace, as deployed.
			cfgs[1].Postgres.Database, cfgs[1].Cassandra.Keyspace = cfgs[0].Postgres.Database, cfgs[0].Cassandra.Keyspace
		}
		for _, m := range mutate {
			m(i, &cfgs[i])
		}
	}
	runs := make([]*regiontest.Running, 3)
	// eu1 first: it migrates the stores eu2 shares (herald migrate runs one region at a time).
	runs[0] = regiontest.Start(t, cfgs[0])
	for i := 1; i < len(cfgs); i++ {
		wg.Add(1)
		go func() { defer wg.Done(); runs[i] = regiontest.Start(t, cfgs[i]) }()
	}
	wg.Wait()
	for _, r := range runs {
		if r == nil {
			t.FailNow()
		}
	}
	w.eu1, w.eu2, w.us1 = runs[0], runs[1], runs[2]

	c := gateway.DefaultConfig(dir)
	c.Listen = regiontest.FreePort(t)
	c.PublicURL = "http://" + c.Listen
	c.Jurisdiction = "EU"
	c.RegionToken = "region-secret"
	pk := testenv.PKI(t)
	c.RegionTLS = gateway.RegionTLSConfig{CAFile: pk.CAFile(), CertFile: pk.CertFile("gateway"), KeyFile: pk.KeyFile("gateway")}
	c.Postgres = testenv.Postgres(t)
	c.Redis = testenv.Redis(t)
	c.Discovery.TTL = 3 * time.Second
	c.Health.Interval = 200 * time.Millisecond
	c.Health.Timeout = 500 * time.Millisecond
	c.Directory.SecretFile = filepath.Join(dir, "secret")
	if gw != nil {
		gw(&c)
	}
	if err := os.WriteFile(c.Directory.SecretFile, []byte(strings.Repeat("k", 48)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.DropDatabase(t, c.Postgres) })
	w.cfg = c
	var err error
	if w.disc, err = discovery.Open(c.Discovery); err != nil {
		t.Fatal(err)
	}
	w.putPolicy(1, "")

	ctx := testenv.Context(t, 5*time.Minute)
	if err := gateway.Migrate(ctx, c, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	pool, err := postgres.Connect(ctx, c.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	w.keys = apikey.NewStore(pool)
	w.app, w.otherApp = "app-"+testenv.Suffix(), "other-"+testenv.Suffix()
	if w.key, _, err = w.keys.Create(ctx, w.app, "test", nil); err != nil {
		t.Fatal(err)
	}
	if w.otherKey, _, err = w.keys.Create(ctx, w.otherApp, "test", nil); err != nil {
		t.Fatal(err)
	}

	w.log = &lockedBuffer{}
	gctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gateway.Run(gctx, c, slog.New(slog.NewTextHandler(w.log, nil)), "test") }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("gateway did not stop")
		}
	})
	w.gw = c.PublicURL
	poll.Until(t, 30*time.Second, func() error {
		resp, err := http.Get(w.gw + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	return w
}

// call sends a request to the gateway with key ("" for none) and decodes the JSON answer.
func (w *world) call(key, method, path string, body any) (int, map[string]any, http.Header) {
	w.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string: // sent as it is, for bodies json.Marshal cannot produce
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, w.gw+path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	if len(raw) > 0 && json.Unmarshal(raw, &out) != nil {
		w.t.Fatalf("%s %s: not JSON (%d): %s", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out, resp.Header
}

func (w *world) must(want int, method, path string, body any) map[string]any {
	w.t.Helper()
	code, out, _ := w.call(w.key, method, path, body)
	if code != want {
		w.t.Fatalf("%s %s: %d, want %d: %v", method, path, code, want, out)
	}
	return out
}

func errorCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

// stores opens a region's Postgres and Cassandra.
func stores(t *testing.T, r *regiontest.Running) (*pgxpool.Pool, *gocql.Session) {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	pg, err := postgres.Connect(ctx, r.Cfg.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	s, err := cassandra.Connect(ctx, r.Cfg.Cassandra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return pg, s
}

// usersIn lists which of users have rows in the region's Postgres users/devices/preferences
// tables and Cassandra inbox.
func usersIn(t *testing.T, r *regiontest.Running, app string, users ...string) map[string][]string {
	t.Helper()
	pg, cass := stores(t, r)
	found := map[string][]string{}
	for _, table := range []string{"users", "devices", "preferences"} {
		for _, u := range users {
			var n int
			if err := pg.QueryRow(context.Background(), "SELECT count(*) FROM "+table+" WHERE app_id = $1 AND user_id = $2", app, u).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				found[u] = append(found[u], "postgres."+table)
			}
		}
	}
	for _, u := range users {
		var n int
		if err := cass.Query(`SELECT count(*) FROM notification_log WHERE app_id = ? AND user_id = ? AND bucket = ?`, app, u, bucketNow()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			found[u] = append(found[u], "cassandra.notification_log")
		}
	}
	return found
}

func bucketNow() int { n := time.Now().UTC(); return n.Year()*100 + int(n.Month()) }

// kafkaMentions reads every message of the region's topics and reports which of needles appear.
func kafkaMentions(t *testing.T, r *regiontest.Running, needles ...string) []string {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V4_0_0_0
	client, err := sarama.NewClient(r.Cfg.Kafka.Brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	pg, _ := stores(t, r)
	keys := userkeys.New(pg, testenv.MasterKeyring(t))
	seen := map[string]bool{}
	for _, tp := range r.Cfg.Topics() {
		parts, err := client.Partitions(tp.Name)
		if err != nil {
			continue // never created: nothing in it
		}
		for _, p := range parts {
			hw, err := client.GetOffset(tp.Name, p, sarama.OffsetNewest)
			if err != nil || hw == 0 {
				continue
			}
			// Aborted transactions' records count too (read_uncommitted); the read ends at
			// the high watermark or, when that is a transaction marker, just before it.
			if _, err := kafka.ReadRange(context.Background(), consumer, tp.Name, p, 0, hw, 15*time.Second, func(m *sarama.ConsumerMessage) {
				// A sealed record names its users only inside their wraps: open it with the
				// region's data keys (an erased user's part stays shut).
				value, users := m.Value, []string(nil)
				if envelope.IsSealed(value) {
					if o, err := keys.Open(context.Background(), value); err == nil {
						value, users = o.Content, o.Users
					}
				}
				for _, n := range needles {
					if bytes.Contains(value, []byte(`"`+n+`"`)) || string(m.Key) == n || slices.Contains(users, n) {
						seen[n] = true
					}
				}
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var out []string
	for _, n := range needles {
		if seen[n] {
			out = append(out, n)
		}
	}
	return out
}

// scan runs the residency scan over the three regions against the gateway's directory.
func (w *world) scan() *scan.Report {
	w.t.Helper()
	ctx := testenv.Context(w.t, 2*time.Minute)
	pool, err := postgres.Connect(ctx, w.cfg.Postgres)
	if err != nil {
		w.t.Fatal(err)
	}
	defer pool.Close()
	secret, err := w.cfg.DirectorySecret()
	if err != nil {
		w.t.Fatal(err)
	}
	var regions []scan.Region
	for _, r := range []*regiontest.Running{w.eu1, w.eu2, w.us1} {
		c := r.Cfg
		regions = append(regions, scan.Region{Name: c.Name, Jurisdiction: c.Jurisdiction, Postgres: c.Postgres, Cassandra: c.Cassandra, Redis: c.Redis, Kafka: c.Kafka, MasterKeys: testenv.MasterKeyring(w.t)})
	}
	rep, err := scan.Run(ctx, regions, scan.Options{Secret: secret, Directory: scan.PostgresDirectory{DB: pool}, KafkaRecords: 10_000})
	if err != nil {
		w.t.Fatal(err)
	}
	return rep
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
