//go:build integration

package gateway_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/analytics"
	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/export"
	"github.com/herald-notify/herald/region/regiontest"
)

// analyticsOperatorToken reads central's query API.
const analyticsOperatorToken = "test-analytics-e2e-operator-0123456789abcdef"

// analyticsCentral is central analytics running in-process on addr with a private database,
// accepting the given regions' tokens.
type analyticsCentral struct {
	base string
	db   *pgxpool.Pool
}

func startAnalyticsCentral(t *testing.T, addr, ingestAddr string, tokens map[string]string, categories ...string) *analyticsCentral {
	t.Helper()
	cfg := analytics.DefaultConfig(t.TempDir())
	cfg.Listen = addr
	cfg.Ingest.Listen = ingestAddr
	srv := testenv.PKI(t).Server("analytics")
	cfg.Ingest.TLS = analytics.IngestTLSConfig{CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: srv.ClientCAFile}
	cfg.Postgres = testenv.Postgres(t)
	cfg.Regions = map[string]analytics.RegionConfig{}
	for name, tok := range tokens {
		cfg.Regions[name] = analytics.RegionConfig{Token: tok}
	}
	cfg.Operator.Token = analyticsOperatorToken
	cfg.Categories = analytics.CategoriesConfig{Global: categories}
	cfg.Prices = analytics.PriceConfig{Currency: "USD", SMS: analytics.SMSPrices{Default: 0.05, PerCountry: map[string]float64{"DE": 0.08, "US": 0.01}}}
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
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- analytics.Run(runCtx, cfg, slog.New(slog.DiscardHandler), "test") }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("analytics stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("analytics did not stop within 30s")
		}
		db.Close()
	})
	c := &analyticsCentral{base: "http://" + cfg.Listen, db: db}
	poll.Until(t, 30*time.Second, func() error {
		resp, err := http.Get(c.base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	return c
}

// query reads one of central's query endpoints for a region and app into dst.
func (c *analyticsCentral) query(t *testing.T, endpoint, region, app string, dst any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.base+endpoint+"?"+url.Values{"region": {region}, "app": {app}}.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+analyticsOperatorToken) // the query API answers operators only
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", endpoint, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(dst); err != nil {
		t.Fatalf("GET %s: %v", endpoint, err)
	}
}

// funnel is central's funnel of one region and app as stage -> count, and the withheld total.
func (c *analyticsCentral) funnel(t *testing.T, region, app string) (map[string]int64, int64) {
	t.Helper()
	var f analytics.Funnel
	c.query(t, "/v1/funnel", region, app, &f)
	out := map[string]int64{}
	for _, s := range f.Stages {
		out[s.Stage] = s.Count
	}
	return out, f.Withheld
}

// scanFor returns, for each needle found, the table.column of central's database holding it:
// every column of every table, read as text.
func (c *analyticsCentral) scanFor(t *testing.T, needles ...string) map[string][]string {
	t.Helper()
	ctx := context.Background()
	rows, err := c.db.Query(ctx, `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	var cols [][2]string
	for rows.Next() {
		var col [2]string
		if err := rows.Scan(&col[0], &col[1]); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, col)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(cols) == 0 {
		t.Fatal("central's database has no column to scan")
	}
	found := map[string][]string{}
	for _, col := range cols {
		for _, n := range needles {
			var hit bool
			q := fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %q WHERE position($1 in %q::text) > 0)`, col[0], col[1])
			if err := c.db.QueryRow(ctx, q, n).Scan(&hit); err != nil {
				t.Fatalf("scanning %s.%s: %v", col[0], col[1], err)
			}
			if hit {
				found[n] = append(found[n], col[0]+"."+col[1])
			}
		}
	}
	return found
}

// randomHex returns n random bytes in hex.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// Notifications sent through the gateway to users of two regions (12 in Germany, homed in an EU
// region, and 12 in the US) reach central analytics through each region's exporter: central's
// funnel of each region has the right count per stage, the SMS are priced by the numbers'
// countries, and a scan of every column of central's database finds none of the users' ids,
// device tokens, emails or phone numbers.
func TestNotificationsThroughTheGatewayReachTheCentralFunnelPerStageWithoutIdentifiers(t *testing.T) {
	const perRegion = 12 // at least k = 10, so every cell leaves its region as it is
	s, sc := regiontest.StartSim(t, 1)
	info := s.Info()
	// Every region runs the exporter role, shipping to central at centralAddr; central starts
	// once the regions (whose names newWorld picks) are known, and the exporters wait for it.
	centralAddr, centralIngestAddr := regiontest.FreePort(t), regiontest.FreePort(t)
	tokens := map[string]string{}
	w := newWorld(t, func(i int, rc *region.Config) {
		rc.Dispatch.Push.APNs = regiontest.SimAPNs(info)
		rc.Dispatch.Email.SMTP = regiontest.SimSMTP(info, sc)
		rc.Dispatch.SMS.Twilio = dispatch.TwilioConfig{BaseURL: info.SMS.URL, AccountSID: sc.SMS.AccountSID, AuthToken: sc.SMS.AuthToken, From: "+15005550006"}
		tokens[rc.Name] = fmt.Sprintf("test-analytics-e2e-%d-%s", i, randomHex(t, 8))
		rc.Roles = append(region.AllRoles(), region.RoleExporter)
		rc.Export = export.DefaultConfig()
		rc.Export.CentralURL, rc.Export.Token = "https://"+centralIngestAddr, tokens[rc.Name]
		cc := testenv.Exporter(t, rc.Name)
		rc.Export.TLS = export.TLSConfig{CAFile: cc.CAFile, CertFile: cc.CertFile, KeyFile: cc.KeyFile}
		rc.Export.Grace, rc.Export.Interval = time.Second, 200*time.Millisecond
	})
	c := startAnalyticsCentral(t, centralAddr, centralIngestAddr, tokens, "order")

	// Users through the gateway: their country picks the home region; each has an email, a
	// mobile number of its country and an iOS device.
	type group struct {
		region  string
		country string
		users   []string
	}
	groups := []*group{{region: w.eu1.Cfg.Name, country: "DE"}, {region: w.us1.Cfg.Name, country: "US"}}
	var identifiers []string
	for gi, g := range groups {
		for i := range perRegion {
			u := fmt.Sprintf("%s-%02d-%s", g.country, i, w.app)
			email := u + "@example.org"
			phone := fmt.Sprintf("+49151%08d", 30000000+gi*100+i)
			if g.country == "US" {
				phone = fmt.Sprintf("+1212555%04d", 1000+i)
			}
			device := randomHex(t, 32)
			out := w.must(http.StatusCreated, "PUT", "/v1/users/"+u, map[string]any{"country": g.country, "email": email, "phone": phone})
			if out["home_region"] != g.region {
				t.Fatalf("%s lives in %v, want %s", u, out["home_region"], g.region)
			}
			w.must(http.StatusCreated, "POST", "/v1/users/"+u+"/devices", map[string]any{"platform": "ios", "token": device, "device_id": "d-" + u})
			g.users = append(g.users, u)
			identifiers = append(identifiers, u, email, phone, device)
		}
	}

	// One send to all of them, with every event of it in one window: spread over two windows,
	// a cell could fall below k in each and be withheld rather than counted.
	if left := time.Until(time.Now().Truncate(time.Minute).Add(time.Minute)); left < 50*time.Second {
		t.Logf("waiting %s for the next minute", left.Round(time.Second))
		time.Sleep(left + 100*time.Millisecond)
	}
	sentAt := time.Now()
	send := w.must(http.StatusAccepted, "POST", "/v1/notifications", map[string]any{
		"type": "transactional", "category": "order", "title": "Order", "body": "Your order shipped",
		"recipients": append(append([]string{}, groups[0].users...), groups[1].users...),
		"channels":   []string{"in_app", "push", "email", "sms"},
	})
	if parts, _ := send["parts"].([]any); len(parts) != 2 {
		t.Fatalf("the send was not split between the two regions: %v", send)
	}
	for _, g := range groups {
		for _, u := range g.users {
			poll.Until(t, 30*time.Second, func() error {
				code, out, _ := w.call(w.key, "POST", "/v1/notifications/read-all", map[string]any{"user_id": u})
				if code != http.StatusOK || out["marked"] != float64(1) {
					return fmt.Errorf("read-all of %s: %d %v", u, code, out)
				}
				return nil
			})
		}
	}
	if d := time.Since(sentAt); time.Now().Truncate(time.Minute) != sentAt.Truncate(time.Minute) {
		t.Logf("note: sending and reading took %s and crossed into the next minute", d.Round(time.Millisecond))
	}

	// Per region: 12 accepted; 4 channels x 12 fanned out and delivered (in-app at fan-out,
	// the others by the providers); 3 provider channels x 12 dispatched; 12 read; no drop-off.
	want := map[string]int64{
		"accepted": perRegion, "fanned_out": 4 * perRegion, "suppressed": 0, "deferred": 0, "expired": 0,
		"dispatched": 3 * perRegion, "delivered": 4 * perRegion, "failed": 0, "dead_lettered": 0, "read": perRegion,
	}
	for _, g := range groups {
		poll.Until(t, 3*time.Minute, func() error {
			got, withheld := c.funnel(t, g.region, w.app)
			if !maps.Equal(got, want) || withheld != 0 {
				return fmt.Errorf("%s: central's funnel %v withheld %d, want %v withheld 0", g.region, got, withheld, want)
			}
			return nil
		})
		var lat analytics.Latency
		c.query(t, "/v1/latency", g.region, w.app, &lat)
		for _, tl := range lat.Tiers {
			if n := map[string]int64{"transactional": 4 * perRegion}[tl.Tier]; tl.Count != n {
				t.Errorf("%s: %d %s deliveries in the latency histograms, want %d", g.region, tl.Count, tl.Tier, n)
			}
		}
		var cost analytics.Cost
		c.query(t, "/v1/cost", g.region, w.app, &cost)
		if len(cost.SMS) != 1 || cost.SMS[0].Country != g.country || cost.SMS[0].Messages != perRegion {
			t.Errorf("%s: SMS by country %+v, want %d to %s", g.region, cost.SMS, perRegion, g.country)
		}
	}
	if got, _ := c.funnel(t, w.eu2.Cfg.Name, w.app); got["accepted"] != 0 {
		t.Errorf("the EU failover region, which had no user, reports %v", got)
	}

	// Nothing that identifies a user reached central. The app id is in its cells: the scan
	// finds what is there.
	if where := c.scanFor(t, w.app)[w.app]; len(where) == 0 {
		t.Fatalf("the scan does not find the app id %q: it would miss identifiers too", w.app)
	}
	if found := c.scanFor(t, identifiers...); len(found) > 0 {
		t.Errorf("identifiers found in central's database: %v", found)
	}
	t.Logf("central's funnel of each region equals %v; scanned central's database for %d identifiers (ids, emails, numbers, device tokens): none found", want, len(identifiers))
}
