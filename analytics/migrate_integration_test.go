//go:build integration

package analytics

import (
	"context"
	"testing"
	"time"

	"github.com/herald-notify/herald/analytics/schema"
	"github.com/herald-notify/herald/analytics/wire"
	"github.com/herald-notify/herald/platform/migrate"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/testenv"
)

// A database holding minute data from before the hourly tables gets them filled by the
// migrations that add them.
func TestRollupMigrationsBackfillTheMinuteData(t *testing.T) {
	cfg := testenv.Postgres(t)
	ctx := testenv.Context(t, time.Minute)
	pool, err := postgres.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	migs, err := migrate.Load(schema.Postgres(), "sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Postgres(ctx, pool, migs[:1]); err != nil {
		t.Fatal(err)
	}
	hour := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	h := wire.NewHistogram("social", "push")
	for i, m := range []int{5, 40, 70} {
		ws := hour.Add(time.Duration(m) * time.Minute)
		h.Counts[i] = 10
		mustExec(t, pool.Exec, `INSERT INTO batches (region, window_start, seq, digest, withheld, latency_withheld) VALUES ('eu-west-1', $1, 0, $2, 0, 0)`, ws, make([]byte, 32))
		mustExec(t, pool.Exec, `INSERT INTO cells VALUES ('eu-west-1', $1, 0, 'shop', 'social', 'news', 'push', '', 'delivered', '', $2, 10)`, ws, int64(100*(i+1)))
		mustExec(t, pool.Exec, `INSERT INTO latency VALUES ('eu-west-1', $1, 0, 'social', 'push', $2, $3)`, ws, h.BoundsMS, h.Counts)
	}
	// The hourly tables' migrations (0002, 0003): 0004 deletes the unchecked histograms.
	if _, err := migrate.Postgres(ctx, pool, migs[:3]); err != nil {
		t.Fatal(err)
	}
	var first, second int64
	if err := pool.QueryRow(ctx, `SELECT (SELECT count FROM cells_hourly WHERE hour = $1), (SELECT count FROM cells_hourly WHERE hour = $2)`, hour, hour.Add(time.Hour)).Scan(&first, &second); err != nil {
		t.Fatal(err)
	}
	if first != 300 || second != 300 {
		t.Errorf("cells_hourly = %d and %d, want 300 and 300", first, second)
	}
	var counts []int64
	if err := pool.QueryRow(ctx, `SELECT counts FROM latency_hourly WHERE hour = $1`, hour).Scan(&counts); err != nil {
		t.Fatal(err)
	}
	// minute 5 had bucket 0 = 10; minute 40 buckets 0 and 1 = 10 each.
	if len(counts) != len(wire.LatencyBoundsMS)+1 || counts[0] != 20 || counts[1] != 10 || counts[2] != 0 {
		t.Errorf("latency_hourly counts = %v", counts)
	}
}

// Histograms stored before they carried their distinct recipients were thresholded on
// observations: the migration that adds the recipients deletes them and their hourly sums (they
// cannot be checked against k), and keeps the cells.
func TestLatencyRecipientsMigrationDeletesTheHistogramsItCannotCheck(t *testing.T) {
	cfg := testenv.Postgres(t)
	ctx := testenv.Context(t, time.Minute)
	pool, err := postgres.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	migs, err := migrate.Load(schema.Postgres(), "sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Postgres(ctx, pool, migs[:3]); err != nil {
		t.Fatal(err)
	}
	ws := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	h := wire.NewHistogram("transactional", "email")
	h.Counts[2] = 5000 // thousands of deliveries, recipients unknown: maybe one user
	mustExec(t, pool.Exec, `INSERT INTO batches (region, window_start, seq, digest, withheld, latency_withheld) VALUES ('eu-west-1', $1, 0, $2, 0, 0)`, ws, make([]byte, 32))
	mustExec(t, pool.Exec, `INSERT INTO cells VALUES ('eu-west-1', $1, 0, 'shop', 'social', 'news', 'push', '', 'delivered', '', 100, 10)`, ws)
	mustExec(t, pool.Exec, `INSERT INTO latency VALUES ('eu-west-1', $1, 0, 'transactional', 'email', $2, $3)`, ws, h.BoundsMS, h.Counts)
	mustExec(t, pool.Exec, `INSERT INTO latency_hourly VALUES ($1, 'eu-west-1', 'transactional', 'email', $2)`, ws, h.Counts)
	if _, err := migrate.Postgres(ctx, pool, migs); err != nil {
		t.Fatal(err)
	}
	var lat, hourly, cells int64
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM latency), (SELECT count(*) FROM latency_hourly), (SELECT count(*) FROM cells)`).Scan(&lat, &hourly, &cells); err != nil {
		t.Fatal(err)
	}
	if lat != 0 || hourly != 0 || cells != 1 {
		t.Errorf("after the migration: %d histograms, %d hourly histograms, %d cells; want 0, 0, 1", lat, hourly, cells)
	}
	// And the database itself refuses a histogram without its recipients, or of one recipient.
	for _, n := range []any{nil, int64(1)} {
		if _, err := pool.Exec(ctx, `INSERT INTO latency VALUES ('eu-west-1', $1, 0, 'transactional', 'email', $2, $3, $4)`, ws, h.BoundsMS, h.Counts, n); err == nil {
			t.Errorf("a histogram with distinct_recipients %v was stored", n)
		}
	}
}

func mustExec[T any](t *testing.T, exec func(context.Context, string, ...any) (T, error), sql string, args ...any) {
	t.Helper()
	if _, err := exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
