package webhooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/cenkalti/backoff/v5"

	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/platform/kafka"
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
	Log          *slog.Logger
	Now          func() time.Time

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	targets []target
	at      time.Time
}

// consumerStore is what the consumer needs of the store.
type consumerStore interface {
	enabled(ctx context.Context, app, jurisdiction string) ([]target, error)
	enqueue(ctx context.Context, region string, ds []delivery) (int64, error)
}

func (c *Consumer) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
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
// the record holds none), errUndecodable for a record that can never be read, or the store's
// error.
func (c *Consumer) Handle(ctx context.Context, value []byte) error {
	b, _, err := notify.DecodeEventBatch(ctx, c.Keys, value)
	switch {
	case notify.IsErased(err):
		return nil // its users were erased: nothing to tell about them
	case errors.Is(err, envelope.ErrUnavailable):
		return err
	case err != nil:
		return fmt.Errorf("%w: %w", errUndecodable, err)
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

var errUndecodable = errors.New("undecodable delivery events")

// Run consumes the region's events topic until ctx ends.
func (c *Consumer) Run(ctx context.Context) error {
	sc, err := c.Kafka.Sarama()
	if err != nil {
		return err
	}
	sc.ClientID = c.Kafka.ClientID + "-webhooks"
	group, err := sarama.NewConsumerGroup(c.Kafka.Brokers, Group(c.Region), sc)
	if err != nil {
		return fmt.Errorf("webhooks: joining group %s: %w", Group(c.Region), err)
	}
	defer group.Close()
	go func() {
		for err := range group.Errors() {
			c.Log.Warn("consumer group error", "group", Group(c.Region), "err", err)
		}
	}()
	topic := notify.EventsTopic(c.Region)
	c.Log.Info("webhooks consuming", "topic", topic, "group", Group(c.Region))
	for ctx.Err() == nil {
		if err := group.Consume(ctx, []string{topic}, handler{c}); err != nil {
			if errors.Is(err, sarama.ErrClosedConsumerGroup) || ctx.Err() != nil {
				break
			}
			c.Log.Warn("consume failed; retrying", "err", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
		}
	}
	return nil
}

type handler struct{ c *Consumer }

func (handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim stores each record's deliveries, then marks its offset: a crash before the commit
// re-reads records whose deliveries are stored, and their keys make that harmless. A store that
// fails is retried with backoff until it answers or the session ends (the offset stays).
func (h handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	ctx := sess.Context()
	marked := 0
	for m := range claim.Messages() {
		_, err := backoff.Retry(ctx, func() (struct{}, error) {
			err := h.c.Handle(ctx, m.Value)
			if errors.Is(err, errUndecodable) {
				return struct{}{}, backoff.Permanent(err)
			}
			return struct{}{}, err
		}, backoff.WithBackOff(&backoff.ExponentialBackOff{InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: 5 * time.Second}),
			backoff.WithMaxElapsedTime(0), backoff.WithNotify(func(err error, wait time.Duration) {
				h.c.Log.Warn("storing webhook deliveries failed; retrying", "err", err, "backoff", wait)
			}))
		if err != nil {
			if ctx.Err() != nil {
				return nil // leave the record uncommitted
			}
			undecodable.WithLabelValues(h.c.Region).Inc()
			h.c.Log.Error("skipping an events record no webhook can be made of", "partition", m.Partition, "offset", m.Offset, "err", err)
		}
		sess.MarkMessage(m, "")
		if marked++; len(claim.Messages()) == 0 || marked >= 100 {
			sess.Commit()
			marked = 0
		}
	}
	return nil
}
