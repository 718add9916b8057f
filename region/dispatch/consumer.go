package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/region/notify"
)

// consumer runs one consumer group: a channel's dispatch topic (level 0) or one of its retry
// levels.
type consumer struct {
	d           *Dispatcher
	channel     string
	topic       string
	group       string
	concurrency int
	level       int // 0: the dispatch topic
}

func (c *consumer) run(ctx context.Context) error {
	sc, err := c.d.deps.Kafka.Sarama()
	if err != nil {
		return err
	}
	sc.ClientID = c.d.deps.Kafka.ClientID + "-dispatch-" + c.channel
	sc.ChannelBufferSize = max(1, c.concurrency)
	group, err := sarama.NewConsumerGroup(c.d.deps.Kafka.Brokers, c.group, sc)
	if err != nil {
		return fmt.Errorf("dispatch %s: joining group %s: %w", c.channel, c.group, err)
	}
	defer group.Close()
	go func() {
		for err := range group.Errors() {
			c.d.log.Warn("consumer group error", "channel", c.channel, "group", c.group, "err", err)
		}
	}()
	c.d.log.Info("dispatch consuming", "channel", c.channel, "topic", c.topic, "group", c.group, "concurrency", c.concurrency)
	for ctx.Err() == nil {
		if err := group.Consume(ctx, []string{c.topic}, c); err != nil {
			if errors.Is(err, sarama.ErrClosedConsumerGroup) || ctx.Err() != nil {
				break
			}
			c.d.log.Warn("consume failed; retrying", "channel", c.channel, "group", c.group, "err", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
		}
	}
	return nil
}

func (c *consumer) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (c *consumer) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// pending is one record in flight; done gets its handling error (nil: mark it).
type pending struct {
	m    *sarama.ConsumerMessage
	done chan error
}

// ConsumeClaim handles up to concurrency records of the partition at once and marks offsets in
// order, each only once its record reached its durable outcome. On a retry level it first holds
// the partition until the head record is due. When the session ends (shutdown or rebalance),
// tasks in hand get up to the send timeout to finish; what does not finish stays unmarked and
// is consumed again.
func (c *consumer) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	sctx := sess.Context()
	// Handling outlives the session by a grace period, so a send in progress completes and is
	// recorded instead of being cut off after the provider accepted it.
	hctx, cancel := context.WithCancel(context.WithoutCancel(sctx))
	defer cancel()
	stopGrace := context.AfterFunc(sctx, func() { time.AfterFunc(c.d.cfg.SendTimeout+5*time.Second, cancel) })
	defer stopGrace()

	window := make(chan *pending, max(1, c.concurrency))
	var failed atomic.Bool
	markerDone := make(chan struct{})
	go func() {
		defer close(markerDone)
		last := time.Now()
		for p := range window {
			if err := <-p.done; err != nil {
				failed.Store(true)
			}
			if failed.Load() {
				continue // never mark past a record that did not finish
			}
			sess.MarkMessage(p.m, "")
			if time.Since(last) > 200*time.Millisecond {
				sess.Commit()
				last = time.Now()
			}
		}
		sess.Commit()
	}()
	defer func() {
		close(window)
		<-markerDone
	}()
	level := strconv.Itoa(c.level)
	for !failed.Load() {
		select {
		case <-sctx.Done():
			return nil
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			if c.level > 0 {
				retryDepth.WithLabelValues(c.d.region, c.channel, level).Set(float64(claim.HighWaterMarkOffset() - m.Offset - 1))
			}
			task, prev, err := c.decode(m)
			if err != nil {
				tasksTotal.WithLabelValues(c.d.region, c.channel, "poison").Inc()
				c.d.log.Error("undecodable dispatch record skipped", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "err", err)
				p := &pending{m: m, done: make(chan error, 1)}
				p.done <- nil
				window <- p
				continue
			}
			if prev != nil {
				// Hold the partition until the head record is due; later records of a level
				// are due later (same delay), so nothing behind it is held back long.
				if wait := prev.NotBefore.Sub(c.d.now()); wait > 0 {
					t := time.NewTimer(wait)
					select {
					case <-t.C:
					case <-sctx.Done():
						t.Stop()
						return nil
					}
				}
			}
			p := &pending{m: m, done: make(chan error, 1)}
			select {
			case window <- p:
			case <-sctx.Done():
				return nil
			}
			go func() {
				ctx := kafka.Extract(hctx, m)
				p.done <- c.d.process(ctx, task, prev)
			}()
		}
	}
	return nil
}

func (c *consumer) decode(m *sarama.ConsumerMessage) (notify.Task, *Retry, error) {
	if c.level == 0 {
		var t notify.Task
		if err := json.Unmarshal(m.Value, &t); err != nil {
			return t, nil, fmt.Errorf("%w: %w", errPoison, err)
		}
		if t.Channel == "" {
			t.Channel = c.channel
		}
		return t, nil, nil
	}
	var r Retry
	if err := json.Unmarshal(m.Value, &r); err != nil {
		return notify.Task{}, nil, fmt.Errorf("%w: %w", errPoison, err)
	}
	return r.Task, &r, nil
}
