package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
)

// RunGroup joins consumer group with sc and consumes topics with h until ctx ends: the group's
// errors are logged, and a session that fails is begun again after a second (a rebalance, a
// coordinator that moved, a broker that restarted). It returns an error only when the group
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
	for ctx.Err() == nil {
		if err := g.Consume(ctx, topics, h); err != nil {
			if errors.Is(err, sarama.ErrClosedConsumerGroup) || ctx.Err() != nil {
				break
			}
			log.Warn("consume failed; retrying", "group", group, "err", err)
			t := time.NewTimer(time.Second)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
	}
	return nil
}
