package residency

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/platform/retry"
)

// Source is what the Holder needs from a discovery backend (discovery.Backend has it): Get reads
// a key with its index, Watch blocks until the index differs from the one given.
type Source interface {
	Get(ctx context.Context, key string) (value []byte, index uint64, err error)
	Watch(ctx context.Context, key string, index uint64) (value []byte, newIndex uint64, err error)
}

// Outcomes of an update, the values of the "outcome" label of
// herald_residency_policy_updates_total and the "outcome" attribute of the log lines.
const (
	OutcomeApplied   = "applied"   // a valid, newer policy is now in force
	OutcomeUnchanged = "unchanged" // same version and content as in force (the key was rewritten)
	OutcomeInvalid   = "invalid"   // refused: it does not parse or validate
	OutcomeRollback  = "rollback"  // refused: its version is lower than the one in force
	OutcomeConflict  = "conflict"  // refused: same version as in force, different content
	OutcomeMissing   = "missing"   // refused: the key was deleted or emptied
)

var (
	metricUpdates = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_residency_policy_updates_total",
		Help: "Residency policy updates seen, by outcome (applied, unchanged, invalid, rollback, conflict, missing).",
	}, []string{"outcome"})
	metricVersion = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "herald_residency_policy_version",
		Help: "Version of the residency policy in force (0 before the first load).",
	})
	metricWatchErrors = promauto.NewCounter(prometheus.CounterOpts{
		Name: "herald_residency_policy_watch_errors_total",
		Help: "Errors from the discovery backend while watching the residency policy.",
	})
)

// Holder holds the policy in force. Current is one atomic load, safe and cheap on every request;
// Load and Watch replace the policy only with a valid one whose version is not lower.
// The zero value holds no policy.
type Holder struct {
	cur atomic.Pointer[Policy]

	mu    sync.Mutex // serialises Load and Watch's updates
	index uint64     // the backend index of the last value seen

	// Watch timing; zero means the defaults.
	minBackoff, maxBackoff time.Duration // after a backend error: 500ms doubling to 30s
	pace                   time.Duration // least time between two backend Watch calls: 100ms
}

// NewHolder returns a Holder with p in force (p comes from Parse), for wiring and tests that
// have a policy at hand; a Holder that follows discovery starts empty and calls Load.
func NewHolder(p *Policy) *Holder {
	h := &Holder{}
	if p != nil {
		h.cur.Store(p)
	}
	return h
}

// Current returns the policy in force, nil before the first load. The policy must not be
// modified. Its lookups are safe on nil (they find nothing; Route answers ErrNoPolicy).
func (h *Holder) Current() *Policy { return h.cur.Load() }

// Load reads, parses and validates the policy at key and puts it in force. A missing or invalid
// policy is an error: a gateway must not start without one. A policy older than the one already
// in force is refused too.
func (h *Holder) Load(ctx context.Context, src Source, key string) error {
	value, idx, err := src.Get(ctx, key)
	if errors.Is(err, discovery.ErrNotFound) {
		return fmt.Errorf("residency policy %q not found in discovery (put config/local/residency-policy.yaml there): %w", key, err)
	}
	if err != nil {
		return fmt.Errorf("reading residency policy %q: %w", key, err)
	}
	p, err := Parse(value)
	if err != nil {
		return fmt.Errorf("residency policy %q: %w", key, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if cur := h.cur.Load(); cur != nil {
		if outcome, reason := compare(cur, p); outcome != OutcomeApplied && outcome != OutcomeUnchanged {
			return fmt.Errorf("residency policy %q: %s", key, reason)
		}
	}
	h.index = idx
	h.cur.Store(p)
	metricVersion.Set(float64(p.Version))
	return nil
}

// Watch follows the policy at key until ctx ends: on each change it parses and validates the new
// value and puts it in force when it is valid and not older than the one in force; otherwise it
// logs why and keeps the policy in force. Backend errors are retried with backoff. It starts
// from the index Load saw, so call Load first.
func (h *Holder) Watch(ctx context.Context, src Source, key string, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("key", key)
	minBackoff, maxBackoff, pace := or(h.minBackoff, 500*time.Millisecond), or(h.maxBackoff, 30*time.Second), or(h.pace, 100*time.Millisecond)
	h.mu.Lock()
	idx := h.index
	h.mu.Unlock()
	// Jittered, so gateways do not retry in step.
	waits := retry.Backoff{Initial: minBackoff, Max: maxBackoff, Jitter: 0.5}.Start()
	for ctx.Err() == nil {
		started := time.Now()
		value, newIdx, err := src.Watch(ctx, key, idx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := waits.Next()
			metricWatchErrors.Inc()
			log.Warn("residency policy watch failed; keeping the policy in force and retrying", "err", err, "retry_in", wait, "version", h.Current().version())
			if !retry.Sleep(ctx, wait) {
				return
			}
			continue
		}
		waits.Reset()
		if newIdx != idx {
			idx = newIdx
			h.update(value, newIdx, log)
		}
		// A backend that answers at once, change or not, must not turn this into a busy loop.
		if !retry.Sleep(ctx, pace-time.Since(started)) {
			return
		}
	}
}

// update applies one new value of the key and returns its outcome.
func (h *Holder) update(value []byte, idx uint64, log *slog.Logger) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.index = idx
	cur := h.cur.Load()
	outcome, reason, p := OutcomeMissing, "the policy key was deleted or emptied", (*Policy)(nil)
	if len(value) > 0 {
		var err error
		if p, err = Parse(value); err != nil {
			outcome, reason = OutcomeInvalid, err.Error()
		} else {
			outcome, reason = compare(cur, p)
		}
	}
	metricUpdates.WithLabelValues(outcome).Inc()
	switch outcome {
	case OutcomeApplied:
		h.cur.Store(p)
		metricVersion.Set(float64(p.Version))
		log.Info("residency policy applied", "outcome", outcome, "version", p.Version, "previous_version", cur.version())
	case OutcomeUnchanged:
		log.Debug("residency policy rewritten without change", "outcome", outcome, "version", p.Version)
	default:
		log.Error("residency policy refused; the policy in force stays", "outcome", outcome, "reason", reason,
			"refused_version", p.version(), "version", cur.version())
	}
	return outcome
}

// compare decides whether next may replace cur (nil: nothing in force).
func compare(cur, next *Policy) (outcome, reason string) {
	switch {
	case cur == nil || next.Version > cur.Version:
		return OutcomeApplied, ""
	case next.Version < cur.Version:
		return OutcomeRollback, fmt.Sprintf("version %d is lower than version %d in force: a policy is never rolled back; publish the old content with a higher version", next.Version, cur.Version)
	case !next.Equal(cur):
		return OutcomeConflict, fmt.Sprintf("version %d is already in force with different content: raise the version", next.Version)
	}
	return OutcomeUnchanged, ""
}

func (p *Policy) version() int64 {
	if p == nil {
		return 0
	}
	return p.Version
}

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
