//go:build integration

package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/testenv"
)

// committedValues reads a partition as a read_committed consumer does.
func committedValues(t *testing.T, c kafka.Config, topic string) []string {
	t.Helper()
	sc, err := c.Sarama()
	if err != nil {
		t.Fatal(err)
	}
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
