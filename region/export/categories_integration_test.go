//go:build integration

package export_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/analytics"
	"github.com/herald-notify/herald/analytics/wire"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/migrate"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/export"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/schema"
	"github.com/herald-notify/herald/region/userkeys"
)

const (
	testRegion = "eu-west-1"
	testToken  = "test-export-categories-0123456789"
	// testOperatorToken reads central's query API.
	testOperatorToken = "test-export-operator-token-0123456789abcdef"
)

// central is central analytics in-process with a private database; restart runs it again on
// the same address and data with other registered categories.
type central struct {
	t    *testing.T
	cfg  analytics.Config
	db   *pgxpool.Pool
	stop func()
}

func startCentral(t *testing.T, categories ...string) *central {
	t.Helper()
	cfg := analytics.DefaultConfig(t.TempDir())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = ln.Addr().String()
	ln.Close()
	if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	cfg.Ingest.Listen = ln.Addr().String()
	ln.Close()
	srv := testenv.PKI(t).Server("analytics")
	cfg.Ingest.TLS = analytics.IngestTLSConfig{CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: srv.ClientCAFile}
	cfg.Postgres = testenv.Postgres(t)
	cfg.Regions = map[string]analytics.RegionConfig{testRegion: {Token: testToken}}
	cfg.Operator.Token = testOperatorToken
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
	c.Start(categories...)
	return c
}

// url is central's ingest listener (mutual TLS); opsURL its operators' listener.
func (c *central) url() string    { return "https://" + c.cfg.Ingest.Listen }
func (c *central) opsURL() string { return "http://" + c.cfg.Listen }

// Start runs central with categories registered for every app.
func (c *central) Start(categories ...string) {
	c.t.Helper()
	c.cfg.Categories = analytics.CategoriesConfig{Global: categories}
	if err := c.cfg.Validate(); err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- analytics.Run(ctx, c.cfg, slog.New(slog.DiscardHandler), "test") }()
	c.stop = func() {
		cancel()
		if err := <-done; err != nil {
			c.t.Errorf("analytics stopped with %v", err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(c.opsURL() + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal("analytics not ready after 30s")
}

func (c *central) Stop() {
	if c.stop != nil {
		s := c.stop
		c.stop = nil
		s()
	}
}

// categories sums central's stored cells of window w by category.
func (c *central) categories(w time.Time) map[string]int64 {
	c.t.Helper()
	rows, err := c.db.Query(context.Background(), `SELECT category, sum(count) FROM cells WHERE window_start = $1 GROUP BY 1`, w)
	if err != nil {
		c.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var cat string
		var n int64
		if err := rows.Scan(&cat, &n); err != nil {
			c.t.Fatal(err)
		}
		out[cat] = n
	}
	return out
}

// exporter is the exporter of a region whose Postgres holds only the region's migrations; the
// test hands it events records directly (no Kafka) and closes windows itself.
type exporter struct {
	t  *testing.T
	ex *export.Exporter
	pg *pgxpool.Pool
}

func newExporter(t *testing.T, c *central) *exporter {
	t.Helper()
	pgc := testenv.Postgres(t)
	ctx := testenv.Context(t, time.Minute)
	if err := migrate.Database(ctx, pgc, schema.Postgres(), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	pg, err := postgres.Connect(ctx, pgc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	cfg := export.DefaultConfig()
	cfg.CentralURL, cfg.Token = c.url(), testToken
	cc := testenv.Exporter(t, testRegion)
	cfg.TLS = export.TLSConfig{CAFile: cc.CAFile, CertFile: cc.CertFile, KeyFile: cc.KeyFile}
	ex, err := export.New(testRegion, cfg, kafka.Config{}, pg, userkeys.New(pg, testenv.MasterKeyring(t)), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return &exporter{t: t, ex: ex, pg: pg}
}

// deliver stores one record: users email deliveries of category in the window at.
func (e *exporter) deliver(at time.Time, category string, users int) {
	e.t.Helper()
	b := notify.EventBatch{App: "shop", Tier: notify.Marketing, Category: category, NotificationID: "n-" + testenv.Suffix(), DueAt: at, At: at}
	for i := range users {
		b.Outcomes = append(b.Outcomes, notify.Outcome{User: fmt.Sprintf("user-%s-%02d", category, i), Channel: notify.Email, Stage: notify.StageDelivered})
	}
	raw, err := json.Marshal(b)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.ex.Store(context.Background(), raw); err != nil {
		e.t.Fatal(err)
	}
}

// closeAll ships every window due and reports how many central acknowledged.
func (e *exporter) closeAll() int {
	e.t.Helper()
	n, err := e.ex.CloseWindows(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// refusal is what the exporter recorded as central's refusal of window w ("" if none).
func (e *exporter) refusal(w time.Time) string {
	e.t.Helper()
	var refused *string
	var shipped *int64
	if err := e.pg.QueryRow(context.Background(), `SELECT refused, shipped_version FROM analytics_windows WHERE window_start = $1`, w).Scan(&refused, &shipped); err != nil {
		e.t.Fatal(err)
	}
	if shipped == nil {
		e.t.Fatalf("window %s not shipped", w)
	}
	if refused == nil {
		return ""
	}
	return *refused
}

// A category central does not register no longer holds back the window it is in: the exporter
// folds it into "other" and central stores the whole window. When central stops registering a
// category the exporter still has in its cache, central's 400 makes the exporter fetch the
// categories again and ship the window folded. Central keeps refusing a crafted batch naming
// the category.
func TestUnregisteredCategoriesAreShippedAsOtherAndDoNotWedgeTheWindow(t *testing.T) {
	c := startCentral(t, "order", "promo")
	e := newExporter(t, c)
	base := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Minute)
	w1, w2, w3 := base, base.Add(time.Minute), base.Add(2*time.Minute)

	// Window 1: a registered category and one central never heard of.
	e.deliver(w1.Add(5*time.Second), "order", 10)
	e.deliver(w1.Add(6*time.Second), "flash-sale", 11)
	if n := e.closeAll(); n != 1 {
		t.Fatalf("%d windows shipped, want 1", n)
	}
	if r := e.refusal(w1); r != "" {
		t.Fatalf("window 1 refused: %s", r)
	}
	if got, want := c.categories(w1), map[string]int64{"order": 10, "other": 11}; !maps.Equal(got, want) {
		t.Errorf("window 1 at central: %v, want %v", got, want)
	}

	// Window 2: promo is registered, and shipped under its name (the exporter caches that).
	e.deliver(w2.Add(time.Second), "promo", 12)
	e.closeAll()
	if got, want := c.categories(w2), map[string]int64{"promo": 12}; !maps.Equal(got, want) || e.refusal(w2) != "" {
		t.Fatalf("window 2 at central: %v (refused %q), want %v", got, e.refusal(w2), want)
	}

	// Central drops promo; the exporter's cache still has it. Central refuses the first post,
	// the exporter refreshes and ships the window again with promo as other.
	c.Stop()
	c.Start("order")
	e.deliver(w3.Add(time.Second), "promo", 13)
	e.deliver(w3.Add(2*time.Second), "order", 10)
	e.closeAll()
	if r := e.refusal(w3); r != "" {
		t.Fatalf("window 3 refused: %s", r)
	}
	if got, want := c.categories(w3), map[string]int64{"order": 10, "other": 13}; !maps.Equal(got, want) {
		t.Errorf("window 3 at central: %v, want %v", got, want)
	}

	// The closed schema stands: a batch naming promo itself is refused, and stores nothing.
	bad := wire.Batch{Version: wire.Version, Region: testRegion, WindowStart: base.Add(3 * time.Minute), Cells: []wire.Cell{{
		Key: wire.Key{App: "shop", Tier: "marketing", Category: "promo", Channel: "email", Stage: "delivered"}, Count: 13, DistinctRecipients: 13}}}
	tc, err := testenv.Exporter(t, testRegion).TLS()
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	_, err = (&wire.Client{BaseURL: c.url(), Token: testToken, HTTP: hc}).Post(context.Background(), bad)
	if re := (*wire.RefusedError)(nil); !errors.As(err, &re) || re.Code != "unknown_category" || re.Field != "cells[0].category" {
		t.Errorf("a crafted batch with an unregistered category: %v, want 400 unknown_category", err)
	}
	if got := c.categories(bad.WindowStart); len(got) != 0 {
		t.Errorf("the refused batch stored %v", got)
	}
	var leaked int64
	if err := c.db.QueryRow(context.Background(), `SELECT count(*) FROM cells WHERE category IN ('flash-sale')`).Scan(&leaked); err != nil || leaked != 0 {
		t.Errorf("%d cells name the unregistered category centrally (%v)", leaked, err)
	}
}
