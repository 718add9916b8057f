package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/herald-notify/herald/region/notify"
)

// Receipt is what a provider answered to an accepted message.
type Receipt struct {
	// MessageID is the provider's id: apns-id, FCM message name, SMTP queue id (or our
	// Message-ID), Twilio sid.
	MessageID string
	// Status is the provider's success status ("200", "250 2.0.0", "201").
	Status string
	// Receipted means the provider will report what became of the message (a Twilio status
	// callback to a URL Herald gave it): the delivery is dispatched until then, and the
	// receipt (region/receipts) makes it delivered or failed. Otherwise the provider taking
	// the message is the last Herald hears of it, and counts as delivered.
	Receipted bool
}

// Provider sends one task to one recipient (a device token, an address, a number). Failures are
// *SendError (classified); any other error is transient.
type Provider interface {
	Name() string
	Send(ctx context.Context, t notify.Task, to string) (Receipt, error)
}

// errBreakerOpen marks a send refused by an open (or saturated half-open) breaker.
var errBreakerOpen = errors.New("circuit breaker open")

// guarded is a provider behind its circuit breaker.
type guarded struct {
	p  Provider
	cb *gobreaker.CircuitBreaker[Receipt]
	// limit is the provider's shared rate limit (nil: unlimited).
	limit *RateLimiter
	// sent checks whether a send was already accepted when limit does not (nil: no check).
	sent *sentKeys
	// timeout bounds one provider call (0: ctx only); the rate-limit wait is not part of it.
	timeout time.Duration
}

// breakerStateValue maps breaker states to the gauge: 0 closed, 1 half-open, 2 open.
func breakerStateValue(s gobreaker.State) float64 {
	switch s {
	case gobreaker.StateHalfOpen:
		return 1
	case gobreaker.StateOpen:
		return 2
	}
	return 0
}

// newGuarded puts p behind a breaker. recovered (may be nil) is called when the breaker closes
// again after a successful half-open probe: the provider is back.
func newGuarded(p Provider, c BreakerConfig, region string, log *slog.Logger, recovered func()) *guarded {
	st := gobreaker.Settings{
		Name:        p.Name(),
		MaxRequests: c.HalfOpenProbes,
		Interval:    c.Window,
		Timeout:     c.OpenFor,
		ReadyToTrip: func(n gobreaker.Counts) bool {
			if n.ConsecutiveFailures >= c.ConsecutiveFailures {
				return true
			}
			return c.FailureRatio > 0 && n.Requests >= c.MinRequests &&
				float64(n.TotalFailures)/float64(n.Requests) >= c.FailureRatio
		},
		OnStateChange: func(name string, from, to gobreaker.State) {
			// An app's own account has a breaker of its own (appProvider): its state is
			// counted per kind, since a gauge per app would grow without bound.
			if a, ok := p.(*appProvider); ok {
				log.Warn("an app's provider circuit breaker changed state", "provider", name, "app", a.app, "from", from.String(), "to", to.String())
				switch {
				case to == gobreaker.StateOpen:
					appBreakersOpen.WithLabelValues(region, name).Inc()
				case from == gobreaker.StateOpen:
					appBreakersOpen.WithLabelValues(region, name).Dec()
				}
			} else {
				log.Warn("provider circuit breaker changed state", "provider", name, "from", from.String(), "to", to.String())
				breakerState.WithLabelValues(region, name).Set(breakerStateValue(to))
			}
			if from == gobreaker.StateHalfOpen && to == gobreaker.StateClosed && recovered != nil {
				recovered()
			}
		},
		// A refused recipient is the provider working: only transient failures count.
		IsSuccessful: func(err error) bool { return err == nil || classify(err).Class != Transient },
	}
	if _, ok := p.(*appProvider); !ok {
		breakerState.WithLabelValues(region, p.Name()).Set(0)
	}
	return &guarded{p: p, cb: gobreaker.NewCircuitBreaker[Receipt](st)}
}

// send calls the provider through the breaker, once the send has its rate-limit token. When
// sentKey is set (see sentKeys) and names a send a provider already accepted, nothing is sent:
// send returns that send's message id and already = true. The check shares the token's Redis
// call when the provider is rate limited. A call cut short by our own shutdown is not the
// provider's failure and is not counted.
func (g *guarded) send(ctx context.Context, t notify.Task, to, sentKey string) (rc Receipt, already bool, err error) {
	// An open breaker refuses without a call: no token is taken for it.
	if g.limit != nil && g.cb.State() != gobreaker.StateOpen {
		id, sent, err := g.limit.take(ctx, sentKey, t.Tier)
		if err != nil {
			return Receipt{}, false, &SendError{Class: Transient, Reason: "shutdown", Err: err}
		}
		if sent {
			return Receipt{MessageID: id}, true, nil
		}
	} else if sentKey != "" {
		if id, ok := g.sent.sent(ctx, sentKey, t.Tier == notify.Transactional); ok {
			return Receipt{MessageID: id}, true, nil
		}
	}
	outer := ctx
	if g.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.timeout)
		defer cancel()
	}
	var shutdown bool
	r, err := g.cb.Execute(func() (Receipt, error) {
		r, err := g.p.Send(ctx, t, to)
		// Only our own shutdown is not the provider's fault; a send that hit the send timeout
		// is, and counts towards opening the breaker, so a hanging provider trips it.
		if err != nil && outer.Err() != nil {
			shutdown = true
			return r, nil // the caller still sees the error below
		}
		return r, err
	})
	if shutdown {
		return Receipt{}, false, &SendError{Class: Transient, Reason: "shutdown", Err: outer.Err()}
	}
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return Receipt{}, false, &SendError{Class: Transient, Reason: "breaker_open", Err: errBreakerOpen}
	}
	return r, false, err
}

// route is a kind of provider for a channel: the primary and, optionally, a secondary used while
// the primary's breaker is open.
type route struct {
	primary, secondary *guarded
}

// send delivers through the primary, or the secondary when the primary's breaker refuses. It
// returns the name of the provider that answered. already reports a send found in sentKey
// (see guarded.send): nothing was sent.
func (r *route) send(ctx context.Context, t notify.Task, to, sentKey string) (provider string, rc Receipt, already bool, err error) {
	rc, already, err = r.primary.send(ctx, t, to, sentKey)
	if err != nil && r.secondary != nil && errors.Is(err, errBreakerOpen) {
		failovers.WithLabelValues(t.Channel, r.primary.p.Name(), r.secondary.p.Name()).Inc()
		// The primary checked the sent key before its breaker refused.
		rc, _, err = r.secondary.send(ctx, t, to, "")
		return r.secondary.p.Name(), rc, false, err
	}
	return r.primary.p.Name(), rc, already, err
}
