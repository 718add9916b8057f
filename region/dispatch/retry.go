package dispatch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Class says what a failed attempt means for the task.
type Class int

const (
	// Transient failures (5xx, 429, timeouts, SMTP 4xx, an open breaker) are retried later.
	Transient Class = iota
	// Permanent failures (a bad address, a rejected message) end the delivery as failed.
	Permanent
	// Gone is a permanent failure that also deactivates the device token.
	Gone
)

func (c Class) String() string {
	switch c {
	case Permanent:
		return "permanent"
	case Gone:
		return "gone"
	}
	return "transient"
}

// SendError is a provider's refusal, classified.
type SendError struct {
	Class Class
	// Status is the provider's status: the HTTP status, the SMTP reply ("550 5.1.1").
	Status string
	// Reason is the provider's reason: APNs "Unregistered", FCM "UNREGISTERED", Twilio "21610".
	Reason string
	// RetryAfter is how long the provider asked us to wait (0: not said).
	RetryAfter time.Duration
	// Bounce says what the failure tells about the address itself: BounceHard (it does not
	// exist or refuses mail for good: suppressed at once), BounceSoft (a mailbox full, for now:
	// counted, suppressed after repeated ones), BounceUnsubscribed (the number's owner replied
	// STOP), or "" (the message, the provider or our account, not the address).
	Bounce string
	Err    error
}

// Bounce kinds of SendError.Bounce.
const (
	BounceHard         = "hard"
	BounceSoft         = "soft"
	BounceUnsubscribed = "unsubscribed"
)

func (e *SendError) Error() string {
	s := e.Class.String() + " failure"
	if e.Status != "" {
		s += " " + e.Status
	}
	if e.Reason != "" {
		s += " " + e.Reason
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *SendError) Unwrap() error { return e.Err }

// classify returns the SendError of err; anything unclassified (network errors, timeouts) is
// transient.
func classify(err error) *SendError {
	var se *SendError
	if errors.As(err, &se) {
		return se
	}
	return &SendError{Class: Transient, Err: err}
}

// parseRetryAfter reads a Retry-After header: delta seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Backoff is the wait before retry number retry (1 for the first retry): the level's delay
// (the last delay doubled for each retry past the list), capped at MaxDelay, plus a random
// share up to Jitter of it (rnd in [0,1)), and never less than retryAfter.
func (r RetryConfig) Backoff(retry int, retryAfter time.Duration, rnd float64) time.Duration {
	if retry < 1 {
		retry = 1
	}
	n := len(r.Delays)
	d := r.Delays[min(retry, n)-1]
	for i := n; i < retry && d < r.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, r.MaxDelay)
	d += time.Duration(float64(d) * r.Jitter * rnd)
	return max(d, retryAfter)
}

// Level is the retry topic level (1..len(Delays)) of retry number retry.
func (r RetryConfig) Level(retry int) int { return max(1, min(retry, len(r.Delays))) }

func jitterRand() float64 { return rand.Float64() }

// durably runs fn until it succeeds, ctx ends, fn fails permanently (deadletter.Classify), or
// transiently past the dispatcher's failure_retry: the caller's task is then dead-lettered.
func (d *Dispatcher) durably(ctx context.Context, what string, fn func() error, onErr func(error, time.Duration)) error {
	_, err := d.cfg.FailureRetry.Do(ctx, func(context.Context) error { return fn() }, onErr)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
