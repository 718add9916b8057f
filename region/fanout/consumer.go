package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/region/notify"
)

// TierConfig sizes one tier's consumer. Each tier has its own consumer group and its own
// goroutines: a marketing backlog cannot take transactional capacity.
type TierConfig struct {
	// Concurrency caps the events of this tier processed at once by this process.
	Concurrency int `yaml:"concurrency"`
	// MaxPollRecords bounds how many records the consumer buffers per partition.
	MaxPollRecords int `yaml:"max_poll_records"`
	// MaxAge is how old a delivery may be before it is suppressed as expired (0: no limit).
	MaxAge time.Duration `yaml:"max_age"`
	// PartitionWindow is how many events of one partition are handled at once (1: one after
	// another). More raises throughput (4: 7.7k -> 12.6k in-app deliveries/s in herald bench
	// pipeline) but widens what a crash repeats: every event in the window whose tasks were
	// handed on but whose dedup keys were not yet marked comes back whole (a SIGKILL test saw
	// 4 events x 50 recipients). Kept at 1 until the hand-off and the offset commit are one
	// Kafka transaction.
	PartitionWindow int `yaml:"partition_window"`
}

// Consumer runs one tier's consumer group.
type Consumer struct {
	Tier   string
	Topic  string
	Group  string
	Kafka  kafka.Config
	Cfg    TierConfig
	Fanout *Fanout
	Log    *slog.Logger
}

// Run consumes until ctx ends. Offsets are committed only after an event was fully handled,
// so a crash re-delivers and never loses.
func (c *Consumer) Run(ctx context.Context) error {
	sc, err := c.Kafka.Sarama()
	if err != nil {
		return err
	}
	sc.ClientID = c.Kafka.ClientID + "-fanout-" + c.Tier
	sc.ChannelBufferSize = max(1, c.Cfg.MaxPollRecords)
	sc.Consumer.MaxProcessingTime = 5 * time.Second
	group, err := sarama.NewConsumerGroup(c.Kafka.Brokers, c.Group, sc)
	if err != nil {
		return fmt.Errorf("fan-out %s: joining group %s: %w", c.Tier, c.Group, err)
	}
	defer group.Close()
	go func() {
		for err := range group.Errors() {
			c.Log.Warn("consumer group error", "tier", c.Tier, "err", err)
		}
	}()
	h := &handler{c: c, sem: make(chan struct{}, max(1, c.Cfg.Concurrency))}
	c.Log.Info("fan-out consuming", "tier", c.Tier, "topic", c.Topic, "group", c.Group, "concurrency", c.Cfg.Concurrency)
	for ctx.Err() == nil {
		if err := group.Consume(ctx, []string{c.Topic}, h); err != nil {
			if errors.Is(err, sarama.ErrClosedConsumerGroup) || ctx.Err() != nil {
				break
			}
			c.Log.Warn("consume failed; retrying", "tier", c.Tier, "err", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
		}
	}
	return nil
}

type handler struct {
	c   *Consumer
	sem chan struct{} // the tier's concurrency cap, shared by its partitions
}

func (h *handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim handles up to the tier's partition window of events of the partition at once and marks
// offsets in order, each only once its event was fully handled: a crash re-delivers what was
// in flight and never skips it. Events with the same key (one user's single-recipient
// notifications) are handled one after another, in offset order, so one user's notifications
// stay ordered; events keyed by their id have no order to keep. With a window of 1 a partition
// is one event at a time, and the pipeline's throughput is the partition count times one
// chunk's latency.
func (h *handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	ctx := sess.Context()
	type pending struct {
		m    *sarama.ConsumerMessage
		done chan error
	}
	window := make(chan *pending, max(1, h.c.Cfg.PartitionWindow))
	markerDone := make(chan struct{})
	go func() {
		defer close(markerDone)
		lastCommit := time.Now()
		failed := false
		for p := range window {
			if err := <-p.done; err != nil {
				failed = true // never mark past an event that was not handed on
			}
			if failed {
				continue
			}
			sess.MarkMessage(p.m, "")
			if time.Since(lastCommit) > 200*time.Millisecond {
				sess.Commit()
				lastCommit = time.Now()
			}
		}
		sess.Commit()
	}()
	defer func() {
		close(window)
		<-markerDone
	}()
	// The last in-flight event of each key: the next event with that key waits for it.
	last := map[string]chan error{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			consumerLag.WithLabelValues(h.c.Fanout.set.Region, h.c.Tier).Set(float64(claim.HighWaterMarkOffset() - m.Offset - 1))
			p := &pending{m: m, done: make(chan error, 1)}
			select {
			case window <- p:
			case <-ctx.Done():
				return nil
			}
			key := string(m.Key)
			before := last[key]
			finished := make(chan error, 1)
			last[key] = finished
			if len(last) > 4*cap(window) {
				for k, ch := range last {
					if len(ch) > 0 { // finished: no one needs to wait for it any more
						delete(last, k)
					}
				}
			}
			go func() {
				if before != nil {
					if err := <-before; err != nil {
						before <- err // let a later waiter see it too
						p.done <- err
						finished <- err
						return
					}
					before <- nil
				}
				err := h.handle(ctx, m)
				p.done <- err
				finished <- err
			}()
		}
	}
}

// handle processes one record, retrying with backoff while the stores are unavailable. It
// returns an error only when ctx ended first.
func (h *handler) handle(ctx context.Context, m *sarama.ConsumerMessage) error {
	var e notify.Event
	if err := json.Unmarshal(m.Value, &e); err != nil {
		// The API only produces valid events; a record that does not decode is logged and
		// counted, not retried forever.
		eventsTotal.WithLabelValues(h.c.Fanout.set.Region, h.c.Tier, "poison").Inc()
		h.c.Log.Error("undecodable event skipped", "tier", h.c.Tier, "partition", m.Partition, "offset", m.Offset, "err", err)
		return nil
	}
	ctx = kafka.Extract(ctx, m)
	backoff := 100 * time.Millisecond
	for {
		select {
		case h.sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		err := h.c.Fanout.Handle(ctx, e)
		<-h.sem
		if err == nil {
			eventsTotal.WithLabelValues(h.c.Fanout.set.Region, h.c.Tier, "ok").Inc()
			return nil
		}
		eventsTotal.WithLabelValues(h.c.Fanout.set.Region, h.c.Tier, "retry").Inc()
		h.c.Log.Warn("fan-out failed; retrying", "tier", h.c.Tier, "notification", e.ID, "err", err, "backoff", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}
