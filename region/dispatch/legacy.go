package dispatch

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/IBM/sarama"
	"golang.org/x/sync/errgroup"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/retry"
	"github.com/herald-notify/herald/region/notify"
)

// Draining the layout before tiers. A region upgraded from it may hold tasks and retries on the
// per-channel topics shared by every tier (<region>.dispatch.<channel> and its .retry.<n>);
// processes of the old version may even produce more there during a rolling upgrade. While such
// a topic exists, its old consumer group (named as the topic, so it resumes at the old
// dispatchers' committed offsets) reads it and forwards each record unchanged (the same key,
// the same sealed value) to its tier's topic of the same level; the tier's consumers send it.
// Forwarding is a produce, far faster than a send, so an OTP in the old backlog reaches its own
// tier's topic within moments even behind a marketing backlog. A record's offset is marked once
// Kafka acknowledged the forward: a crash forwards it again, and the sent keys keep the repeat
// from reaching the provider twice. Once the topics' groups have no lag and no process of the
// old version runs, delete the topics (docs/dispatch.md); their consumers stop.

// legacyListRetry is the wait before a failed listing of the legacy topics is tried again.
var legacyListRetry = retry.Backoff{Initial: 500 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.2}

// drainLegacy starts a forwarding consumer, in g, for each legacy topic of channels that exists.
// It lists the topics until Kafka answers (or ctx ends), so a start without Kafka does not fail.
func (d *Dispatcher) drainLegacy(ctx context.Context, g *errgroup.Group, channels []string) error {
	var existing []string
	waits := legacyListRetry.Start()
	for {
		var err error
		if existing, err = d.listTopics(); err == nil {
			break
		}
		wait := waits.Next()
		d.log.Warn("listing legacy dispatch topics failed; retrying", "err", err, "backoff", wait)
		if !retry.Sleep(ctx, wait) {
			return nil
		}
	}
	for _, ch := range channels {
		n := 0
		for _, tier := range notify.Tiers {
			n = max(n, d.cfg.Tiers.Tier(tier).Pool(ch).Concurrency)
		}
		for l := 0; l <= RetryLevels; l++ {
			topic := notify.LegacyDispatchTopic(d.region, ch)
			if l > 0 {
				topic = LegacyRetryTopic(d.region, ch, l)
			}
			if !slices.Contains(existing, topic) {
				continue
			}
			d.log.Info("draining legacy dispatch topic into the tiers' topics", "topic", topic)
			c := &consumer{d: d, channel: ch, topic: topic, group: topic, concurrency: n, level: l, legacy: true}
			g.Go(func() error { return c.run(ctx) })
		}
	}
	return nil
}

// legacyGoneCheck is how often a legacy consumer checks whether its topic was deleted.
const legacyGoneCheck = 5 * time.Second

// untilDeleted returns a context that ends with ctx or once topic no longer exists.
func (d *Dispatcher) untilDeleted(ctx context.Context, topic string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(legacyGoneCheck)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if topics, err := d.listTopics(); err == nil && !slices.Contains(topics, topic) {
				d.log.Info("legacy dispatch topic deleted; no longer drained", "topic", topic)
				cancel()
				return
			}
		}
	}()
	return ctx, cancel
}

// listTopics lists the cluster's topics.
func (d *Dispatcher) listTopics() ([]string, error) {
	sc, err := d.deps.Kafka.Sarama()
	if err != nil {
		return nil, err
	}
	cl, err := sarama.NewClient(d.deps.Kafka.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("connecting to kafka: %w", err)
	}
	defer cl.Close()
	return cl.Topics()
}

// forward puts a legacy record of level (0: a task, else a retry) on its tier's topic of the
// same level (the last configured level when fewer are configured), unchanged, retrying until
// Kafka acknowledges it or ctx ends.
func (d *Dispatcher) forward(ctx context.Context, m *sarama.ConsumerMessage, channel string, t notify.Task, level int) error {
	topic := notify.DispatchTopic(d.region, t.Tier, channel)
	if level > 0 {
		topic = RetryTopic(d.region, t.Tier, channel, min(level, len(d.cfg.Retry.Delays)))
	}
	msg := kafka.Message{Topic: topic, Key: string(m.Key), Value: m.Value}
	if err := d.durably(ctx, "forwarding a legacy dispatch record", func() error { return d.deps.Producer.Send(ctx, msg) },
		d.warn("forwarding a legacy dispatch record failed; retrying")); err != nil {
		return err
	}
	legacyForwarded.WithLabelValues(d.region, channel, notify.DispatchTier(t.Tier)).Inc()
	return nil
}
