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
	"github.com/herald-notify/herald/region/deadletter"
	"github.com/herald-notify/herald/region/notify"
)

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
	watch := unstableWatch{after: hangingAfter}
	kafka.Consume(ctx, group, []string{c.Topic}, h, c.Log.With("tier", c.Tier, "group", c.Group), func(err error) {
		if watch.observe(err, time.Now()) {
			c.abortHanging(ctx)
		}
	})
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
			if err := <-last; err != nil {
				h.c.Log.Debug("the claim's last hand-off was given up; the partition's next owner repeats it", "err", err)
			}
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

// handle processes one record and returns the records it collected for the transaction that
// commits its offset. A failure is classified (deadletter.Classify): a permanent one (the
// record does not decode, fails validation, or a store refuses its data) is dead-lettered at
// once; a transient one (a store down, data keys unavailable) is retried under the tier's
// failure_retry policy, then dead-lettered. Either way the dead letter goes in the record's
// own transaction, so the partition moves on and a crash repeats both or neither. A record
// whose recipients were all erased is dropped, never dead-lettered. handle returns an error
// only when ctx ended first.
func (h *handler) handle(ctx context.Context, m *sarama.ConsumerMessage) (*collector, error) {
	ctx = kafka.Extract(ctx, m)
	region, tier := h.c.Fanout.set.Region, h.c.Tier
	var (
		e       notify.Event
		decoded bool
		out     = &collector{}
	)
	attempts, err := h.c.Cfg.FailureRetry.Do(ctx, func(ctx context.Context) error {
		if !decoded {
			ev, erased, err := notify.DecodeEvent(ctx, h.c.Fanout.keys, m.Value)
			switch {
			case notify.IsErased(err):
				notify.DroppedErased("fanout", erased)
				eventsTotal.WithLabelValues(region, tier, "erased").Inc()
				return nil // out stays empty: the offset moves on
			case errors.Is(err, envelope.ErrUnavailable):
				return err
			case err != nil:
				return deadletter.MarkPermanent(fmt.Errorf("decoding event: %w", err), deadletter.ReasonUndecodable)
			}
			notify.DroppedErased("fanout", erased)
			if err := validEvent(ev); err != nil {
				return deadletter.MarkPermanent(err, deadletter.ReasonInvalid)
			}
			e, decoded = ev, true
		}
		select {
		case h.sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer func() { <-h.sem }()
		out = &collector{} // what a failed attempt collected is not handed on
		if e.Topic != "" {
			return h.c.Fanout.Handle(ctx, e) // its records go out paced, as they are decided
		}
		return h.c.Fanout.HandleTo(ctx, e, out)
	}, func(err error, wait time.Duration) {
		eventsTotal.WithLabelValues(region, tier, "retry").Inc()
		h.c.Log.Warn("fan-out failed; retrying", "tier", tier, "notification", e.ID, "partition", m.Partition, "offset", m.Offset, "err", err, "backoff", wait)
	})
	switch {
	case err == nil:
		if decoded {
			eventsTotal.WithLabelValues(region, tier, "ok").Inc()
		}
		return out, nil
	case deadletter.Stopped(err):
		return nil, err
	case notify.IsErased(err): // its users were erased while it was handled: dropped
		notify.DroppedErased("fanout", 1)
		eventsTotal.WithLabelValues(region, tier, "erased").Inc()
		return &collector{}, nil
	}
	// Set aside: the dead letter, and nothing else, goes in the event's transaction.
	l := deadletter.FromMessage(deadletter.FanoutStage(tier), m, err, attempts, time.Now())
	msg, merr := l.Message(region)
	if merr != nil {
		return nil, merr
	}
	out = &collector{}
	_ = out.Send(ctx, msg)
	out.Then(func() {
		eventsTotal.WithLabelValues(region, tier, "dead_lettered").Inc()
		deadletter.Counted(h.c.Log.With("notification", e.ID), region, l)
	})
	return out, nil
}

// validEvent refuses an event no stage can handle.
func validEvent(e notify.Event) error {
	switch {
	case e.ID == "":
		return errors.New("event has no id")
	case e.AppID == "":
		return errors.New("event has no app")
	}
	return nil
}
