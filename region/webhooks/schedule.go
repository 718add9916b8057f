package webhooks

import (
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Schedule says when a failed delivery is tried again: exponential backoff (cenkalti/backoff)
// from the delivery's first attempt until the horizon, with one last attempt at the horizon.
type Schedule struct {
	Initial    time.Duration
	Multiplier float64
	Max        time.Duration
	Jitter     float64
	Horizon    time.Duration
}

// ScheduleOf is the schedule c configures.
func ScheduleOf(c Config) Schedule {
	return Schedule{Initial: c.InitialInterval, Multiplier: c.Multiplier, Max: c.MaxInterval, Jitter: c.Jitter, Horizon: c.Horizon}
}

// Wait is the backoff after the attempts-th failed attempt (attempts >= 1).
func (s Schedule) Wait(attempts int) time.Duration {
	b := &backoff.ExponentialBackOff{InitialInterval: s.Initial, RandomizationFactor: s.Jitter, Multiplier: s.Multiplier, MaxInterval: s.Max}
	b.Reset()
	var d time.Duration
	for range max(attempts, 1) {
		d = b.NextBackOff()
	}
	return d
}

// Next is when to try again after the attempts-th failure at now of a delivery first tried at
// first; ok is false once the horizon has passed: the delivery is dead.
func (s Schedule) Next(attempts int, first, now time.Time) (next time.Time, ok bool) {
	end := first.Add(s.Horizon)
	if !now.Before(end) {
		return time.Time{}, false
	}
	next = now.Add(s.Wait(attempts))
	if next.After(end) {
		next = end
	}
	return next, true
}
