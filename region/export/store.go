package export

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/analytics/kanon"
	"github.com/herald-notify/herald/analytics/wire"
)

// store is the exporter's state in the jurisdiction's Postgres database (migrations 0005 and
// 0012): the rows and windows of one region, which ships them under its own name. The regions
// of a jurisdiction share the tables, and each touches only its own rows.
type store struct {
	db     *pgxpool.Pool
	region string
}

// insert stores rows idempotently in one statement and bumps the version of every window that
// received a new row. It returns how many rows were new.
func (s store) insert(ctx context.Context, rs []row) (int64, error) {
	if len(rs) == 0 {
		return 0, nil
	}
	n := len(rs)
	keys, windows := make([]string, n), make([]time.Time, n)
	apps, tiers, cats, chans, stages, reasons, countries, users := make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	lat := make([]*int64, n)
	for i, r := range rs {
		keys[i], windows[i], apps[i], tiers[i], cats[i], chans[i] = r.key, r.window, r.app, r.tier, r.category, r.channel
		stages[i], reasons[i], countries[i], users[i], lat[i] = r.stage, r.reason, r.country, r.user, r.latencyMS
	}
	// Windows are updated in order, so two records touching the same windows never deadlock.
	const q = `
WITH ins AS (
    INSERT INTO analytics_events (event_key, window_start, app, tier, category, channel, stage, reason, country, user_id, latency_ms, region)
    SELECT *, $12::text FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[])
    ON CONFLICT (event_key) DO NOTHING
    RETURNING window_start
), win AS (
    INSERT INTO analytics_windows (region, window_start, version, max_inserted_at)
    SELECT $12::text, window_start, 1, clock_timestamp() FROM ins GROUP BY window_start ORDER BY window_start
    ON CONFLICT (region, window_start) DO UPDATE SET version = analytics_windows.version + 1, max_inserted_at = excluded.max_inserted_at
    RETURNING 1
)
SELECT count(*) FROM ins`
	var inserted int64
	if err := s.db.QueryRow(ctx, q, keys, windows, apps, tiers, cats, chans, stages, reasons, countries, users, lat, s.region).Scan(&inserted); err != nil {
		return 0, fmt.Errorf("storing delivery events: %w", err)
	}
	return inserted, nil
}

// due lists the windows that ended before cutoff and were never shipped, or received rows after
// they were, oldest first.
func (s store) due(ctx context.Context, cutoff time.Time, limit int) ([]time.Time, error) {
	rows, err := s.db.Query(ctx, `SELECT window_start FROM analytics_windows
		WHERE region = $3 AND window_start < $1 AND (shipped_version IS NULL OR version > shipped_version)
		ORDER BY window_start LIMIT $2`, cutoff, limit, s.region)
	if err != nil {
		return nil, fmt.Errorf("listing windows to ship: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[time.Time])
}

// snapshot is a window's content as of one version.
type snapshot struct {
	version int64
	cells   []kanon.Cell
	latency []kanon.Latency
}

// read aggregates one window in SQL, in one snapshot with its version: per cell and recipient
// the count (kanon needs the recipient sets to fold exactly), and the delivered latencies with
// their recipients.
func (s store) read(ctx context.Context, window time.Time) (snapshot, error) {
	var snap snapshot
	err := pgx.BeginTxFunc(ctx, s.db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT version FROM analytics_windows WHERE region = $2 AND window_start = $1`, window, s.region).Scan(&snap.version); err != nil {
			return fmt.Errorf("reading window version: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT app, tier, category, channel, country, stage, reason, user_id, count(*)
			FROM analytics_events WHERE region = $2 AND window_start = $1 GROUP BY 1, 2, 3, 4, 5, 6, 7, 8`, window, s.region)
		if err != nil {
			return fmt.Errorf("aggregating window: %w", err)
		}
		for rows.Next() {
			var k wire.Key
			var user string
			var n int64
			if err := rows.Scan(&k.App, &k.Tier, &k.Category, &k.Channel, &k.Country, &k.Stage, &k.Reason, &user, &n); err != nil {
				rows.Close()
				return fmt.Errorf("reading window cells: %w", err)
			}
			snap.cells = append(snap.cells, kanon.Cell{Key: k, Count: n, Recipients: map[string]struct{}{user: {}}})
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("reading window cells: %w", err)
		}
		// Per recipient too: a histogram is judged on its distinct recipients, not on its
		// observations (one user with a thousand deliveries is one recipient).
		rows, err = tx.Query(ctx, `SELECT tier, channel, user_id, latency_ms, count(*) FROM analytics_events
			WHERE region = $2 AND window_start = $1 AND stage = 'delivered' AND latency_ms IS NOT NULL GROUP BY 1, 2, 3, 4 ORDER BY 1, 2`, window, s.region)
		if err != nil {
			return fmt.Errorf("reading window latencies: %w", err)
		}
		defer rows.Close()
		hs := map[[2]string]*kanon.Latency{}
		var order [][2]string
		for rows.Next() {
			var tier, channel, user string
			var ms, n int64
			if err := rows.Scan(&tier, &channel, &user, &ms, &n); err != nil {
				return fmt.Errorf("reading window latencies: %w", err)
			}
			k := [2]string{tier, channel}
			l := hs[k]
			if l == nil {
				l = &kanon.Latency{Hist: wire.NewHistogram(tier, channel), Recipients: map[string]struct{}{}}
				hs[k] = l
				order = append(order, k)
			}
			i, _ := slices.BinarySearch(l.Hist.BoundsMS, ms) // wire.Histogram.Observe's bucket, n at once
			l.Hist.Counts[i] += n
			l.Recipients[user] = struct{}{}
		}
		for _, k := range order {
			snap.latency = append(snap.latency, *hs[k])
		}
		return rows.Err()
	})
	return snap, err
}

// shipped records that central acknowledged (or refused, with refusal set) version of window.
func (s store) shipped(ctx context.Context, window time.Time, version int64, refusal string) error {
	var refused *string
	if refusal != "" {
		refused = &refusal
	}
	_, err := s.db.Exec(ctx, `UPDATE analytics_windows SET shipped_version = $2, shipped_at = now(), refused = $3
		WHERE region = $4 AND window_start = $1 AND (shipped_version IS NULL OR shipped_version < $2)`, window, version, refused, s.region)
	if err != nil {
		return fmt.Errorf("marking window shipped: %w", err)
	}
	return nil
}

// sweep deletes the rows and windows older than cutoff, and reports windows it deletes unshipped.
func (s store) sweep(ctx context.Context, cutoff time.Time) (unshipped int64, err error) {
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM analytics_windows WHERE region = $2 AND window_start < $1
			AND (shipped_version IS NULL OR version > shipped_version)`, cutoff, s.region).Scan(&unshipped); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM analytics_events WHERE region = $2 AND window_start < $1`, cutoff, s.region); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM analytics_windows WHERE region = $2 AND window_start < $1`, cutoff, s.region)
		return err
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return 0, fmt.Errorf("sweeping old windows: %w", err)
	}
	return unshipped, err
}
