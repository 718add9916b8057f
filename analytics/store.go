package analytics

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/analytics/wire"
)

// Store is the central database: batches, their cells and latency histograms.
type Store struct{ pool *pgxpool.Pool }

// NewStore returns a Store on pool (migrated with Migrate).
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// What Save did with a batch.
const (
	Stored    = "stored"    // first time under its key
	Replaced  = "replaced"  // the key was stored with other content, which this one replaces
	Unchanged = "unchanged" // the same batch again: nothing to do
)

// Save upserts b under its idempotency key (region, window_start, seq): the first post
// stores it, an identical repeat changes nothing, and a different batch under the same key
// replaces the earlier one. Either way the key counts once.
func (s *Store) Save(ctx context.Context, b wire.Batch) (string, error) {
	sum := sha256.Sum256(canonical(b))
	ws := b.WindowStart.UTC()
	result := Stored
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Serialise the posts of one region and hour: two concurrent repeats of a batch cannot
		// both insert it, and the hourly sums they both update are taken in turn. One lock per
		// transaction, so no two posts can wait on each other in a cycle.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`,
			fmt.Sprintf("analytics-hour/%s/%d", b.Region, ws.Truncate(time.Hour).Unix())); err != nil {
			return fmt.Errorf("locking the region's hour: %w", err)
		}
		var digest []byte
		err := tx.QueryRow(ctx, `SELECT digest FROM batches WHERE region = $1 AND window_start = $2 AND seq = $3`,
			b.Region, ws, b.Seq).Scan(&digest)
		switch {
		case err == nil && string(digest) == string(sum[:]):
			result = Unchanged
			return nil
		case err == nil:
			result = Replaced
			for _, q := range []string{unrollCells, unrollLatency} {
				if _, err := tx.Exec(ctx, q, b.Region, ws, b.Seq); err != nil {
					return fmt.Errorf("taking the replaced batch out of the hourly sums: %w", err)
				}
			}
			if _, err := tx.Exec(ctx, `DELETE FROM batches WHERE region = $1 AND window_start = $2 AND seq = $3`, b.Region, ws, b.Seq); err != nil {
				return fmt.Errorf("deleting replaced batch: %w", err)
			}
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("reading batch: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO batches (region, window_start, seq, digest, withheld, latency_withheld) VALUES ($1, $2, $3, $4, $5, $6)`,
			b.Region, ws, b.Seq, sum[:], b.Withheld, b.LatencyWithheld); err != nil {
			return fmt.Errorf("inserting batch: %w", err)
		}
		cells := make([][]any, len(b.Cells))
		for i, c := range b.Cells {
			cells[i] = []any{b.Region, ws, b.Seq, c.App, c.Tier, c.Category, c.Channel, c.Country, c.Stage, c.Reason, c.Count, c.DistinctRecipients}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"cells"},
			[]string{"region", "window_start", "seq", "app", "tier", "category", "channel", "country", "stage", "reason", "count", "distinct_recipients"},
			pgx.CopyFromRows(cells)); err != nil {
			return fmt.Errorf("inserting cells: %w", err)
		}
		if _, err := tx.Exec(ctx, rollCells, b.Region, ws, b.Seq); err != nil {
			return fmt.Errorf("adding the batch to the hourly sums: %w", err)
		}
		hists := make([][]any, len(b.Latency))
		for i, h := range b.Latency {
			hists[i] = []any{b.Region, ws, b.Seq, h.Tier, h.Channel, h.BoundsMS, h.Counts, h.DistinctRecipients}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"latency"},
			[]string{"region", "window_start", "seq", "tier", "channel", "bounds_ms", "counts", "distinct_recipients"},
			pgx.CopyFromRows(hists)); err != nil {
			return fmt.Errorf("inserting latency histograms: %w", err)
		}
		if _, err := tx.Exec(ctx, rollLatency, b.Region, ws, b.Seq); err != nil {
			return fmt.Errorf("adding the batch's latency to the hourly sums: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return result, nil
}

// rollCells adds one batch's cells to the hourly sums; unrollCells takes them out again (before
// the batch is replaced). Both run under the region-hour lock.
const (
	rollCells = `INSERT INTO cells_hourly (hour, region, app, tier, category, channel, country, stage, reason, count)
		SELECT date_trunc('hour', window_start, 'UTC'), region, app, tier, category, channel, country, stage, reason, count
		FROM cells WHERE region = $1 AND window_start = $2 AND seq = $3
		ON CONFLICT (hour, region, app, tier, category, channel, country, stage, reason)
		DO UPDATE SET count = cells_hourly.count + EXCLUDED.count`
	unrollCells = `UPDATE cells_hourly h SET count = h.count - c.count
		FROM cells c
		WHERE c.region = $1 AND c.window_start = $2 AND c.seq = $3
		  AND h.hour = date_trunc('hour', c.window_start, 'UTC') AND h.region = c.region AND h.app = c.app
		  AND h.tier = c.tier AND h.category = c.category AND h.channel = c.channel
		  AND h.country = c.country AND h.stage = c.stage AND h.reason = c.reason`
	rollLatency = `INSERT INTO latency_hourly (hour, region, tier, channel, counts)
		SELECT date_trunc('hour', window_start, 'UTC'), region, tier, channel, counts
		FROM latency WHERE region = $1 AND window_start = $2 AND seq = $3
		ON CONFLICT (hour, region, tier, channel) DO UPDATE SET counts = (
			SELECT array_agg(a + b ORDER BY i) FROM unnest(latency_hourly.counts, EXCLUDED.counts) WITH ORDINALITY AS t(a, b, i))`
	unrollLatency = `UPDATE latency_hourly h SET counts = (
			SELECT array_agg(x - y ORDER BY i) FROM unnest(h.counts, l.counts) WITH ORDINALITY AS t(x, y, i))
		FROM latency l
		WHERE l.region = $1 AND l.window_start = $2 AND l.seq = $3
		  AND h.hour = date_trunc('hour', l.window_start, 'UTC') AND h.region = l.region
		  AND h.tier = l.tier AND h.channel = l.channel`
)

// Filter narrows a query; empty fields match everything. Windows in [From, To) count.
type Filter struct {
	Region  string    `json:"region,omitempty"`
	App     string    `json:"app,omitempty"`
	Tier    string    `json:"tier,omitempty"`
	Channel string    `json:"channel,omitempty"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
}

// where builds the filter's SQL condition on a minute-keyed table without an hourly sum (the
// batches table: its withheld totals), with the dims filters that apply to it.
func (f Filter) where(dims ...string) (string, []any) {
	conds := []string{"window_start >= $1", "window_start < $2"}
	args := []any{f.From.UTC(), f.To.UTC()}
	for _, d := range dims {
		var v string
		switch d {
		case "region":
			v = f.Region
		case "app":
			v = f.App
		case "tier":
			v = f.Tier
		case "channel":
			v = f.Channel
		}
		if v == "" {
			continue
		}
		args = append(args, v)
		conds = append(conds, fmt.Sprintf("%s = $%d", d, len(args)))
	}
	return strings.Join(conds, " AND "), args
}

// cellSource is a subquery over the cells matching f with columns cols: whole hours inside
// the range from cells_hourly, the minutes at either end from cells. extra is one more
// condition on both (its arguments appended to args, "$?" standing for each).
func (f Filter) cellSource(cols, extra string, extraArgs ...any) (string, []any) {
	return f.source("cells", "cells_hourly", true, []string{"region", "app", "tier", "channel"}, cols, extra, extraArgs...)
}

// latencySource is cellSource for the latency histograms, which have no app.
func (f Filter) latencySource(cols string) (string, []any) {
	return f.source("latency", "latency_hourly", true, []string{"region", "tier", "channel"}, cols, "")
}

// source reads the whole hours of f's range from the hourly table (unless useHourly is false)
// and the minutes at either end from the minute table, with f's filters on the dims columns.
// "{time}" in cols stands for each table's time column (hour, window_start).
func (f Filter) source(minute, hourly string, useHourly bool, dims []string, cols, extra string, extraArgs ...any) (string, []any) {
	h1 := f.From.UTC().Truncate(time.Hour)
	if h1.Before(f.From) {
		h1 = h1.Add(time.Hour)
	}
	h2 := f.To.UTC().Truncate(time.Hour)
	if !h1.Before(h2) || !useHourly { // no whole hour inside: everything from the minutes
		h1, h2 = f.To.UTC(), f.To.UTC()
	}
	args := []any{f.From.UTC(), f.To.UTC(), h1, h2}
	var conds []string
	values := map[string]string{"region": f.Region, "app": f.App, "tier": f.Tier, "channel": f.Channel}
	for _, col := range dims {
		d := struct{ col, v string }{col, values[col]}
		if d.v == "" {
			continue
		}
		args = append(args, d.v)
		if d.col == "channel" && minute == "cells" {
			// Accepted events have no channel yet: a channel filter leaves them whole.
			conds = append(conds, fmt.Sprintf("(channel = $%d OR stage = 'accepted')", len(args)))
			continue
		}
		conds = append(conds, fmt.Sprintf("%s = $%d", d.col, len(args)))
	}
	if extra != "" {
		for _, a := range extraArgs {
			args = append(args, a)
			extra = strings.Replace(extra, "$?", fmt.Sprintf("$%d", len(args)), 1)
		}
		conds = append(conds, extra)
	}
	cond := ""
	if len(conds) > 0 {
		cond = " AND " + strings.Join(conds, " AND ")
	}
	return fmt.Sprintf(`SELECT %[1]s FROM %[3]s WHERE hour >= $3 AND hour < $4%[2]s
		UNION ALL
		SELECT %[5]s FROM %[4]s WHERE ((window_start >= $1 AND window_start < $3) OR (window_start >= $4 AND window_start < $2))%[2]s`,
		strings.ReplaceAll(cols, "{time}", "hour"), cond, hourly, minute, strings.ReplaceAll(cols, "{time}", "window_start")), args
}

// StageCount is one funnel or drop-off row.
type StageCount struct {
	Stage  string `json:"stage"`
	Reason string `json:"reason,omitempty"`
	Count  int64  `json:"count"`
}

// stageCounts sums the cells matching f per stage (and reason, if byReason), for stages.
func (s *Store) stageCounts(ctx context.Context, f Filter, byReason bool, stages []string) ([]StageCount, error) {
	group := "stage"
	if byReason {
		group = "stage, reason"
	}
	src, args := f.cellSource(group+", count", "stage = ANY($?)", stages)
	q := fmt.Sprintf(`SELECT %s, sum(count)::bigint FROM (%s) AS c GROUP BY %s`, group, src, group)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("querying stage counts: %w", err)
	}
	defer rows.Close()
	var out []StageCount
	for rows.Next() {
		var sc StageCount
		dst := []any{&sc.Stage, &sc.Count}
		if byReason {
			dst = []any{&sc.Stage, &sc.Reason, &sc.Count}
		}
		if err := rows.Scan(dst...); err != nil {
			return nil, fmt.Errorf("reading stage counts: %w", err)
		}
		out = append(out, sc)
	}
	return out, rows.Err()
}

// withheld sums the dimensionless withheld totals of the batches in f's range and region.
func (s *Store) withheld(ctx context.Context, f Filter) (int64, error) {
	where, args := f.where("region")
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(sum(withheld), 0)::bigint FROM batches WHERE `+where, args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("querying withheld: %w", err)
	}
	return n, nil
}

// latencyByTier sums the histograms matching f per tier.
func (s *Store) latencyByTier(ctx context.Context, f Filter) (map[string][]int64, error) {
	src, args := f.latencySource("tier, counts")
	rows, err := s.pool.Query(ctx, src, args...)
	if err != nil {
		return nil, fmt.Errorf("querying latency: %w", err)
	}
	defer rows.Close()
	out := map[string][]int64{}
	for rows.Next() {
		var tier string
		var counts []int64
		if err := rows.Scan(&tier, &counts); err != nil {
			return nil, fmt.Errorf("reading latency: %w", err)
		}
		sum := out[tier]
		if sum == nil {
			sum = make([]int64, len(wire.LatencyBoundsMS)+1)
			out[tier] = sum
		}
		for i := range min(len(sum), len(counts)) {
			sum[i] += counts[i]
		}
	}
	return out, rows.Err()
}

// deliveredBy sums delivered cells matching f per channel and country (what providers bill).
func (s *Store) deliveredBy(ctx context.Context, f Filter) ([]delivered, error) {
	src, args := f.cellSource("channel, country, count", "stage = 'delivered'")
	rows, err := s.pool.Query(ctx, `SELECT channel, country, sum(count)::bigint FROM (`+src+`) AS c GROUP BY channel, country ORDER BY channel, country`, args...)
	if err != nil {
		return nil, fmt.Errorf("querying delivered counts: %w", err)
	}
	defer rows.Close()
	var out []delivered
	for rows.Next() {
		var d delivered
		if err := rows.Scan(&d.channel, &d.country, &d.count); err != nil {
			return nil, fmt.Errorf("reading delivered counts: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

type delivered struct {
	channel, country string
	count            int64
}

// DeleteMinutesBefore deletes minute cells and histograms of windows before t, a chunk at a
// time so no statement holds its locks long; the hourly sums and batch records stay. It
// returns how many rows went.
func (s *Store) DeleteMinutesBefore(ctx context.Context, t time.Time) (int64, error) {
	var total int64
	for _, table := range []string{"cells", "latency"} {
		for {
			tag, err := s.pool.Exec(ctx, fmt.Sprintf(
				`DELETE FROM %[1]s WHERE ctid = ANY (ARRAY(SELECT ctid FROM %[1]s WHERE window_start < $1 LIMIT 10000))`, table), t.UTC())
			if err != nil {
				return total, fmt.Errorf("deleting old minute %s: %w", table, err)
			}
			total += tag.RowsAffected()
			if tag.RowsAffected() < 10000 {
				break
			}
		}
	}
	return total, nil
}

// seriesCounts sums the cells matching f per time bucket of step (a minute, an hour or a day)
// and stage. Minute steps read the minute cells only.
func (s *Store) seriesCounts(ctx context.Context, f Filter, step time.Duration) (map[time.Time]map[string]int64, error) {
	unit := map[time.Duration]string{time.Minute: "minute", time.Hour: "hour", 24 * time.Hour: "day"}[step]
	if unit == "" {
		return nil, fmt.Errorf("series step %s: must be a minute, an hour or a day", step)
	}
	src, args := f.source("cells", "cells_hourly", step != time.Minute, []string{"region", "app", "tier", "channel"},
		fmt.Sprintf("date_trunc('%s', {time}, 'UTC') AS bucket, stage, count", unit), "")
	rows, err := s.pool.Query(ctx, `SELECT bucket, stage, sum(count)::bigint FROM (`+src+`) AS c GROUP BY bucket, stage`, args...)
	if err != nil {
		return nil, fmt.Errorf("querying series: %w", err)
	}
	defer rows.Close()
	out := map[time.Time]map[string]int64{}
	for rows.Next() {
		var at time.Time
		var stage string
		var n int64
		if err := rows.Scan(&at, &stage, &n); err != nil {
			return nil, fmt.Errorf("reading series: %w", err)
		}
		at = at.UTC()
		if out[at] == nil {
			out[at] = map[string]int64{}
		}
		out[at][stage] = n
	}
	return out, rows.Err()
}
