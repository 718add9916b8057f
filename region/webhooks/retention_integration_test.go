//go:build integration

package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/region/webhooks"
)

var require = webhooks.Require

// metric is the value of the series of the default registry named name with labels.
func metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// doneDelivery stores a delivery of event with status (delivered or dead) done at doneAt.
func doneDelivery(t *testing.T, ctx context.Context, pg *pgxpool.Pool, app, endpoint, region, event, status string, doneAt time.Time) {
	t.Helper()
	if _, err := pg.Exec(ctx, `INSERT INTO webhook_deliveries (app_id, endpoint_id, event_id, region, event_type, user_id, payload,
			status, attempts, first_at, next_attempt_at, created_at, done_at)
		VALUES ($1, $2, $3, $4, 'notification.read', 'ada', '{}', $5, 1, $6, $6, $6, $6)`,
		app, endpoint, event, region, status, doneAt); err != nil {
		t.Fatal(err)
	}
}

// doneDeliveries stores n deliveries of status done at doneAt, doneAt+1ms, ...
func doneDeliveries(t testing.TB, ctx context.Context, pg *pgxpool.Pool, app, endpoint, region, status string, n int, doneAt time.Time) {
	t.Helper()
	if _, err := pg.Exec(ctx, `INSERT INTO webhook_deliveries (app_id, endpoint_id, event_id, region, event_type, user_id, payload,
			status, attempts, first_at, next_attempt_at, created_at, done_at)
		SELECT $1, $2, $5 || '-' || i, $3, 'notification.delivered', 'u' || (i % 1000),
			convert_to('{"type":"notification.delivered","timestamp":"2026-12-07T12:00:00Z","data":{"notification_id":"n-' || i || '","user_id":"u' || (i % 1000) || '","channel":"push"}}', 'UTF8'),
			$4, 1, t, t, t, t
		FROM generate_series(1, $6::int) AS i, LATERAL (SELECT $7::timestamptz + i * interval '1 millisecond' AS t) AS x`,
		app, endpoint, region, status, status+"-"+testenv.Suffix(), n, doneAt); err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, ctx context.Context, pg *pgxpool.Pool, where string, args ...any) int {
	t.Helper()
	var n int
	if err := pg.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSweepDeletesOnlyDoneRowsPastTheirRetention sweeps, on the real Postgres, a table holding
// every kind of row at ages either side of the retentions: delivered rows older than
// delivered_retention go, younger ones stay; dead letters stay past delivered_retention and go
// past dead_letter_retention (and then cannot be replayed); pending rows (due, leased by a
// deliverer, waiting for a retry) stay however old they are.
func TestSweepDeletesOnlyDoneRowsPastTheirRetention(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	pg := regiontest.Migrated(t, c)
	ctx := testenv.Context(t, 2*time.Minute)
	store := &webhooks.Store{DB: pg, Keys: testenv.MasterKeyring(t)}
	app := "app-" + testenv.Suffix()
	ep, _, err := store.Create(ctx, app, "EU", webhooks.Spec{URL: "http://127.0.0.1:1/unused"})
	require.NoError(t, err)
	cfg := webhooks.DefaultConfig() // 72h, 14 days
	now := time.Now().Truncate(time.Millisecond)
	month := now.Add(-30 * 24 * time.Hour)

	doneDelivery(t, ctx, pg, app, ep.ID, c.Name, "delivered-old", "delivered", now.Add(-cfg.DeliveredRetention-time.Minute))
	doneDelivery(t, ctx, pg, app, ep.ID, c.Name, "delivered-recent", "delivered", now.Add(-cfg.DeliveredRetention+time.Minute))
	doneDelivery(t, ctx, pg, app, ep.ID, c.Name, "dead-4-days", "dead", now.Add(-96*time.Hour))
	doneDelivery(t, ctx, pg, app, ep.ID, c.Name, "dead-old", "dead", now.Add(-cfg.DeadLetterRetention-time.Minute))
	// Pending rows made a month ago: due now, leased by a deliverer, waiting for a retry; and
	// one with a done_at left from before a replay (replays clear it; status is what counts).
	for _, p := range []struct {
		event    string
		next     time.Time
		attempts int
		done     *time.Time
	}{
		{"pending-due", month, 0, nil},
		{"pending-leased", now.Add(65 * time.Second), 0, nil},
		{"pending-retrying", now.Add(time.Hour), 7, nil},
		{"pending-replayed", now, 0, &month},
	} {
		if _, err := pg.Exec(ctx, `INSERT INTO webhook_deliveries (app_id, endpoint_id, event_id, region, event_type, user_id, payload,
				attempts, first_at, next_attempt_at, created_at, done_at)
			VALUES ($1, $2, $3, $4, 'notification.read', 'ada', '{}', $5, $6, $7, $6, $8)`,
			app, ep.ID, p.event, c.Name, p.attempts, month, p.next, p.done); err != nil {
			t.Fatal(err)
		}
	}
	delivered := map[string]string{"region": c.Name, "reason": "delivered"}
	dead := map[string]string{"region": c.Name, "reason": "dead_letter"}
	deliveredBefore := metric(t, "herald_webhook_retention_deleted_total", delivered)
	deadBefore := metric(t, "herald_webhook_retention_deleted_total", dead)

	s := &webhooks.Sweeper{Region: c.Name, Store: store, Cfg: cfg, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }}
	res, err := s.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, webhooks.SweepResult{Delivered: 1, DeadLetters: 1}, res)
	var left []string
	rows, err := pg.Query(ctx, `SELECT event_id FROM webhook_deliveries WHERE app_id = $1 ORDER BY event_id`, app)
	require.NoError(t, err)
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		left = append(left, id)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"dead-4-days", "delivered-recent", "pending-due", "pending-leased", "pending-replayed", "pending-retrying"}, left)
	require.Equal(t, 1.0, metric(t, "herald_webhook_retention_deleted_total", delivered)-deliveredBefore)
	require.Equal(t, 1.0, metric(t, "herald_webhook_retention_deleted_total", dead)-deadBefore)
	require.Equal(t, (cfg.DeliveredRetention - time.Minute).Seconds(), metric(t, "herald_webhook_retention_oldest_age_seconds", delivered))
	require.Equal(t, (96 * time.Hour).Seconds(), metric(t, "herald_webhook_retention_oldest_age_seconds", dead))

	// A second sweep finds nothing more; the dead letter kept replays, the one deleted does not.
	res, err = s.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, webhooks.SweepResult{}, res)
	n, err := store.Replay(ctx, app, "EU", ep.ID, c.Name, []string{"dead-4-days", "dead-old"})
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
}

// TestSweepHonoursItsBatch deletes 2,500 rows past the retention with sweep_batch 1000: three
// statements of at most 1000 rows, the oldest first, until none is left.
func TestSweepHonoursItsBatch(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	pg := regiontest.Migrated(t, c)
	ctx := testenv.Context(t, 2*time.Minute)
	store := &webhooks.Store{DB: pg, Keys: testenv.MasterKeyring(t)}
	app := "app-" + testenv.Suffix()
	ep, _, err := store.Create(ctx, app, "EU", webhooks.Spec{URL: "http://127.0.0.1:1/unused"})
	require.NoError(t, err)
	now := time.Now()
	doneDeliveries(t, ctx, pg, app, ep.ID, c.Name, "delivered", 2500, now.Add(-100*time.Hour))
	doneDeliveries(t, ctx, pg, app, ep.ID, c.Name, "delivered", 10, now.Add(-time.Hour))

	cfg := webhooks.DefaultConfig()
	cfg.SweepBatch = 1000
	counter := &webhooks.BatchCounter{Store: store}
	s := &webhooks.Sweeper{Region: c.Name, Store: counter, Cfg: cfg, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }}
	res, err := s.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(2500), res.Delivered)
	require.Equal(t, []int64{1000, 1000, 500, 0}, counter.Batches(), "three batches of delivered rows, one finding no dead letter")
	require.Equal(t, 10, count(t, ctx, pg, `app_id = $1`, app))
}

// TestTwoSweepersDeleteEachRowOnceAndNeitherWaits runs the sweeps of two regions of the
// jurisdiction at once on its shared database while a deliverer (or a replay) holds one old row
// locked: together they delete every other row once, neither waits for the lock (each is done
// in seconds, where waiting would take the batch's minute), and the locked row shows in the
// oldest-row age, past the retention, until a later sweep deletes it.
func TestTwoSweepersDeleteEachRowOnceAndNeitherWaits(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	pg := regiontest.Migrated(t, c)
	ctx := testenv.Context(t, 3*time.Minute)
	other, err := postgres.Connect(ctx, c.Postgres) // the other region's pool
	require.NoError(t, err)
	defer other.Close()
	keys := testenv.MasterKeyring(t)
	store := &webhooks.Store{DB: pg, Keys: keys}
	app := "app-" + testenv.Suffix()
	ep, _, err := store.Create(ctx, app, "EU", webhooks.Spec{URL: "http://127.0.0.1:1/unused"})
	require.NoError(t, err)
	now := time.Now()
	const rows = 20_000
	doneDeliveries(t, ctx, pg, app, ep.ID, c.Name, "delivered", rows, now.Add(-100*time.Hour))
	var lockedID string
	require.NoError(t, pg.QueryRow(ctx, `SELECT event_id FROM webhook_deliveries WHERE app_id = $1 ORDER BY done_at LIMIT 1`, app).Scan(&lockedID))
	tx, err := pg.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // committed below
	_, err = tx.Exec(ctx, `SELECT 1 FROM webhook_deliveries WHERE app_id = $1 AND event_id = $2 FOR UPDATE`, app, lockedID)
	require.NoError(t, err)

	cfg := webhooks.DefaultConfig()
	cfg.SweepBatch = 500
	regions := []string{c.Name, "zz-" + regiontest.Letters() + "-2"}
	sweepers := []*webhooks.Sweeper{
		{Region: regions[0], Store: store, Cfg: cfg, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }},
		{Region: regions[1], Store: &webhooks.Store{DB: other, Keys: keys}, Cfg: cfg, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }},
	}
	var wg sync.WaitGroup
	results := make([]webhooks.SweepResult, 2)
	took := make([]time.Duration, 2)
	errs := make([]error, 2)
	start := make(chan struct{})
	for i, s := range sweepers {
		wg.Go(func() {
			<-start
			t0 := time.Now()
			results[i], errs[i] = s.Sweep(ctx)
			took[i] = time.Since(t0)
		})
	}
	close(start)
	wg.Wait()
	for i := range sweepers {
		require.NoError(t, errs[i])
		require.True(t, took[i] < 20*time.Second, "sweeper %d took %s: it waited for a lock", i, took[i])
	}
	t.Logf("deleted %d and %d in %s and %s", results[0].Delivered, results[1].Delivered, took[0], took[1])
	require.Equal(t, int64(rows-1), results[0].Delivered+results[1].Delivered, "each row deleted once")
	require.Equal(t, 1, count(t, ctx, pg, `app_id = $1`, app))
	require.Equal(t, 1, count(t, ctx, pg, `app_id = $1 AND event_id = $2`, app, lockedID))
	// Stuck past the retention: the age an operator is alerted on.
	age := metric(t, "herald_webhook_retention_oldest_age_seconds", map[string]string{"region": regions[0], "reason": "delivered"})
	require.True(t, age > cfg.DeliveredRetention.Seconds(), "oldest age %.0fs within the retention while a row is stuck", age)

	require.NoError(t, tx.Commit(ctx))
	res, err := sweepers[1].Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), res.Delivered)
	require.Equal(t, 0.0, metric(t, "herald_webhook_retention_oldest_age_seconds", map[string]string{"region": regions[1], "reason": "delivered"}))
}

// TestRedeliveredEventWithinTheRetentionIsDeliveredOnce is what the retention must never break:
// an events record read again (a Kafka redelivery after a crash or a rebalance) while its
// deliveries are within delivered_retention finds their rows, even after sweeps, and no
// webhook is sent twice. Once the rows are deleted (past the retention: a record Kafka no
// longer keeps, so never read again in production), the same record would be delivered again:
// the row is the only thing that stops it.
func TestRedeliveredEventWithinTheRetentionIsDeliveredOnce(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	pg := regiontest.Migrated(t, c)
	ctx := testenv.Context(t, 2*time.Minute)
	store := &webhooks.Store{DB: pg, Keys: testenv.MasterKeyring(t)}
	app := "app-" + testenv.Suffix()
	var mu sync.Mutex
	seen := map[string]int{}
	var got atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("webhook-id")]++
		mu.Unlock()
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	_, _, err := store.Create(ctx, app, "EU", webhooks.Spec{URL: srv.URL})
	require.NoError(t, err)
	batch := notify.EventBatch{App: app, NotificationID: "n-1", At: time.Now(), Outcomes: []notify.Outcome{
		{User: "ada", Channel: notify.ChannelAll, Stage: notify.StageAccepted},
		{User: "ada", Channel: notify.InApp, Stage: notify.StageDelivered},
	}}
	raw, err := json.Marshal(batch)
	require.NoError(t, err)
	cfg := webhooks.DefaultConfig()
	cons := &webhooks.Consumer{Region: c.Name, Jurisdiction: "EU", Store: store, Log: slog.New(slog.DiscardHandler)}
	d := &webhooks.Deliverer{Region: c.Name, Store: store, Cfg: cfg, Client: webhooks.NewClient(time.Second, true), Log: slog.New(slog.DiscardHandler)}
	deliverAll := func() {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for count(t, ctx, pg, `app_id = $1 AND status = 'pending'`, app) > 0 {
			if time.Now().After(deadline) {
				t.Fatal("deliveries still pending after 30s")
			}
			_, err := d.Pass(ctx)
			require.NoError(t, err)
		}
	}
	require.NoError(t, cons.Handle(ctx, raw))
	deliverAll()
	require.Equal(t, int32(2), got.Load())
	deliveredAt := time.Now()

	// Sweeps at any time within the retention delete nothing; the record read again then
	// stores nothing and sends nothing.
	clock := deliveredAt
	s := &webhooks.Sweeper{Region: c.Name, Store: store, Cfg: cfg, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return clock }}
	for _, after := range []time.Duration{time.Minute, cfg.Horizon, webhooks.EventsTopicRetention + time.Hour, cfg.DeliveredRetention - time.Minute} {
		clock = deliveredAt.Add(after)
		res, err := s.Sweep(ctx)
		require.NoError(t, err)
		require.Equal(t, webhooks.SweepResult{}, res, "swept %s after delivery", after)
		require.NoError(t, cons.Handle(ctx, raw), "the record redelivered %s after", after)
		require.Equal(t, 0, count(t, ctx, pg, `app_id = $1 AND status = 'pending'`, app), "redelivered %s after", after)
		deliverAll()
	}
	require.Equal(t, int32(2), got.Load())
	for id, n := range seen {
		require.Equal(t, 1, n, "webhook-id %s", id)
	}

	// Past the retention the rows go: were the record read again, it would be sent again.
	clock = time.Now().Add(cfg.DeliveredRetention + time.Minute)
	res, err := s.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(2), res.Delivered)
	require.NoError(t, cons.Handle(ctx, raw))
	require.Equal(t, 2, count(t, ctx, pg, `app_id = $1 AND status = 'pending'`, app))
}

// TestSweepRate measures how fast the sweep deletes, on a table of WEBHOOK_RETENTION_BENCH_ROWS
// delivered rows past the retention (and a tenth as many within it, and pending), at
// webhooks.sweep_batch (5000, or WEBHOOK_RETENTION_BENCH_BATCH). It prints rows/s. The rows
// are stored in done_at order, or in random order with WEBHOOK_RETENTION_BENCH_SHUFFLED=1.
//
//	WEBHOOK_RETENTION_BENCH_ROWS=1000000 go test -tags integration -count=1 -run TestSweepRate -v ./region/webhooks/
func TestSweepRate(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("WEBHOOK_RETENTION_BENCH_ROWS"))
	if n <= 0 {
		t.Skip("WEBHOOK_RETENTION_BENCH_ROWS is not set")
	}
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	pg := regiontest.Migrated(t, c)
	ctx := testenv.Context(t, 30*time.Minute)
	store := &webhooks.Store{DB: pg, Keys: testenv.MasterKeyring(t)}
	app := "app-" + testenv.Suffix()
	ep, _, err := store.Create(ctx, app, "EU", webhooks.Spec{URL: "http://127.0.0.1:1/unused"})
	require.NoError(t, err)
	now := time.Now()
	t0 := time.Now()
	const chunk = 100_000
	for i := 0; i < n; i += chunk {
		doneDeliveries(t, ctx, pg, app, ep.ID, c.Name, "delivered", min(chunk, n-i), now.Add(-100*time.Hour).Add(time.Duration(i)*time.Millisecond))
	}
	doneDeliveries(t, ctx, pg, app, ep.ID, c.Name, "delivered", n/10, now.Add(-time.Hour))
	doneDeliveries(t, ctx, pg, app, ep.ID, c.Name, "pending", n/10, now.Add(-time.Hour))
	if os.Getenv("WEBHOOK_RETENTION_BENCH_SHUFFLED") != "" {
		// The rows in random places: a table whose freed space new rows have filled, so each
		// batch reads about as many pages as it deletes rows.
		if _, err := pg.Exec(ctx, `CREATE TABLE shuffled AS SELECT * FROM webhook_deliveries ORDER BY random();
			TRUNCATE webhook_deliveries; INSERT INTO webhook_deliveries SELECT * FROM shuffled; DROP TABLE shuffled`); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pg.Exec(ctx, `VACUUM ANALYZE webhook_deliveries`); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d rows stored in %s", n+n/5, time.Since(t0).Round(time.Second))

	cfg := webhooks.DefaultConfig()
	if b, _ := strconv.Atoi(os.Getenv("WEBHOOK_RETENTION_BENCH_BATCH")); b > 0 {
		cfg.SweepBatch = b
	}
	counter := &webhooks.BatchCounter{Store: store}
	s := &webhooks.Sweeper{Region: c.Name, Store: counter, Cfg: cfg, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }}
	// The WAL written meanwhile, and the full-page images in it (the server's: other work on it
	// counts too).
	wal := func() (lsn string, fpi int64) {
		t.Helper()
		require.NoError(t, pg.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text, wal_fpi FROM pg_stat_wal`).Scan(&lsn, &fpi))
		return lsn, fpi
	}
	lsn0, fpi0 := wal()
	start := time.Now()
	res, err := s.Sweep(ctx)
	took := time.Since(start)
	lsn1, fpi1 := wal()
	var walBytes int64
	require.NoError(t, pg.QueryRow(ctx, `SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::bigint`, lsn1, lsn0).Scan(&walBytes))
	fmt.Printf("sweep: WAL %d MB (%d bytes per row deleted), %d full-page images\n", walBytes>>20, walBytes/max(res.Delivered, 1), fpi1-fpi0)
	require.NoError(t, err)
	require.Equal(t, int64(n), res.Delivered)
	require.Equal(t, n/10+n/10, count(t, ctx, pg, `app_id = $1`, app))
	fmt.Printf("sweep: %d rows deleted in %s (%d batches of %d): %.0f rows/s\n",
		res.Delivered, took.Round(time.Millisecond), len(counter.Batches()), cfg.SweepBatch, float64(res.Delivered)/took.Seconds())
}
