package deadletter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/kafka"
)

// Listed is a dead letter with its place on the dead-letter topic.
type Listed struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
	Letter
}

// readIdle is how long a read waits for a partition that stops short of its end (an aborted
// transaction's records under read_committed).
const readIdle = 3 * time.Second

// List reads up to limit dead letters of the stage, oldest first per partition, without
// consuming them. It opens nothing: the records stay sealed.
func List(ctx context.Context, kc kafka.Config, region, stage string, limit int) ([]Listed, error) {
	var out []Listed
	err := each(ctx, kc, Topic(region, stage), nil, func(l Listed) (bool, error) {
		out = append(out, l)
		return len(out) < limit, nil
	})
	return out, err
}

// Replayed is what Replay did.
type Replayed struct {
	// Replayed letters were put back on their origin topics.
	Replayed int
	// Skipped letters carry no record to put back (a scheduled row whose recipients could not
	// be read, so its payload could not be sealed); they stay listed on the topic.
	Skipped int
}

// Replay puts every dead letter of the stage not replayed before back on its origin topic,
// key and bytes as they were, and remembers how far it got in the consumer group
// "<dlq topic>.replay", so replaying again does not send the same letters twice. A letter of
// users erased since is replayed too: its record is unreadable and the stage drops it, as it
// drops any erased record.
func Replay(ctx context.Context, kc kafka.Config, p Producer, region, stage string) (Replayed, error) {
	var r Replayed
	sc, err := kc.Sarama()
	if err != nil {
		return r, err
	}
	client, err := sarama.NewClient(kc.Brokers, sc)
	if err != nil {
		return r, fmt.Errorf("connecting to kafka: %w", err)
	}
	defer client.Close()
	topic := Topic(region, stage)
	om, err := sarama.NewOffsetManagerFromClient(topic+".replay", client)
	if err != nil {
		return r, fmt.Errorf("offset manager: %w", err)
	}
	defer om.Close()
	err = each(ctx, kc, topic, om, func(l Listed) (bool, error) {
		if len(l.Value) == 0 || l.Origin.Topic == "" {
			r.Skipped++
			return true, nil
		}
		if err := p.Send(ctx, kafka.Message{Topic: l.Origin.Topic, Key: string(l.Key), Value: l.Value}); err != nil {
			return false, fmt.Errorf("replaying %s %d/%d: %w", topic, l.Partition, l.Offset, err)
		}
		r.Replayed++
		return true, nil
	})
	return r, err
}

// each calls fn for the dead letters of topic, from the offsets om remembers (or the oldest),
// marking each in om once fn accepted it, until fn says stop or the topic's end as it was at
// the start. A record that is not a dead letter fails the read.
func each(ctx context.Context, kc kafka.Config, topic string, om sarama.OffsetManager, fn func(Listed) (bool, error)) error {
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
	if om != nil {
		defer om.Commit()
	}
	errStop := errors.New("stop")
	for _, part := range parts {
		oldest, err := client.GetOffset(topic, part, sarama.OffsetOldest)
		if err != nil {
			return err
		}
		newest, err := client.GetOffset(topic, part, sarama.OffsetNewest)
		if err != nil {
			return err
		}
		start := oldest
		var pom sarama.PartitionOffsetManager
		if om != nil {
			if pom, err = om.ManagePartition(topic, part); err != nil {
				return err
			}
			if next, _ := pom.NextOffset(); next > start {
				start = next
			}
		}
		var ferr error
		_, err = kafka.ReadRange(ctx, consumer, topic, part, start, newest, readIdle, func(m *sarama.ConsumerMessage) {
			if ferr != nil {
				return
			}
			l, err := Decode(m.Value)
			if err != nil {
				ferr = fmt.Errorf("%s %d/%d: %w", topic, part, m.Offset, err)
				return
			}
			more, err := fn(Listed{Partition: part, Offset: m.Offset, Letter: l})
			if err != nil {
				ferr = err
				return
			}
			if pom != nil {
				pom.MarkOffset(m.Offset+1, "")
			}
			if !more {
				ferr = errStop
			}
		})
		if pom != nil {
			pom.AsyncClose()
		}
		switch {
		case errors.Is(ferr, errStop):
			return nil
		case ferr != nil:
			return ferr
		case err != nil && !errors.Is(err, kafka.ErrIdle):
			return err
		}
	}
	return nil
}
