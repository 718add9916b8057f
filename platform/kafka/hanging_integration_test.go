//go:build integration

package kafka_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/testenv"
)

// openOffsetsTxn leaves a transaction open on group's __consumer_offsets partition: offsets of
// topic committed in a transaction of transactionalID (timeout 10 min) that never ends.
func openOffsetsTxn(t *testing.T, c kafka.Config, transactionalID, group, topic string) {
	t.Helper()
	client := newClient(t, c)
	defer client.Close()
	tc, err := client.TransactionCoordinator(transactionalID)
	if err != nil {
		t.Fatal(err)
	}
	ip, err := tc.InitProducerID(&sarama.InitProducerIDRequest{Version: 3, TransactionalID: &transactionalID, TransactionTimeout: 10 * time.Minute})
	if err != nil || !errors.Is(ip.Err, sarama.ErrNoError) {
		t.Fatalf("init producer id: %v %v", err, ip.Err)
	}
	ao, err := tc.AddOffsetsToTxn(&sarama.AddOffsetsToTxnRequest{Version: 2, TransactionalID: transactionalID, ProducerID: ip.ProducerID, ProducerEpoch: ip.ProducerEpoch, GroupID: group})
	if err != nil || !errors.Is(ao.Err, sarama.ErrNoError) {
		t.Fatalf("add offsets to txn: %v %v", err, ao.Err)
	}
	gc, err := client.Coordinator(group)
	if err != nil {
		t.Fatal(err)
	}
	r, err := gc.TxnOffsetCommit(&sarama.TxnOffsetCommitRequest{Version: 2, TransactionalID: transactionalID, GroupID: group,
		ProducerID: ip.ProducerID, ProducerEpoch: ip.ProducerEpoch, Topics: map[string][]*sarama.PartitionOffsetMetadata{topic: {{Partition: 0, Offset: 1}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ps := range r.Topics {
		for _, p := range ps {
			if !errors.Is(p.Err, sarama.ErrNoError) {
				t.Fatalf("txn offset commit: %v", p.Err)
			}
		}
	}
}

// fetchStable fetches group's offset of topic/0 as a read_committed consumer does (stable
// offsets only) and returns the error Kafka answers.
func fetchStable(t *testing.T, c kafka.Config, group, topic string) error {
	t.Helper()
	client := newClient(t, c)
	defer client.Close()
	gc, err := client.Coordinator(group)
	if err != nil {
		t.Fatal(err)
	}
	req := &sarama.OffsetFetchRequest{Version: 7, ConsumerGroup: group, RequireStable: true}
	req.AddPartition(topic, 0)
	res, err := gc.FetchOffset(req)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res.Err, sarama.ErrNoError) {
		return res.Err
	}
	if b := res.GetBlock(topic, 0); b != nil && !errors.Is(b.Err, sarama.ErrNoError) {
		return b.Err
	}
	return nil
}

// A transaction open on a group's offsets partition holds the group: no stable offset can be
// fetched (UNSTABLE_OFFSET_COMMIT, a read_committed consumer never starts). It is not taken for
// hanging while its coordinator has it in progress, whatever its transactional id, and an abort
// marker written to the partition (what AbortHangingOffsets writes for a hanging one) frees the
// group at once.
func TestAnAbortMarkerOnTheOffsetsPartitionFreesAGroupAnOpenTransactionHeld(t *testing.T) {
	c := testenv.Kafka(t)
	ctx := testenv.Context(t, 2*time.Minute)
	run := fmt.Sprintf("hang-%d", time.Now().UnixNano())
	topic, group, txnID := run+"-topic", run+"-group", "test-hanging."+run
	if _, err := kafka.EnsureTopics(ctx, c, 1, []kafka.Topic{{Name: topic, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := fetchStable(t, c, group, topic); err != nil {
		t.Fatalf("before: %v", err)
	}
	openOffsetsTxn(t, c, txnID, group, topic)
	if err := fetchStable(t, c, group, topic); !errors.Is(err, sarama.ErrUnstableOffsetCommit) {
		t.Fatalf("with the transaction open the fetch answered %v, want UNSTABLE_OFFSET_COMMIT: the test cannot see the failure", err)
	}

	open, err := kafka.OpenOffsetsTxns(ctx, c, group)
	if err != nil {
		t.Fatal(err)
	}
	var mine *kafka.OpenOffsetsTxn
	for i := range open {
		if open[i].TransactionalID == txnID {
			mine = &open[i]
		}
	}
	if mine == nil {
		t.Fatalf("the open transaction of %s is not listed: %+v", txnID, open)
	}
	if mine.State != "Ongoing" || mine.Epoch != mine.ProducerEpoch {
		t.Fatalf("coordinator state %q epoch %d, partition epoch %d: want Ongoing, the same", mine.State, mine.Epoch, mine.ProducerEpoch)
	}
	// Its coordinator has it in progress: never hanging, however old, ours or not.
	if mine.Hanging("test-hanging.", 0, time.Now().Add(time.Hour)) {
		t.Fatal("a transaction its coordinator has in progress was taken for hanging")
	}
	aborted, err := kafka.AbortHangingOffsets(ctx, c, group, "test-hanging.", 0, time.Now().Add(time.Hour))
	if err != nil || len(aborted) != 0 {
		t.Fatalf("AbortHangingOffsets aborted %+v (%v): want nothing", aborted, err)
	}
	if err := fetchStable(t, c, group, topic); !errors.Is(err, sarama.ErrUnstableOffsetCommit) {
		t.Fatalf("after AbortHangingOffsets the fetch answered %v: something was aborted", err)
	}

	// The abort marker, as written for a hanging one.
	if err := kafka.AbortOpenTxn(ctx, c, *mine); err != nil {
		t.Fatal(err)
	}
	if err := fetchStable(t, c, group, topic); err != nil {
		t.Fatalf("after the abort marker the fetch answered %v, want the group's offsets", err)
	}
	open, err = kafka.OpenOffsetsTxns(ctx, c, group)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range open {
		if o.TransactionalID == txnID {
			t.Fatalf("still open on the partition after the abort marker: %+v", o)
		}
	}
}
