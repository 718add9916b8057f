//go:build integration

package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/testenv"
)

// consumeN joins group, consumes up to n messages, marks and commits them, and leaves.
func consumeN(t *testing.T, c kafka.Config, group, topic string, n int, idle time.Duration) []string {
	t.Helper()
	sc, err := c.Sarama()
	if err != nil {
		t.Fatal(err)
	}
	cg, err := sarama.NewConsumerGroup(c.Brokers, group, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	h := &collector{want: n, idle: idle, done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{topic}, h); err != nil {
				t.Errorf("consume: %v", err)
				return
			}
			select {
			case <-h.done:
				return
			default:
			}
		}
	}()
	select {
	case <-h.done:
	case <-ctx.Done():
		t.Fatalf("timed out with %d of %d messages", len(h.got), n)
	}
	cancel()
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.got...)
}

type collector struct {
	want int
	idle time.Duration
	mu   sync.Mutex
	got  []string
	done chan struct{}
	once sync.Once
}

func (c *collector) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (c *collector) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (c *collector) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	timer := time.NewTimer(c.idle)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			c.mu.Lock()
			if len(c.got) < c.want {
				c.got = append(c.got, string(m.Value))
				s.MarkMessage(m, "")
				s.Commit() // synchronous commit: the offset is on the broker before we go on
			}
			full := len(c.got) >= c.want
			c.mu.Unlock()
			if full {
				c.once.Do(func() { close(c.done) })
				return nil
			}
			timer.Reset(c.idle)
		case <-timer.C:
			c.once.Do(func() { close(c.done) })
			return nil
		case <-s.Context().Done():
			return nil
		}
	}
}

func TestKafkaProduceConsumeAndCommittedOffsetSurvivesConsumerRestart(t *testing.T) {
	c := testenv.Kafka(t)
	topic := "test." + testenv.Suffix()
	ctx := testenv.Context(t, time.Minute)
	if _, err := kafka.EnsureTopics(ctx, c, 1, []kafka.Topic{{Name: topic, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	testenv.DeleteTopics(t, c, topic)

	sc, err := c.Sarama()
	if err != nil {
		t.Fatal(err)
	}
	prod, err := sarama.NewSyncProducer(c.Brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	for i := 0; i < 10; i++ {
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("user-1"), Value: sarama.StringEncoder(fmt.Sprint(i))}); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}

	group := "test-group-" + testenv.Suffix()
	first := consumeN(t, c, group, topic, 4, 10*time.Second)
	if fmt.Sprint(first) != "[0 1 2 3]" {
		t.Fatalf("first consumer got %v", first)
	}
	// A new consumer in the same group resumes after the committed offset: no repeats, no gaps.
	second := consumeN(t, c, group, topic, 6, 10*time.Second)
	if fmt.Sprint(second) != "[4 5 6 7 8 9]" {
		t.Fatalf("restarted consumer got %v, want [4 5 6 7 8 9]", second)
	}
}

func TestEnsureTopicsIsIdempotent(t *testing.T) {
	c := testenv.Kafka(t)
	topic := "test." + testenv.Suffix()
	ctx := testenv.Context(t, time.Minute)
	created, err := kafka.EnsureTopics(ctx, c, 1, []kafka.Topic{{Name: topic, Partitions: 2, Retention: time.Hour}})
	if err != nil || len(created) != 1 {
		t.Fatalf("first run: %v %v", created, err)
	}
	testenv.DeleteTopics(t, c, topic)
	created, err = kafka.EnsureTopics(ctx, c, 1, []kafka.Topic{{Name: topic, Partitions: 2}})
	if err != nil || len(created) != 0 {
		t.Fatalf("second run created %v, err %v", created, err)
	}
}

// TestTopicRetentionIsWhatTheBrokersApply reads the retention of a topic created with its own
// (200h), of one that inherits the brokers' default (the local stack's log.retention.hours=24),
// and of one that keeps its records for ever; a topic that does not exist has none.
func TestTopicRetentionIsWhatTheBrokersApply(t *testing.T) {
	c := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	own, inherited := "test.retention-own."+testenv.Suffix(), "test.retention-default."+testenv.Suffix()
	testenv.DeleteTopics(t, c, own, inherited)
	if _, err := kafka.EnsureTopics(ctx, c, 1, []kafka.Topic{{Name: own, Partitions: 1, Retention: 200 * time.Hour}, {Name: inherited, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	// A topic just created, or a config just altered, may be unknown to the broker asked for a
	// moment: read until the retention is want or 10 s have passed.
	retention := func(topic string, want time.Duration, wantForever bool) (time.Duration, bool, error) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			d, forever, err := kafka.TopicRetention(ctx, c, topic)
			if (err == nil && d == want && forever == wantForever) || time.Now().After(deadline) {
				return d, forever, err
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if d, forever, err := retention(own, 200*time.Hour, false); err != nil || forever || d != 200*time.Hour {
		t.Fatalf("own retention: %s, for ever %v (%v), want 200h", d, forever, err)
	}
	if d, forever, err := retention(inherited, 24*time.Hour, false); err != nil || forever || d != 24*time.Hour {
		t.Fatalf("inherited retention: %s, for ever %v (%v), want the brokers' 24h", d, forever, err)
	}

	sc, err := c.Sarama()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sarama.NewClusterAdmin(c.Brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	never := "-1"
	if err := admin.AlterConfig(sarama.TopicResource, own, map[string]*string{"retention.ms": &never}, false); err != nil {
		t.Fatal(err)
	}
	if d, forever, err := retention(own, 0, true); err != nil || !forever {
		t.Fatalf("retention after retention.ms=-1: %s, for ever %v (%v)", d, forever, err)
	}
	if d, _, err := kafka.TopicRetention(ctx, c, "test.retention-missing."+testenv.Suffix()); err == nil {
		t.Fatalf("a topic that does not exist has a retention: %s", d)
	}
}
