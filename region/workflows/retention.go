package workflows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	sweptRows = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_workflow_rows_swept_total",
		Help: "Rows the workflow sweeper deleted past their retention, by table (runs, digests, digest_events, throttle).",
	}, []string{"region", "table"})
	sweepErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_workflow_sweep_errors_total",
		Help: "Workflow sweeps that failed (rows past their retention were left for the next sweep).",
	}, []string{"region"})
)

// sweepBatch is how many rows one statement deletes; sweepBatchTimeout bounds it.
const (
	sweepBatch        = 5000
	sweepBatchTimeout = time.Minute
)

// Sweeper deletes what workflow runs leave behind past their time: runs finished (done,
// stopped, failed) longer than Retention ago, digests closed longer ago than that with their
// events, and throttle rows past their step's window. A running run, an open digest and a
// throttle row still in its window are never deleted. The regions of a jurisdiction share its
// database and each sweeps it: rows locked by another sweep or a runner are skipped, left to a
// later sweep.
type Sweeper struct {
	DB            *pgxpool.Pool
	Region        string
	Retention     time.Duration
	SweepInterval time.Duration
	Log           *slog.Logger
	Now           func() time.Time
}

// SweepResult is how many rows a sweep deleted, by table.
type SweepResult struct {
	Runs, Digests, DigestEvents, Throttle int64
}

func (s *Sweeper) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Run sweeps every SweepInterval until ctx ends; a statement under way when ctx ends finishes.
func (s *Sweeper) Run(ctx context.Context) error {
	for {
		res, err := s.Sweep(ctx)
		if err != nil && ctx.Err() == nil {
			s.Log.Warn("sweeping finished workflow runs failed; trying again next sweep", "err", err, "runs_deleted", res.Runs)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.SweepInterval):
		}
	}
}

// Sweep deletes every row past its time, sweepBatch at a time. It is Run's work, once.
func (s *Sweeper) Sweep(ctx context.Context) (SweepResult, error) {
	var res SweepResult
	now := s.now()
	before := now.Add(-s.Retention)
	err := errors.Join(
		s.each(ctx, "runs", &res.Runs, func(c context.Context) (int64, error) {
			tag, err := s.DB.Exec(c, `DELETE FROM workflow_runs WHERE run_id IN (SELECT run_id FROM workflow_runs
				WHERE due_at IS NULL AND state <> 'running' AND updated_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`, before, sweepBatch)
			return tag.RowsAffected(), err
		}),
		s.each(ctx, "digests", &res.Digests, func(c context.Context) (int64, error) {
			var digests, events int64
			err := s.DB.QueryRow(c, `WITH d AS (DELETE FROM workflow_digests WHERE digest_id IN (SELECT digest_id FROM workflow_digests
					WHERE closed AND closes_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING digest_id),
				e AS (DELETE FROM workflow_digest_events WHERE digest_id IN (SELECT digest_id FROM d) RETURNING 1)
				SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM e)`, before, sweepBatch).Scan(&digests, &events)
			res.DigestEvents += events
			sweptRows.WithLabelValues(s.Region, "digest_events").Add(float64(events))
			return digests, err
		}),
		s.each(ctx, "throttle", &res.Throttle, func(c context.Context) (int64, error) {
			tag, err := s.DB.Exec(c, `DELETE FROM workflow_throttle WHERE ctid IN (SELECT ctid FROM workflow_throttle
				WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`, now, sweepBatch)
			return tag.RowsAffected(), err
		}),
	)
	if err != nil {
		sweepErrors.WithLabelValues(s.Region).Inc()
	}
	return res, err
}

// each runs one table's delete until a batch deletes fewer than sweepBatch rows. A statement
// is not cut short by ctx (the process stopping): it finishes, or gives up after
// sweepBatchTimeout.
func (s *Sweeper) each(ctx context.Context, table string, total *int64, batch func(context.Context) (int64, error)) error {
	for ctx.Err() == nil {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sweepBatchTimeout)
		n, err := batch(bctx)
		cancel()
		*total += n
		sweptRows.WithLabelValues(s.Region, table).Add(float64(n))
		if err != nil {
			return fmt.Errorf("sweeping workflow %s: %w", table, err)
		}
		if n < sweepBatch {
			return nil
		}
	}
	return nil
}

// SweepErrors is the region's herald_workflow_sweep_errors_total, for tests.
func SweepErrors(region string) prometheus.Counter { return sweepErrors.WithLabelValues(region) }
