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

// stallingHandler consumes and commits every record before stallAt, then holds the record at
// stallAt for good (as a consumer retrying a poison message in place does), recording what the
// old per-claim gauge (high-water mark minus the offset handed out, minus one) read then.
type stallingHandler struct {
	stallAt  int64
	mu       sync.Mutex
	oldGauge int64
	stalled  chan struct{}
	once     sync.Once
}

func (h *stallingHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *stallingHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *stallingHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		if m.Offset < h.stallAt {
			sess.MarkMessage(m, "")
			sess.Commit()
			continue
		}
		h.mu.Lock()
		h.oldGauge = claim.HighWaterMarkOffset() - m.Offset - 1
		h.mu.Unlock()
		h.once.Do(func() { close(h.stalled) })
		<-sess.Context().Done() // stuck on this record until the group is closed
		return nil
	}
	return nil
}

func lagOf(t *testing.T, c kafka.Config, group, topic string) kafka.PartitionLag {
	t.Helper()
	l, ok := findLag(t, c, group, topic)
	if !ok {
		t.Fatalf("no lag for %s %s/0", group, topic)
	}
	return l
}

// findLag is the group's lag on the topic's partition 0, if the group has it yet.
func findLag(t *testing.T, c kafka.Config, group, topic string) (kafka.PartitionLag, bool) {
	t.Helper()
	client := newClient(t, c)
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	lags, err := kafka.GroupLags(testenv.Context(t, 30*time.Second), client, admin, []string{group})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lags {
		if l.Topic == topic && l.Partition == 0 {
			return l, true
		}
	}
	return kafka.PartitionLag{}, false
}

func produceValues(t *testing.T, p *kafka.Producer, topic string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := p.Send(testenv.Context(t, 30*time.Second), kafka.Message{Topic: topic, Key: "k", Value: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
}

func newTopic(t *testing.T, c kafka.Config) string {
	t.Helper()
	topic := "test.lag." + testenv.Suffix()
	if _, err := kafka.EnsureTopics(testenv.Context(t, time.Minute), c, 1, []kafka.Topic{{Name: topic, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	testenv.DeleteTopics(t, c, topic)
	return topic
}

func eventuallyLag(t *testing.T, c kafka.Config, group, topic string, want func(kafka.PartitionLag) bool) kafka.PartitionLag {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, ok := findLag(t, c, group, topic)
		if ok && want(l) {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: lag %+v", group, topic, l)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestGroupLagShowsAStalledGroupsRealLagWhileTheOldGaugeReadsZero(t *testing.T) {
	c := testenv.Kafka(t)
	topic := newTopic(t, c)
	p, err := kafka.NewProducer(c)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	produceValues(t, p, topic, 0, 3)

	group := "test.lag." + testenv.Suffix()
	sc, _ := c.Sarama()
	cg, err := sarama.NewConsumerGroup(c.Brokers, group, sc)
	if err != nil {
		t.Fatal(err)
	}
	h := &stallingHandler{stallAt: 3, stalled: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			_ = cg.Consume(ctx, []string{topic}, h)
		}
	}()
	t.Cleanup(func() { cancel(); cg.Close(); <-done })

	// Consumed and committed: no lag.
	eventuallyLag(t, c, group, topic, func(l kafka.PartitionLag) bool { return l.Committed == 3 && l.Lag == 0 })

	// The group takes the next record and sticks on it while five more arrive.
	produceValues(t, p, topic, 3, 1)
	select {
	case <-h.stalled:
	case <-time.After(30 * time.Second):
		t.Fatal("the consumer never got the record it stalls on")
	}
	produceValues(t, p, topic, 4, 5)
	l := eventuallyLag(t, c, group, topic, func(l kafka.PartitionLag) bool { return l.Lag == 6 })
	h.mu.Lock()
	old := h.oldGauge
	h.mu.Unlock()
	t.Logf("stalled group: committed %d, end %d, lag %d; the old gauge read %d", l.Committed, l.End, l.Lag, old)
	if l.Committed != 3 || l.End != 9 {
		t.Fatalf("stalled group: %+v, want committed 3, end 9", l)
	}
	if old != 0 {
		t.Fatalf("the old gauge read %d: this test no longer shows what it was built for", old)
	}
}

func TestGroupLagOfAnIdleFullyConsumedTransactionalPartitionIsZeroAndAStalledOneCountsOnlyItsRecords(t *testing.T) {
	c := testenv.Kafka(t)
	topic := newTopic(t, c)
	txp, err := kafka.NewTxnProducer(c, "test.lag."+testenv.Suffix())
	if err != nil {
		t.Fatal(err)
	}
	defer txp.Close()
	commit := func(values ...string) {
		t.Helper()
		var recs []*sarama.ProducerMessage
		for _, v := range values {
			recs = append(recs, &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(v)})
		}
		if err := txp.Commit(testenv.Context(t, 30*time.Second), recs, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	commit("a", "b")
	commit("c") // offsets: a 0, b 1, marker 2, c 3, marker 4

	group := "test.lag." + testenv.Suffix()
	if got := consumeN(t, c, group, topic, 3, 10*time.Second); fmt.Sprint(got) != "[a b c]" {
		t.Fatalf("consumed %v", got)
	}
	l := eventuallyLag(t, c, group, topic, func(l kafka.PartitionLag) bool { return l.Committed == 4 })
	t.Logf("idle transactional partition: committed %d, end %d, lag %d", l.Committed, l.End, l.Lag)
	if l.End != 5 || l.Lag != 0 {
		t.Fatalf("idle, fully consumed: %+v, want end 5 (a commit marker after the last record) and lag 0", l)
	}

	// Two more transactions nobody consumes: the lag is their three records, not the five
	// offsets with their markers.
	commit("d", "e")
	commit("f")
	l = lagOf(t, c, group, topic)
	if l.End != 10 || l.Lag != 3 {
		t.Fatalf("behind by three records: %+v, want end 10 and lag 3", l)
	}
}
