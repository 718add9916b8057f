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
		// Serialise posts of one key, so two concurrent repeats cannot both insert.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`,
			fmt.Sprintf("analytics-batch/%s/%d/%d", b.Region, ws.Unix(), b.Seq)); err != nil {
			return fmt.Errorf("locking batch key: %w", err)
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
		for _, h := range b.Latency {
			if _, err := tx.Exec(ctx, `INSERT INTO latency (region, window_start, seq, tier, channel, bounds_ms, counts) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
				b.Region, ws, b.Seq, h.Tier, h.Channel, h.BoundsMS, h.Counts); err != nil {
				return fmt.Errorf("inserting latency histogram: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return result, nil
}

// Filter narrows a query; empty fields match everything. Windows in [From, To) count.
type Filter struct {
	Region  string    `json:"region,omitempty"`
	App     string    `json:"app,omitempty"`
	Tier    string    `json:"tier,omitempty"`
	Channel string    `json:"channel,omitempty"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
}

// where builds the filter's SQL condition. dims says which dimension filters apply (the
// latency table has no app; the batches table has only the region).
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
		cond := fmt.Sprintf("%s = $%d", d, len(args))
		if d == "channel" {
			// Accepted events have no channel yet: a channel filter leaves them whole.
			cond = fmt.Sprintf("(channel = $%d OR stage = 'accepted')", len(args))
		}
		conds = append(conds, cond)
	}
	return strings.Join(conds, " AND "), args
}

// StageCount is one funnel or drop-off row.
type StageCount struct {
	Stage  string `json:"stage"`
	Reason string `json:"reason,omitempty"`
	Count  int64  `json:"count"`
}

// stageCounts sums the cells matching f per stage (and reason, if byReason), for stages.
func (s *Store) stageCounts(ctx context.Context, f Filter, byReason bool, stages []string) ([]StageCount, error) {
	where, args := f.where("region", "app", "tier", "channel")
	args = append(args, stages)
	group := "stage"
	if byReason {
		group = "stage, reason"
	}
	q := fmt.Sprintf(`SELECT %s, sum(count)::bigint FROM cells WHERE %s AND stage = ANY($%d) GROUP BY %s`, group, where, len(args), group)
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
	where, args := f.where("region", "tier", "channel")
	where = strings.ReplaceAll(where, " OR stage = 'accepted'", "") // histograms have no stage
	rows, err := s.pool.Query(ctx, `SELECT tier, counts FROM latency WHERE `+where, args...)
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
	where, args := f.where("region", "app", "tier", "channel")
	rows, err := s.pool.Query(ctx, `SELECT channel, country, sum(count)::bigint FROM cells WHERE `+where+` AND stage = 'delivered' GROUP BY channel, country ORDER BY channel, country`, args...)
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
