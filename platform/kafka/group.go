package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/retry"
)

// RunGroup joins consumer group with sc and consumes topics with h until ctx ends: the group's
// errors are logged, and a session that fails is begun again after ConsumeRetry's wait (a
// rebalance, a coordinator that moved, a broker that restarted). It returns an error only when the group
// cannot be created.
func RunGroup(ctx context.Context, brokers []string, sc *sarama.Config, group string, topics []string, h sarama.ConsumerGroupHandler, log *slog.Logger) error {
	g, err := sarama.NewConsumerGroup(brokers, group, sc)
	if err != nil {
		return fmt.Errorf("joining group %s: %w", group, err)
	}
	defer g.Close()
	go func() {
		for err := range g.Errors() {
			log.Warn("consumer group error", "group", group, "err", err)
		}
	}()
	log.Info("consuming", "topics", topics, "group", group)
	Consume(ctx, g, topics, h, log.With("group", group), nil)
	return nil
}

// Consume runs g's sessions on topics with h until ctx ends or g is closed. A session that
// ends for a rebalance is begun again at once; one that fails is logged and begun again after
// ConsumeRetry's wait. observe, when set, is told how each session ended (nil: a rebalance).
func Consume(ctx context.Context, g sarama.ConsumerGroup, topics []string, h sarama.ConsumerGroupHandler, log *slog.Logger, observe func(error)) {
	waits := ConsumeRetry.Start()
	for ctx.Err() == nil {
		err := g.Consume(ctx, topics, h)
		if observe != nil {
			observe(err)
		}
		if err == nil {
			waits.Reset()
			continue
		}
		if errors.Is(err, sarama.ErrClosedConsumerGroup) || ctx.Err() != nil {
			return
		}
		wait := waits.Next()
		log.Warn("consume failed; retrying", "err", err, "backoff", wait)
		retry.Sleep(ctx, wait)
	}
}

// ConsumeRetry is the wait before a consumer group's failed session is begun again: short,
// since the failure is mostly a broker on its way back, and capped at a second, so a group
// resumes within about a second of the cluster's return.
var ConsumeRetry = retry.Backoff{Initial: 250 * time.Millisecond, Max: time.Second, Jitter: 0.2}
