package webhooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/region/deadletter"
	"github.com/herald-notify/herald/region/notify"
)

// Group is the webhooks role's consumer group: its own, so webhooks never hold up delivery or
// analytics, nor they it.
func Group(region string) string { return region + ".webhooks" }

// skew is how much earlier than an endpoint's registration an event may be and still reach it
// (the clocks of the process that recorded the event and of Postgres).
const skew = 5 * time.Second

// Consumer turns the region's delivery events into pending deliveries.
type Consumer struct {
	Region       string
	Jurisdiction string
	Kafka        kafka.Config
	Store        consumerStore
	Keys         notify.Sealer // opens the sealed records (the region's data keys)
	CacheTTL     time.Duration
	// Retry bounds the retries of a record whose deliveries cannot be stored (failure_retry).
	Retry deadletter.Policy
	Log   *slog.Logger
	Now   func() time.Time

	deadLetters *deadletter.Writer // opened by Run
	mu          sync.Mutex
	cache       map[string]cached
	any         bool // whether the jurisdiction has an enabled endpoint, read at anyAt
	anyAt       time.Time
}

type cached struct {
	targets []target
	at      time.Time
}

// consumerStore is what the consumer needs of the store.
type consumerStore interface {
	anyEnabled(ctx context.Context, jurisdiction string) (bool, error)
	enabled(ctx context.Context, app, jurisdiction string) ([]target, error)
	enqueue(ctx context.Context, region string, ds []delivery) (int64, error)
}

func (c *Consumer) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// anyEndpoints reports whether the jurisdiction has any enabled endpoint, from the cache when
// it is fresh (CacheTTL, like each app's list).
func (c *Consumer) anyEndpoints(ctx context.Context) (bool, error) {
	c.mu.Lock()
	any, at := c.any, c.anyAt
	c.mu.Unlock()
	if !at.IsZero() && c.now().Sub(at) < c.CacheTTL {
		return any, nil
	}
	any, err := c.Store.anyEnabled(ctx, c.Jurisdiction)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	c.any, c.anyAt = any, c.now()
	c.mu.Unlock()
	return any, nil
}

// targets returns app's enabled endpoints, from the cache when it is fresh.
func (c *Consumer) targets(ctx context.Context, app string) ([]target, error) {
	c.mu.Lock()
	e, ok := c.cache[app]
	c.mu.Unlock()
	if ok && c.now().Sub(e.at) < c.CacheTTL {
		return e.targets, nil
	}
	ts, err := c.Store.enabled(ctx, app, c.Jurisdiction)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.cache == nil {
		c.cache = map[string]cached{}
	}
	c.cache[app] = cached{targets: ts, at: c.now()}
	c.mu.Unlock()
	return ts, nil
}

// Deliveries maps one decoded batch to a delivery per event x matching endpoint. An endpoint
// gets the events that happened after it was registered (within skew).
func Deliveries(b notify.EventBatch, ts []target) []delivery {
	var out []delivery
	for _, e := range Events(b) {
		var body []byte
		for _, t := range ts {
			if !Matches(t.EventTypes, e.Type) || e.At.Before(t.CreatedAt.Add(-skew)) {
				continue
			}
			if body == nil {
				body = e.Payload()
			}
			out = append(out, delivery{App: e.App, Endpoint: t.ID, EventID: e.ID, Type: e.Type, User: e.User, Payload: body})
		}
	}
	return out
}

// Handle stores the deliveries of one events record. It returns nil once they are stored (or
// the record holds none), a permanent error (deadletter.Classify) for a record that can never
// be read, or the store's error.
func (c *Consumer) Handle(ctx context.Context, value []byte) error {
	// Opening a sealed record costs its users' keys; with no endpoint in the jurisdiction
	// there is no one to tell (the exporter reads every record anyway).
	if any, err := c.anyEndpoints(ctx); err != nil || !any {
		return err
	}
	b, _, err := notify.DecodeEventBatch(ctx, c.Keys, value)
	switch {
	case notify.IsErased(err):
		return nil // its users were erased: nothing to tell about them
	case errors.Is(err, envelope.ErrUnavailable):
		return err
	case err != nil:
		return deadletter.MarkPermanent(fmt.Errorf("decoding delivery events: %w", err), deadletter.ReasonUndecodable)
	}
	ts, err := c.targets(ctx, b.App)
	if err != nil || len(ts) == 0 {
		return err
	}
	ds := Deliveries(b, ts)
	n, err := c.Store.enqueue(ctx, c.Region, ds)
	if err != nil {
		return err
	}
	enqueued.WithLabelValues(c.Region, "new").Add(float64(n))
	enqueued.WithLabelValues(c.Region, "duplicate").Add(float64(int64(len(ds)) - n))
	return nil
}

// Run consumes the region's events topic until ctx ends.
func (c *Consumer) Run(ctx context.Context) error {
	sc, err := c.Kafka.Sarama()
	if err != nil {
		return err
	}
	sc.ClientID = c.Kafka.ClientID + "-webhooks"
	p, err := kafka.NewProducer(c.Kafka)
	if err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	defer p.Close()
	c.deadLetters = &deadletter.Writer{Region: c.Region, Producer: p, Log: c.Log}
	return kafka.RunGroup(ctx, c.Kafka.Brokers, sc, Group(c.Region), []string{notify.EventsTopic(c.Region)}, handler{c}, c.Log)
}

type handler struct{ c *Consumer }

func (handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim stores each record's deliveries, then marks its offset: a crash before the commit
// re-reads records whose deliveries are stored, and their keys make that harmless. A store that
// fails transiently is retried under failure_retry; a record that fails permanently (it does not
// decode, Postgres refuses its data), or transiently past the policy, goes to the dead-letter
// topic "<region>.dlq.webhooks" first, then is marked like the others: no record holds the
// partition.
func (h handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	ctx := sess.Context()
	marked := 0
	for m := range claim.Messages() {
		attempts, err := h.c.Retry.Do(ctx, func(ctx context.Context) error { return h.c.Handle(ctx, m.Value) },
			func(err error, wait time.Duration) {
				h.c.Log.Warn("storing webhook deliveries failed; retrying", "err", err, "backoff", wait)
			})
		if err != nil {
			if deadletter.Stopped(err) || ctx.Err() != nil {
				return nil // leave the record uncommitted
			}
			l := deadletter.FromMessage(deadletter.StageWebhooks, m, err, attempts, h.c.now())
			if err := h.c.deadLetters.Put(ctx, l); err != nil {
				return nil // ctx ended before the dead letter was durable
			}
		}
		sess.MarkMessage(m, "")
		if marked++; len(claim.Messages()) == 0 || marked >= 100 {
			sess.Commit()
			marked = 0
		}
	}
	return nil
}
