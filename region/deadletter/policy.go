package deadletter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/platform/retry"
)

// Policy bounds the retries of a transient failure of one record; past either bound the record
// is dead-lettered (reason retries_exhausted) and its partition moves on. A zero field takes
// its default (DefaultPolicy). A store outage shorter than MaxElapsed costs nothing but delay.
type Policy struct {
	// MaxAttempts caps the attempts of one record, the first included.
	MaxAttempts int `yaml:"max_attempts"`
	// MaxElapsed caps the time from the first attempt to the last.
	MaxElapsed time.Duration `yaml:"max_elapsed"`
	// InitialBackoff is the wait after the first failure; each next one doubles, up to
	// MaxBackoff, each with up to ±50% jitter.
	InitialBackoff time.Duration `yaml:"initial_backoff"`
	MaxBackoff     time.Duration `yaml:"max_backoff"`
}

// DefaultPolicy retries a record for up to 10 minutes (at most 300 attempts), backing off from
// 100ms to 5s: a stage notices a store's return within seconds (the fault suite's Cassandra
// restart took 33.6 s to drain its backlog with waits of up to 30 s), and 10 minutes of 5 s
// waits stay far below what a store can answer.
func DefaultPolicy() Policy {
	return Policy{MaxAttempts: 300, MaxElapsed: 10 * time.Minute, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second}
}

// WithDefaults returns p with its zero fields set to DefaultPolicy's.
func (p Policy) WithDefaults() Policy {
	d := DefaultPolicy()
	if p.MaxAttempts == 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.MaxElapsed == 0 {
		p.MaxElapsed = d.MaxElapsed
	}
	if p.InitialBackoff == 0 {
		p.InitialBackoff = d.InitialBackoff
	}
	if p.MaxBackoff == 0 {
		p.MaxBackoff = max(d.MaxBackoff, p.InitialBackoff)
	}
	return p
}

// Validate checks p (after WithDefaults), naming the bad key.
func (p Policy) Validate() error {
	p = p.WithDefaults()
	switch {
	case p.MaxAttempts < 1 || p.MaxAttempts > 100_000:
		return config.Errorf("max_attempts", fmt.Sprint(p.MaxAttempts), "must be 1-100000")
	case p.MaxElapsed < 0 || p.MaxElapsed > 7*24*time.Hour:
		return config.Errorf("max_elapsed", p.MaxElapsed.String(), "must be at most 168h (0: default 10m)")
	case p.InitialBackoff < 0:
		return config.Errorf("initial_backoff", p.InitialBackoff.String(), "must not be negative")
	case p.MaxBackoff < p.InitialBackoff:
		return config.Errorf("max_backoff", p.MaxBackoff.String(), "must be at least initial_backoff (%s)", p.InitialBackoff)
	}
	return nil
}

// Do runs op until it succeeds, fails permanently (Classify) or with an erased record
// (envelope.ErrErased: the caller drops it, never dead-letters it), or p is exhausted, and returns
// how many attempts it made and the last error: nil on success; the permanent or last
// transient error otherwise, to dead-letter. When ctx ends first it returns ctx's error, and
// the record must be left for the partition's next consumer, not dead-lettered: check with
// Stopped. retrying, if set, is told of each failure to be retried and the wait before it.
func (p Policy) Do(ctx context.Context, op func(ctx context.Context) error, retrying func(err error, wait time.Duration)) (int, error) {
	p = p.WithDefaults()
	attempts := 0
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		attempts++
		err := op(ctx)
		if err == nil || ctx.Err() != nil {
			return struct{}{}, err
		}
		if class, _ := Classify(err); class == Permanent || errors.Is(err, envelope.ErrErased) {
			return struct{}{}, backoff.Permanent(err) // an erased record is not retried either: the caller drops it
		}
		return struct{}{}, err
	}, backoff.WithBackOff(retry.Backoff{Initial: p.InitialBackoff, Max: p.MaxBackoff, Jitter: 0.5}.BackOff()),
		backoff.WithMaxTries(uint(p.MaxAttempts)), backoff.WithMaxElapsedTime(p.MaxElapsed),
		backoff.WithNotify(func(err error, wait time.Duration) {
			if retrying != nil {
				retrying(err, wait)
			}
		}))
	if err != nil && ctx.Err() != nil {
		return attempts, fmt.Errorf("%w: %w", errStopped, context.Cause(ctx))
	}
	return attempts, err
}

var errStopped = errors.New("stopped before the record was handled")

// Stopped reports whether Do gave up because its context ended: the record is neither handled
// nor dead-lettered, and its offset must not move.
func Stopped(err error) bool { return errors.Is(err, errStopped) }
