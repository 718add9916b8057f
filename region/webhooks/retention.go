package webhooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// kept is a kind of done delivery the sweeper deletes past its retention.
type kept struct {
	reason string // the metrics' label: delivered, dead_letter
	status string // its webhook_deliveries.status
}

var keptKinds = []kept{{reason: "delivered", status: "delivered"}, {reason: "dead_letter", status: "dead"}}

// sweepBatchTimeout bounds one batch's statement (and the oldest-row reading): a batch started
// before the process began stopping still finishes, within it.
const sweepBatchTimeout = time.Minute

// sweepStore is what the sweeper needs of the store.
type sweepStore interface {
	deleteDone(ctx context.Context, status string, before, from time.Time, n int) (int64, time.Time, error)
	oldestDone(ctx context.Context, status string) (time.Time, bool, error)
}

// Sweeper deletes the deliveries done longer ago than their retention: delivered ones after
// DeliveredRetention, dead letters after DeadLetterRetention. Pending ones (due, leased by a
// deliverer or waiting for a retry) are never deleted, whatever their age. The regions of a
// jurisdiction share its database and each sweeps it: a row locked by another sweep, a
// deliverer or a replay is skipped (left to a later sweep), never waited for, and each row is
// deleted once.
type Sweeper struct {
	Region string
	Store  sweepStore
	Cfg    Config
	Log    *slog.Logger
	Now    func() time.Time

	oldest map[string]time.Time // per reason, the oldest done_at last read (zero: none)
}

// SweepResult is how many rows a sweep deleted, of each kind.
type SweepResult struct {
	Delivered   int64
	DeadLetters int64
}

func (s *Sweeper) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Sweeper) retention(k kept) time.Duration {
	if k.status == "dead" {
		return s.Cfg.DeadLetterRetention
	}
	return s.Cfg.DeliveredRetention
}

// Run sweeps every SweepInterval until ctx ends. A batch under way when ctx ends is finished;
// no other is started.
func (s *Sweeper) Run(ctx context.Context) error {
	for _, k := range keptKinds {
		retentionSeconds.WithLabelValues(s.Region, k.reason).Set(s.retention(k).Seconds())
	}
	for {
		res, err := s.Sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.Log.Warn("sweeping webhook deliveries past their retention failed; trying again next sweep", "err", err,
				"delivered_deleted", res.Delivered, "dead_letters_deleted", res.DeadLetters)
		case res.Delivered+res.DeadLetters > 0:
			s.Log.Debug("swept webhook deliveries past their retention", "delivered", res.Delivered, "dead_letters", res.DeadLetters)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.Cfg.SweepInterval):
		}
	}
}

// Sweep deletes every row past its retention, SweepBatch at a time, then reads the age of the
// oldest row of each kind left (herald_webhook_retention_oldest_age_seconds), even when deleting
// failed. It is Run's work, once (tests and tools); it must not be called concurrently on one
// Sweeper.
func (s *Sweeper) Sweep(ctx context.Context) (SweepResult, error) {
	var res SweepResult
	var errs []error
	for _, k := range keptKinds {
		n, err := s.sweepKind(ctx, k)
		if k.status == "dead" {
			res.DeadLetters += n
		} else {
			res.Delivered += n
		}
		if err != nil {
			sweepErrors.WithLabelValues(s.Region).Inc()
			errs = append(errs, err)
		}
	}
	s.measure(ctx)
	return res, errors.Join(errs...)
}

// sweepKind deletes the rows of kind k done before now minus its retention, the oldest first,
// in batches, each starting where the last ended (not over the index entries the batches before
// it left), until a batch finds fewer than SweepBatch: none left, or the rest are locked.
func (s *Sweeper) sweepKind(ctx context.Context, k kept) (int64, error) {
	before := s.now().Add(-s.retention(k))
	var total int64
	var from time.Time
	for ctx.Err() == nil {
		n, last, err := s.batch(ctx, k, before, from)
		total += n
		deletedRows.WithLabelValues(s.Region, k.reason).Add(float64(n))
		if err != nil {
			return total, fmt.Errorf("deleting webhook deliveries (%s) done before %s: %w", k.reason, before.UTC().Format(time.RFC3339), err)
		}
		if n < int64(s.Cfg.SweepBatch) {
			break
		}
		from = last
	}
	return total, nil
}

// batch deletes one batch. It is not cut short by ctx (the process stopping): it finishes, or
// gives up after sweepBatchTimeout.
func (s *Sweeper) batch(ctx context.Context, k kept, before, from time.Time) (int64, time.Time, error) {
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sweepBatchTimeout)
	defer cancel()
	return s.Store.deleteDone(bctx, k.status, before, from, s.Cfg.SweepBatch)
}

// measure sets each kind's oldest-row age. A reading that fails keeps the last one read, so the
// age goes on growing while Postgres cannot be read either.
func (s *Sweeper) measure(ctx context.Context) {
	if s.oldest == nil {
		s.oldest = map[string]time.Time{}
	}
	for _, k := range keptKinds {
		mctx, cancel := context.WithTimeout(ctx, sweepBatchTimeout)
		at, ok, err := s.Store.oldestDone(mctx, k.status)
		cancel()
		switch {
		case err != nil:
			if ctx.Err() == nil {
				s.Log.Warn("reading the oldest webhook delivery failed", "reason", k.reason, "err", err)
			}
		case ok:
			s.oldest[k.reason] = at
		default:
			delete(s.oldest, k.reason)
		}
		age := 0.0
		if at, ok := s.oldest[k.reason]; ok {
			age = max(0, s.now().Sub(at).Seconds())
		}
		oldestAge.WithLabelValues(s.Region, k.reason).Set(age)
	}
}

// deleteDone deletes up to n rows of status done from from (inclusive) to before (exclusive),
// the oldest first, skipping rows another transaction has locked. It returns how many it
// deleted and the latest done_at among them.
//
// The rows are picked by the partial index on done_at of their status (migration 0019) and
// deleted by ctid (a TID scan: the rows just locked, no index lookup). status is written into
// the statement, not passed: a generic plan of "status = $1" could not use a partial index.
func (s *Store) deleteDone(ctx context.Context, status string, before, from time.Time, n int) (int64, time.Time, error) {
	if status != "delivered" && status != "dead" {
		return 0, time.Time{}, fmt.Errorf("deleting webhook deliveries: status %q is not done", status)
	}
	var count int64
	var last *time.Time
	err := s.DB.QueryRow(ctx, `WITH doomed AS (
			SELECT ctid FROM webhook_deliveries
			WHERE status = '`+status+`' AND done_at < $1 AND done_at >= $2
			ORDER BY done_at LIMIT $3 FOR UPDATE SKIP LOCKED),
		gone AS (
			DELETE FROM webhook_deliveries WHERE ctid = ANY(ARRAY(SELECT ctid FROM doomed))
				AND status = '`+status+`' AND done_at < $1
			RETURNING done_at)
		SELECT count(*), max(done_at) FROM gone`, before, from, n).Scan(&count, &last)
	if err != nil {
		return 0, time.Time{}, err
	}
	if last == nil {
		return count, time.Time{}, nil
	}
	return count, *last, nil
}

// oldestDone returns the earliest done_at of the rows of status; false when there are none.
func (s *Store) oldestDone(ctx context.Context, status string) (time.Time, bool, error) {
	if status != "delivered" && status != "dead" {
		return time.Time{}, false, fmt.Errorf("reading webhook deliveries: status %q is not done", status)
	}
	var at *time.Time
	if err := s.DB.QueryRow(ctx, `SELECT min(done_at) FROM webhook_deliveries WHERE status = '`+status+`'`).Scan(&at); err != nil {
		return time.Time{}, false, fmt.Errorf("reading the oldest webhook delivery (%s): %w", status, err)
	}
	if at == nil {
		return time.Time{}, false, nil
	}
	return *at, true, nil
}
