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
	waits := ConsumeRetry.Start()
	for ctx.Err() == nil {
		err := g.Consume(ctx, topics, h)
		if err == nil {
			waits.Reset()
			continue
		}
		if errors.Is(err, sarama.ErrClosedConsumerGroup) || ctx.Err() != nil {
			break
		}
		wait := waits.Next()
		log.Warn("consume failed; retrying", "group", group, "err", err, "backoff", wait)
		retry.Sleep(ctx, wait)
	}
	return nil
}

// ConsumeRetry is the wait before a consumer group's failed session is begun again: short,
// since the failure is mostly a broker on its way back, and capped at a second, so a group
// resumes within about a second of the cluster's return.
var ConsumeRetry = retry.Backoff{Initial: 250 * time.Millisecond, Max: time.Second, Jitter: 0.2}
