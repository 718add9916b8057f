package dispatch

import (
	"context"
	"fmt"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/region/notify"
)

// DeadLetter is one record of a channel's dead-letter topic.
type DeadLetter struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
	Retry
}

// ListDeadLetters reads up to limit records of the channel's dead-letter topic, oldest first,
// without consuming them. Dead letters of erased users (their keys destroyed) are left out.
func ListDeadLetters(ctx context.Context, kc kafka.Config, keys notify.Sealer, region, channel string, limit int) ([]DeadLetter, error) {
	var out []DeadLetter
	err := eachDeadLetter(ctx, kc, keys, region, channel, nil, func(dl DeadLetter) (bool, error) {
		out = append(out, dl)
		return len(out) < limit, nil
	})
	return out, err
}

// ReplayDeadLetters puts every dead letter not replayed before back on the channel's dispatch
// topic with its attempts reset, and remembers (in the consumer group "<dlq topic>.replay")
// how far it got, so a second replay does not send the same letters again. It returns how
// many it replayed. A dead letter of an erased user is unreadable and dropped (counted in
// herald_erased_records_dropped_total{stage="dlq_replay"}), never replayed.
func ReplayDeadLetters(ctx context.Context, kc kafka.Config, p Producer, keys notify.Sealer, region, channel string) (int, error) {
	sc, err := kc.Sarama()
	if err != nil {
		return 0, err
	}
	client, err := sarama.NewClient(kc.Brokers, sc)
	if err != nil {
		return 0, fmt.Errorf("connecting to kafka: %w", err)
	}
	defer client.Close()
	om, err := sarama.NewOffsetManagerFromClient(DLQTopic(region, channel)+".replay", client)
	if err != nil {
		return 0, fmt.Errorf("offset manager: %w", err)
	}
	defer om.Close()
	n := 0
	err = eachDeadLetter(ctx, kc, keys, region, channel, om, func(dl DeadLetter) (bool, error) {
		err := Replay(ctx, p, keys, region, dl.Retry)
		if notify.IsErased(err) { // erased since it was listed: nothing to replay
			notify.DroppedErased("dlq_replay", 1)
			return true, nil
		}
		if err != nil {
			return false, err
		}
		n++
		return true, nil
	})
	return n, err
}

// eachDeadLetter calls fn for the records of the dead-letter topic, from the offsets om
// remembers (or the oldest), marking each one in om after fn accepted it. Records of erased
// users are skipped (and marked: they can never be read again).
func eachDeadLetter(ctx context.Context, kc kafka.Config, keys notify.Sealer, region, channel string, om sarama.OffsetManager, fn func(DeadLetter) (bool, error)) error {
	topic := DLQTopic(region, channel)
	sc, err := kc.Sarama()
	if err != nil {
		return err
	}
	client, err := sarama.NewClient(kc.Brokers, sc)
	if err != nil {
		return fmt.Errorf("connecting to kafka: %w", err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return err
	}
	defer consumer.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		return fmt.Errorf("dead-letter topic %s: %w", topic, err)
	}
	for _, part := range parts {
		newest, err := client.GetOffset(topic, part, sarama.OffsetNewest)
		if err != nil {
			return err
		}
		start := sarama.OffsetOldest
		var pom sarama.PartitionOffsetManager
		if om != nil {
			if pom, err = om.ManagePartition(topic, part); err != nil {
				return err
			}
			if next, _ := pom.NextOffset(); next >= 0 {
				start = next
			}
		}
		oldest, err := client.GetOffset(topic, part, sarama.OffsetOldest)
		if err != nil {
			return err
		}
		if start == sarama.OffsetOldest {
			start = oldest
		}
		if start >= newest {
			if pom != nil {
				pom.AsyncClose()
			}
			continue
		}
		pc, err := consumer.ConsumePartition(topic, part, start)
		if err != nil {
			return err
		}
		more := true
		for more {
			select {
			case <-ctx.Done():
				pc.Close()
				return ctx.Err()
			case m := <-pc.Messages():
				dl := DeadLetter{Partition: part, Offset: m.Offset}
				var err error
				cont := true
				if dl.Retry, err = DecodeRetry(ctx, keys, m.Value); notify.IsErased(err) {
					stage := "dlq_list"
					if om != nil {
						stage = "dlq_replay"
					}
					notify.DroppedErased(stage, 1)
				} else if err != nil {
					pc.Close()
					return fmt.Errorf("dead letter %d/%d: %w", part, m.Offset, err)
				} else {
					cont, err = fn(dl)
				}
				if err != nil && !notify.IsErased(err) {
					pc.Close()
					return err
				}
				if pom != nil {
					pom.MarkOffset(m.Offset+1, "")
				}
				if !cont {
					pc.Close()
					if om != nil {
						pom.AsyncClose()
						om.Commit()
					}
					return nil
				}
				if m.Offset >= newest-1 {
					more = false
				}
			}
		}
		pc.Close()
		if pom != nil {
			pom.AsyncClose()
		}
	}
	if om != nil {
		om.Commit()
	}
	return nil
}
