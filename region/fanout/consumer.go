package fanout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/envelope"
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
	// another). Events still finish in offset order: each is handed on in the transaction that
	// commits its offset, so a crash repeats only events none of whose records were visible.
	PartitionWindow int `yaml:"partition_window"`
	// TxnLinger is how long a hand-off transaction waits after its first finished event for
	// more (0: it takes what finished while the previous one committed). Fewer, larger
	// transactions cost Kafka less; the tier's tasks wait up to this much longer.
	TxnLinger time.Duration `yaml:"txn_linger"`
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
	// TxnID is the transactional id of the tier's hand-off producer: unique per process and
	// stable across its restarts (the region uses its discovery instance id).
	TxnID string
}

// Run consumes until ctx ends. An event's offset is committed only in the transaction that
// carries its records, after it was fully handled, so a crash re-delivers and never loses.
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
	txn, err := kafka.NewTxnProducer(c.Kafka, c.TxnID)
	if err != nil {
		return fmt.Errorf("fan-out %s: %w", c.Tier, err)
	}
	defer txn.Close()
	// The committer outlives the group: a claim that stops waits for its last transaction.
	cctx, stopCommitter := context.WithCancel(context.WithoutCancel(ctx))
	commit := newCommitter(txn, c.Fanout.set.Region, c.Tier, c.Log)
	commit.linger = c.Cfg.TxnLinger
	committerDone := make(chan struct{})
	go func() { defer close(committerDone); commit.run(cctx) }()
	defer func() { stopCommitter(); <-committerDone }()

	h := &handler{c: c, sem: make(chan struct{}, max(1, c.Cfg.Concurrency)), commit: commit}
	c.Log.Info("fan-out consuming", "tier", c.Tier, "topic", c.Topic, "group", c.Group, "concurrency", c.Cfg.Concurrency, "transactional_id", c.TxnID)
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
	c      *Consumer
	sem    chan struct{} // the tier's concurrency cap, shared by its partitions
	commit *committer
}

func (h *handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim handles up to the tier's partition window of events of the partition at once
// and hands each finished event, in offset order, to the committer, which commits its records
// and its offset in one transaction: a crash repeats exactly the events whose transaction did
// not commit, and none of their records were visible. Events with the same key (one user's
// single-recipient notifications) are handled one after another, in offset order, so one
// user's notifications stay ordered; events keyed by their id have no order to keep.
func (h *handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	ctx := sess.Context()
	group := &sarama.ConsumerGroupMetadata{GroupID: h.c.Group, GenerationID: sess.GenerationID(), MemberID: sess.MemberID()}
	type pending struct {
		m    *sarama.ConsumerMessage
		out  *collector
		done chan error
	}
	window := make(chan *pending, max(1, h.c.Cfg.PartitionWindow))
	markerDone := make(chan struct{})
	go func() {
		defer close(markerDone)
		var last chan error // the newest completion handed to the committer
		failed := false
		for p := range window {
			if err := <-p.done; err != nil {
				failed = true // never commit past an event that was not handed on
			}
			if failed {
				continue
			}
			last = make(chan error, 1)
			h.commit.add(&completion{ctx: ctx, group: group, m: p.m, out: p.out, done: last})
		}
		// Leave the claim only once what it handed on is committed (or given up), so the
		// next owner of the partition starts where this one really ended.
		if last != nil {
			<-last
		}
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
				out, err := h.handle(ctx, m)
				p.out = out
				p.done <- err
				finished <- err
			}()
		}
	}
}

// decode opens and decodes a tier record, retrying while the data keys cannot be read. It
// returns false for a record to skip: one that does not decode, logged and counted, and one
// whose recipients were all erased (their keys destroyed), counted as dropped; neither is
// retried. An error means ctx ended first.
func (h *handler) decode(ctx context.Context, m *sarama.ConsumerMessage) (notify.Event, bool, error) {
	backoff := 100 * time.Millisecond
	for {
		e, erased, err := notify.DecodeEvent(ctx, h.c.Fanout.keys, m.Value)
		notify.DroppedErased("fanout", erased)
		switch {
		case err == nil:
			return e, true, nil
		case notify.IsErased(err):
			eventsTotal.WithLabelValues(h.c.Fanout.set.Region, h.c.Tier, "erased").Inc()
			return notify.Event{}, false, nil
		case errors.Is(err, envelope.ErrUnavailable):
			h.c.Log.Warn("data keys unavailable; retrying", "tier", h.c.Tier, "err", err, "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return notify.Event{}, false, ctx.Err()
			}
			backoff = min(backoff*2, 10*time.Second)
		default:
			// The API only produces valid events; a record that does not decode is logged
			// and counted, not retried forever.
			eventsTotal.WithLabelValues(h.c.Fanout.set.Region, h.c.Tier, "poison").Inc()
			h.c.Log.Error("undecodable event skipped", "tier", h.c.Tier, "partition", m.Partition, "offset", m.Offset, "err", err)
			return notify.Event{}, false, nil
		}
	}
}

// handle processes one record, retrying with backoff while the stores are unavailable, and
// returns the records it collected for the transaction. It returns an error only when ctx
// ended first.
func (h *handler) handle(ctx context.Context, m *sarama.ConsumerMessage) (*collector, error) {
	e, ok, err := h.decode(ctx, m)
	if err != nil {
		return nil, err
	}
	if !ok {
		return &collector{}, nil
	}
	ctx = kafka.Extract(ctx, m)
	backoff := 100 * time.Millisecond
	for {
		select {
		case h.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		out := &collector{}
		var err error
		if e.Topic != "" {
			err = h.c.Fanout.Handle(ctx, e) // its records go out paced, as they are decided
		} else {
			err = h.c.Fanout.HandleTo(ctx, e, out)
		}
		<-h.sem
		if err == nil {
			eventsTotal.WithLabelValues(h.c.Fanout.set.Region, h.c.Tier, "ok").Inc()
			return out, nil
		}
		eventsTotal.WithLabelValues(h.c.Fanout.set.Region, h.c.Tier, "retry").Inc()
		h.c.Log.Warn("fan-out failed; retrying", "tier", h.c.Tier, "notification", e.ID, "err", err, "backoff", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}
