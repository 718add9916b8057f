package dispatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/region/deadletter"
	"github.com/herald-notify/herald/region/notify"
)

// consumer runs one consumer group: a tier's and channel's dispatch topic (level 0) or one of
// its retry levels, or, legacy, a topic of the layout before tiers that it drains (legacy.go).
type consumer struct {
	d           *Dispatcher
	tier        string // "" for legacy
	channel     string
	topic       string
	group       string
	concurrency int
	level       int // 0: the dispatch topic
	// legacy consumers forward each record to its tier's topic of the same level instead of
	// sending it, and stop once their topic is deleted.
	legacy bool
}

func (c *consumer) run(ctx context.Context) error {
	sc, err := c.d.deps.Kafka.Sarama()
	if err != nil {
		return err
	}
	// Each consumer has its own client (its own fetches): sarama holds back every partition a
	// client fetches while one of them waits for its window, so a shared client would let a
	// marketing window stall transactional partitions.
	sc.ClientID = c.d.deps.Kafka.ClientID + "-dispatch-" + cmp.Or(c.tier, "legacy") + "-" + c.channel
	sc.ChannelBufferSize = max(1, c.concurrency)
	// The dispatcher holds records back on purpose while its window is full. With sarama's
	// default (100 ms), a partition whose records waited that long was dropped from the fetch
	// and subscribed again after another 100 ms: under load, consumption went in 100 ms steps
	// (2,100-2,800 iOS pushes/s instead of 3,500-4,700 in the bench) and the first tasks after a
	// burst waited up to 100 ms.
	sc.Consumer.MaxProcessingTime = consumerMaxProcessingTime
	if c.legacy {
		sc.Metadata.AllowAutoTopicCreation = false // a deleted legacy topic stays deleted
		var stop context.CancelFunc
		ctx, stop = c.d.untilDeleted(ctx, c.topic)
		defer stop()
	}
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
	kafka.Consume(ctx, group, []string{c.topic}, c, c.d.log.With("channel", c.channel, "group", c.group), nil)
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
	sctx := withTier(sess.Context(), cmp.Or(c.tier, "legacy")) // the bulk tiers' key reads wait for their own slots (keys.go)
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
		c.markInOrder(sess, window, &failed)
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
				retryDepth.WithLabelValues(c.d.region, cmp.Or(c.tier, "legacy"), c.channel, level).Set(float64(claim.HighWaterMarkOffset() - m.Offset - 1))
			}
			task, prev, err := c.decode(sctx, m)
			if errors.Is(err, envelope.ErrUnavailable) {
				// The data keys cannot be read (Postgres down): retried under failure_retry.
				_, err = c.d.cfg.FailureRetry.Do(sctx, func(ctx context.Context) error {
					task, prev, err = c.decode(ctx, m)
					return err // an erased record stops the retries, and is dropped below
				}, func(err error, backoff time.Duration) {
					c.d.log.Warn("data keys unavailable; retrying", "topic", m.Topic, "err", err, "backoff", backoff)
				})
				if deadletter.Stopped(err) {
					return nil
				}
			}
			if notify.IsErased(err) {
				// Its recipient was erased: the record is unreadable and skipped, never retried.
				tasksTotal.WithLabelValues(c.d.region, c.channel, "erased").Inc()
				stage := "dispatch"
				if c.level > 0 {
					stage = "dispatch_retry"
				}
				notify.DroppedErased(stage, 1)
				p := &pending{m: m, done: make(chan error, 1)}
				p.done <- nil
				window <- p
				continue
			}
			if err != nil {
				// It does not decode or fails validation, or its keys stayed unreadable past
				// failure_retry: set aside on the stage's dead-letter topic, and the partition
				// moves on.
				p := &pending{m: m, done: make(chan error, 1)}
				p.done <- c.deadLetter(hctx, m, err, 1)
				select {
				case window <- p:
				case <-sctx.Done():
					return nil
				}
				continue
			}
			if prev != nil && !c.legacy {
				// Hold the partition until the head record is due; later records of a level
				// are due later (same delay), so nothing behind it is held back long.
				// A provider of the channel that came back since the retry was written
				// releases it at once (see recovery).
				for {
					wait := prev.NotBefore.Sub(c.d.now())
					if wait <= 0 {
						break
					}
					back, next := c.d.recovered[c.channel].since(prev.At)
					if back {
						retriesReleased.WithLabelValues(c.d.region, c.channel).Inc()
						break
					}
					t := time.NewTimer(wait)
					select {
					case <-t.C:
					case <-next:
						t.Stop()
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
				var err error
				if c.legacy {
					err = c.d.forward(ctx, m, c.channel, task, c.level)
				} else {
					err = c.d.process(ctx, task, prev)
				}
				if notify.IsErased(err) {
					notify.DroppedErased(stageOf(prev), 1)
					err = nil
				}
				if err != nil && hctx.Err() == nil {
					// Its outcome (or, draining a legacy topic, its forwarding) could not be
					// recorded, permanently or past failure_retry.
					err = c.deadLetter(hctx, m, err, task.Attempt+1)
				}
				p.done <- err
			}()
		}
	}
	return nil
}

// consumerMaxProcessingTime is how long a record may wait for the window before sarama stops
// fetching its partition until the window takes it: above a task's time under load.
const consumerMaxProcessingTime = time.Second

// commitEvery is how often marked offsets are committed while a partition is busy, and how
// soon after its last record when it goes quiet.
const commitEvery = 200 * time.Millisecond

// markInOrder marks the window's records in order as each finishes, never past one that failed
// (failed is then set), and commits what it marked every commitEvery, including after the last
// record of a burst rather than only when the next one comes. It returns once the window is
// closed and drained, after a last commit.
func (c *consumer) markInOrder(sess sarama.ConsumerGroupSession, window <-chan *pending, failed *atomic.Bool) {
	tick := time.NewTicker(commitEvery)
	defer tick.Stop()
	marked := false // since the last commit
	defer sess.Commit()
	var head *pending // the oldest record not yet finished
	for {
		var next <-chan *pending
		var headDone <-chan error
		if head == nil {
			next = window
		} else {
			headDone = head.done
		}
		select {
		case p, ok := <-next:
			if !ok {
				return
			}
			head = p
		case err := <-headDone:
			if err != nil {
				failed.Store(true)
			}
			if !failed.Load() { // never mark past a record that did not finish
				sess.MarkMessage(head.m, "")
				marked = true
			}
			head = nil
		case <-tick.C:
			if marked {
				sess.Commit()
				marked = false
			}
		}
	}
}

func (c *consumer) decode(ctx context.Context, m *sarama.ConsumerMessage) (notify.Task, *Retry, error) {
	if c.level == 0 {
		t, err := notify.DecodeTask(ctx, c.d.deps.Keys, m.Value)
		if err != nil {
			return t, nil, decodeError(err)
		}
		if t.Channel == "" {
			t.Channel = c.channel
		}
		return t, nil, c.validTask(t)
	}
	r, err := DecodeRetry(ctx, c.d.deps.Keys, m.Value)
	if err != nil {
		return notify.Task{}, nil, decodeError(err)
	}
	return r.Task, &r, c.validTask(r.Task)
}

// decodeError marks a decoding error permanent (undecodable) unless it is an erased record or
// keys that could not be read (retried).
func decodeError(err error) error {
	if notify.IsErased(err) || errors.Is(err, envelope.ErrUnavailable) {
		return err
	}
	return deadletter.MarkPermanent(fmt.Errorf("%w: %w", errPoison, err), deadletter.ReasonUndecodable)
}

// validTask refuses a task no provider can be given: one without a notification, a recipient
// or an app, or of another channel than its topic's.
func (c *consumer) validTask(t notify.Task) error {
	switch {
	case t.NotificationID == "" || t.UserID == "" || t.AppID == "":
		return deadletter.MarkPermanent(errors.New("task has no notification, user or app"), deadletter.ReasonInvalid)
	case t.Channel != c.channel:
		return deadletter.MarkPermanent(fmt.Errorf("task of channel %q on the %s topic", t.Channel, c.channel), deadletter.ReasonInvalid)
	}
	return nil
}

// deadLetter puts m on the channel's stage dead-letter topic, "<region>.dlq.dispatch.<channel>",
// with err, and returns nil once it is durable (the record may be marked), or an error when ctx
// ended first.
func (c *consumer) deadLetter(ctx context.Context, m *sarama.ConsumerMessage, err error, attempts int) error {
	l := deadletter.FromMessage(deadletter.DispatchStage(c.channel), m, err, attempts, c.d.now())
	w := deadletter.Writer{Region: c.d.region, Producer: c.d.deps.Producer, Log: c.d.log.With("channel", c.channel, "level", c.level)}
	if err := w.Put(ctx, l); err != nil {
		return err
	}
	tasksTotal.WithLabelValues(c.d.region, c.channel, "poison").Inc()
	return nil
}

// stageOf names the dispatch stage for herald_erased_records_dropped_total: a main task
// (prev nil) or a retry.
func stageOf(prev *Retry) string {
	if prev == nil {
		return "dispatch"
	}
	return "dispatch_retry"
}
