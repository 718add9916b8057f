//go:build integration

package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/testenv"
)

// committedValues reads a partition as a read_committed consumer does.
func committedValues(t *testing.T, c kafka.Config, topic string) []string {
	t.Helper()
	client := newClient(t, c)
	defer client.Close()
	cons, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	newest, err := client.GetOffset(topic, 0, sarama.OffsetNewest)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	if _, err := kafka.ReadRange(context.Background(), cons, topic, 0, 0, newest, 2*time.Second, func(m *sarama.ConsumerMessage) {
		out = append(out, string(m.Value))
	}); err != nil && !errors.Is(err, kafka.ErrIdle) {
		t.Fatal(err)
	}
	return out
}

func committedOffset(t *testing.T, c kafka.Config, group, topic string) int64 {
	t.Helper()
	sc, _ := c.Sarama()
	admin, err := sarama.NewClusterAdmin(c.Brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	res, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0}})
	if err != nil {
		t.Fatal(err)
	}
	b := res.GetBlock(topic, 0)
	if b == nil {
		return -1
	}
	return b.Offset
}

func TestTxnProducerMakesRecordsVisibleWithTheirOffsetsAndAnAbandonedTransactionNever(t *testing.T) {
	c := testenv.Kafka(t)
	in, out := "test.in."+testenv.Suffix(), "test.out."+testenv.Suffix()
	ctx := testenv.Context(t, time.Minute)
	if _, err := kafka.EnsureTopics(ctx, c, 1, []kafka.Topic{{Name: in, Partitions: 1}, {Name: out, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	testenv.DeleteTopics(t, c, in, out)
	group := "test-txn-" + testenv.Suffix()
	id := "test-txn-" + testenv.Suffix()
	meta := &sarama.ConsumerGroupMetadata{GroupID: group, GenerationID: -1}
	rec := func(v string) *sarama.ProducerMessage {
		return kafka.Message{Topic: out, Key: "k", Value: []byte(v)}.Record(ctx)
	}

	tp, err := kafka.NewTxnProducer(c, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.Commit(ctx, []*sarama.ProducerMessage{rec("a"), rec("b")}, map[string][]*sarama.PartitionOffsetMetadata{in: {{Partition: 0, Offset: 5}}}, meta); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(committedValues(t, c, out)); got != "[a b]" {
		t.Fatalf("after the first commit a read_committed consumer sees %s, want [a b]", got)
	}
	if off := committedOffset(t, c, group, in); off != 5 {
		t.Fatalf("committed offset %d, want 5", off)
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}

	// A process that dies inside a transaction: its record is written but never committed.
	sc, _ := c.Sarama()
	sc.Producer.Transaction.ID = id
	sc.Producer.Return.Successes = true
	zombie, err := sarama.NewAsyncProducer(c.Brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	if err := zombie.BeginTxn(); err != nil {
		t.Fatal(err)
	}
	zombie.Input() <- rec("lost")
	select {
	case <-zombie.Successes():
	case err := <-zombie.Errors():
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("the zombie's record was not written")
	}
	// Its successor (same transactional id) fences it and aborts what it left open.
	next, err := kafka.NewTxnProducer(c, id)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	if err := next.Commit(ctx, []*sarama.ProducerMessage{rec("c")}, map[string][]*sarama.PartitionOffsetMetadata{in: {{Partition: 0, Offset: 9}}}, meta); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(committedValues(t, c, out)); got != "[a b c]" {
		t.Fatalf("a read_committed consumer sees %s, want [a b c] (the abandoned record must stay invisible)", got)
	}
	if off := committedOffset(t, c, group, in); off != 9 {
		t.Fatalf("committed offset %d, want 9", off)
	}
	// The fenced zombie cannot commit any more.
	if err := zombie.CommitTxn(); err == nil {
		t.Fatal("the fenced producer committed")
	}
	_ = zombie.Close()
}

// A partition whose range closes with two transaction markers (one producer's abort, another's
// commit): ReadRangeOf hands over every record the isolation level sees and ends at once, where
// ReadRange, which expects one marker at most, waits out its idle time and reports ErrIdle (the
// residency audit failed that way after the fault suite's Kafka restart).
func TestReadRangeOfEndsAtOnceWhenOnlyMarkersCloseTheRange(t *testing.T) {
	c := testenv.Kafka(t)
	topic := "test.markers." + testenv.Suffix()
	ctx := testenv.Context(t, time.Minute)
	if _, err := kafka.EnsureTopics(ctx, c, 1, []kafka.Topic{{Name: topic, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	testenv.DeleteTopics(t, c, topic)
	producer := func(id string) sarama.SyncProducer {
		sc, err := c.Sarama()
		if err != nil {
			t.Fatal(err)
		}
		sc.Producer.Idempotent, sc.Producer.RequiredAcks, sc.Producer.Return.Successes = true, sarama.WaitForAll, true
		sc.Producer.Transaction.ID, sc.Net.MaxOpenRequests = id, 1
		p, err := sarama.NewSyncProducer(c.Brokers, sc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		return p
	}
	a, b := producer("test-markers-a-"+testenv.Suffix()), producer("test-markers-b-"+testenv.Suffix())
	send := func(p sarama.SyncProducer, v string) {
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(v)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.BeginTxn(); err != nil {
		t.Fatal(err)
	}
	send(a, "aborted")
	if err := b.BeginTxn(); err != nil {
		t.Fatal(err)
	}
	send(b, "committed")
	if err := a.AbortTxn(); err != nil {
		t.Fatal(err)
	}
	if err := b.CommitTxn(); err != nil {
		t.Fatal(err)
	}

	read := func(isolation sarama.IsolationLevel, of bool) ([]string, time.Duration, error) {
		sc, _ := c.Sarama()
		sc.Consumer.IsolationLevel = isolation
		client, err := sarama.NewClient(c.Brokers, sc)
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		cons, err := sarama.NewConsumerFromClient(client)
		if err != nil {
			t.Fatal(err)
		}
		defer cons.Close()
		// The coordinator writes the markers after it answered the commit or abort, so the
		// partition's end reaches 4 a moment later (seen at 3 once in CI).
		var newest int64
		for deadline := time.Now().Add(10 * time.Second); ; {
			if newest, err = client.GetOffset(topic, 0, sarama.OffsetNewest); err != nil {
				t.Fatal(err)
			}
			if newest == 4 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if newest != 4 {
			t.Fatalf("newest offset %d, want 4 (two records, two markers)", newest)
		}
		var got []string
		fn := func(m *sarama.ConsumerMessage) { got = append(got, string(m.Value)) }
		start := time.Now()
		if of {
			_, err = kafka.ReadRangeOf(ctx, client, isolation, cons, topic, 0, 0, newest, 10*time.Second, fn)
		} else {
			_, err = kafka.ReadRange(ctx, cons, topic, 0, 0, newest, 3*time.Second, fn)
		}
		return got, time.Since(start), err
	}
	for _, tc := range []struct {
		name      string
		isolation sarama.IsolationLevel
		want      string
	}{
		{"read uncommitted", sarama.ReadUncommitted, "aborted,committed"},
		{"read committed", sarama.ReadCommitted, "committed"},
	} {
		got, took, err := read(tc.isolation, true)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(strings.Split(tc.want, ",")) {
			t.Fatalf("%s: %v (%v), want %s", tc.name, got, err, tc.want)
		}
		if took > 5*time.Second {
			t.Errorf("%s: the read took %s: it waited for markers", tc.name, took.Round(time.Millisecond))
		}
	}
	if _, _, err := read(sarama.ReadUncommitted, false); !errors.Is(err, kafka.ErrIdle) {
		t.Errorf("ReadRange over two closing markers: %v, want ErrIdle (what ReadRangeOf exists for)", err)
	}
}
