package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/IBM/sarama"
)

// PartitionLag is one partition of a consumer group as the broker sees it.
type PartitionLag struct {
	Group     string
	Topic     string
	Partition int32
	// Committed is the group's committed offset: the next record it will consume. A partition
	// the group holds but never committed starts at the log start (consumers start at the
	// oldest record), and Committed is that offset.
	Committed int64
	// End is the partition's last stable offset: where the log a read_committed consumer sees
	// ends (the log end offset, unless a transaction is still open).
	End int64
	// Lag is how many records the group has yet to consume: End - Committed, less the
	// transaction markers and aborted records in that range when it is short (ShortLag). A
	// partition written in transactions ends with a commit marker that no consumer ever
	// "consumes" (its committed offset stops just before it), so End - Committed alone reads 1 on
	// an idle, fully consumed partition.
	Lag int64
}

// ShortLag is the largest End - Committed for which the range is read to leave out transaction
// markers and aborted records. Above it the lag is End - Committed: a few markers more or less
// do not change what a lag of that size means, and no reading is worth it.
const ShortLag = 256

// GroupLags reads, for every group, each partition it committed an offset for or is assigned,
// its committed offset, the end of its log and the lag between them.
func GroupLags(ctx context.Context, client sarama.Client, admin sarama.ClusterAdmin, groups []string) ([]PartitionLag, error) {
	type result struct {
		lags []PartitionLag
		err  error
	}
	done := make(chan result, 1)
	// sarama takes no context: the call runs on, to its own network timeouts, if ctx ends first.
	go func() {
		lags, err := groupLags(client, admin, groups)
		done <- result{lags, err}
	}()
	select {
	case r := <-done:
		return r.lags, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("reading consumer group lag: %w", ctx.Err())
	}
}

type topicPartition struct {
	topic     string
	partition int32
}

func groupLags(client sarama.Client, admin sarama.ClusterAdmin, groups []string) ([]PartitionLag, error) {
	if len(groups) == 0 {
		return nil, nil
	}
	descs, err := admin.DescribeConsumerGroups(groups)
	if err != nil {
		return nil, fmt.Errorf("describing consumer groups: %w", err)
	}
	var out []PartitionLag
	wanted := map[topicPartition]bool{}
	for _, g := range groups {
		resp, err := admin.ListConsumerGroupOffsets(g, nil)
		if err != nil {
			return nil, fmt.Errorf("committed offsets of %s: %w", g, err)
		}
		if kerr := resp.Err; kerr != sarama.ErrNoError {
			return nil, fmt.Errorf("committed offsets of %s: %w", g, kerr)
		}
		parts := map[topicPartition]int64{}
		for topic, ps := range resp.Blocks {
			for p, b := range ps {
				if b.Err != sarama.ErrNoError {
					return nil, fmt.Errorf("committed offset of %s %s/%d: %w", g, topic, p, b.Err)
				}
				parts[topicPartition{topic, p}] = b.Offset
			}
		}
		for _, d := range descs {
			if d.GroupId != g {
				continue
			}
			for _, m := range d.Members {
				a, err := m.GetMemberAssignment()
				if err != nil || a == nil {
					continue
				}
				for topic, ps := range a.Topics {
					for _, p := range ps {
						if _, ok := parts[topicPartition{topic, p}]; !ok {
							parts[topicPartition{topic, p}] = -1
						}
					}
				}
			}
		}
		for tp, off := range parts {
			out = append(out, PartitionLag{Group: g, Topic: tp.topic, Partition: tp.partition, Committed: off})
			wanted[tp] = true
		}
	}
	ends, err := listOffsets(client, wanted, sarama.OffsetNewest)
	if err != nil {
		return nil, err
	}
	var uncommitted map[topicPartition]int64
	for _, l := range out {
		if l.Committed < 0 {
			if uncommitted, err = listOffsets(client, wanted, sarama.OffsetOldest); err != nil {
				return nil, err
			}
			break
		}
	}
	for i := range out {
		l := &out[i]
		tp := topicPartition{l.Topic, l.Partition}
		l.End = ends[tp]
		if l.Committed < 0 {
			l.Committed = uncommitted[tp]
		}
		l.Lag = max(l.End-l.Committed, 0)
		if l.Lag > 0 && l.Lag <= ShortLag {
			n, ok, err := dataRecords(client, l.Topic, l.Partition, l.Committed, l.End, sarama.ReadCommitted)
			if err != nil {
				return nil, err
			}
			if ok {
				l.Lag = n
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		return a.Partition < b.Partition
	})
	return out, nil
}

// listOffsets asks each partition's leader for its newest offset as a read_committed consumer
// sees it (the last stable offset), or its oldest, all partitions of one leader in one request.
func listOffsets(client sarama.Client, tps map[topicPartition]bool, at int64) (map[topicPartition]int64, error) {
	byLeader := map[*sarama.Broker][]topicPartition{}
	for tp := range tps {
		b, err := client.Leader(tp.topic, tp.partition)
		if err != nil {
			return nil, fmt.Errorf("leader of %s/%d: %w", tp.topic, tp.partition, err)
		}
		byLeader[b] = append(byLeader[b], tp)
	}
	out := make(map[topicPartition]int64, len(tps))
	for b, list := range byLeader {
		req := sarama.NewOffsetRequest(client.Config().Version)
		req.IsolationLevel = sarama.ReadCommitted
		for _, tp := range list {
			req.AddBlock(tp.topic, tp.partition, at, 1)
		}
		resp, err := b.GetAvailableOffsets(req)
		if err != nil {
			return nil, fmt.Errorf("listing offsets on broker %d: %w", b.ID(), err)
		}
		for _, tp := range list {
			blk := resp.GetBlock(tp.topic, tp.partition)
			if blk == nil {
				return nil, fmt.Errorf("listing offsets: no answer for %s/%d", tp.topic, tp.partition)
			}
			if blk.Err != sarama.ErrNoError {
				return nil, fmt.Errorf("listing offsets of %s/%d: %w", tp.topic, tp.partition, blk.Err)
			}
			off := blk.Offset
			if len(blk.Offsets) > 0 {
				off = blk.Offsets[0]
			}
			out[tp] = off
		}
	}
	return out, nil
}

// dataRecords counts the records a consumer of the given isolation would get from [from, to):
// transaction markers are left out, and under read_committed the records of aborted
// transactions too. ok is false when one fetch did not cover the range (records larger than
// it): the caller keeps to - from.
func dataRecords(client sarama.Client, topic string, partition int32, from, to int64, isolation sarama.IsolationLevel) (n int64, ok bool, err error) {
	b, err := client.Leader(topic, partition)
	if err != nil {
		return 0, false, fmt.Errorf("leader of %s/%d: %w", topic, partition, err)
	}
	req := &sarama.FetchRequest{Version: 11, MaxWaitTime: 0, MinBytes: 0, MaxBytes: 4 << 20, Isolation: isolation}
	req.AddBlock(topic, partition, from, 4<<20, -1)
	resp, err := b.Fetch(req)
	if err != nil {
		return 0, false, fmt.Errorf("reading %s/%d from %d: %w", topic, partition, from, err)
	}
	blk := resp.GetBlock(topic, partition)
	if blk == nil {
		return 0, false, fmt.Errorf("reading %s/%d: no answer", topic, partition)
	}
	if blk.Err != sarama.ErrNoError {
		if errors.Is(blk.Err, sarama.ErrOffsetOutOfRange) {
			return 0, false, nil // aged out meanwhile: the next round sees the new log start
		}
		return 0, false, fmt.Errorf("reading %s/%d: %w", topic, partition, blk.Err)
	}
	return countData(blk, from, to, isolation == sarama.ReadCommitted)
}

// countData counts the data records of committed transactions (or of none) in [from, to) in a
// fetch's batches, following the aborted transactions the broker listed (as a Java consumer
// does): a producer's records from an aborted transaction's first offset up to its abort marker
// are left out, and every control batch (commit and abort markers) is.
func countData(blk *sarama.FetchResponseBlock, from, to int64, committed bool) (n int64, covered bool, err error) {
	aborted := append([]*sarama.AbortedTransaction(nil), blk.AbortedTransactions...)
	sort.Slice(aborted, func(i, j int) bool { return aborted[i].FirstOffset < aborted[j].FirstOffset })
	abortedProducers := map[int64]bool{}
	var last int64 = -1
	for _, rs := range blk.RecordsSet {
		batch := rs.RecordBatch
		if batch == nil {
			if rs.MsgSet != nil {
				return 0, false, errors.New("legacy message sets are not read")
			}
			continue
		}
		if batch.PartialTrailingRecord || len(batch.Records) == 0 && !batch.Control {
			break
		}
		lastOffset := batch.FirstOffset + int64(batch.LastOffsetDelta)
		for len(aborted) > 0 && aborted[0].FirstOffset <= lastOffset {
			abortedProducers[aborted[0].ProducerID] = true
			aborted = aborted[1:]
		}
		last = lastOffset
		if batch.Control {
			if isAbortMarker(batch) {
				delete(abortedProducers, batch.ProducerID)
			}
			continue
		}
		if committed && batch.IsTransactional && abortedProducers[batch.ProducerID] {
			continue
		}
		for _, r := range batch.Records {
			if off := batch.FirstOffset + r.OffsetDelta; off >= from && off < to {
				n++
			}
		}
	}
	return n, last >= to-1, nil
}

// isAbortMarker reports whether a control batch is an abort marker: its record's key is a
// version (int16) and a type (int16), 0 for abort, 1 for commit.
func isAbortMarker(batch *sarama.RecordBatch) bool {
	if len(batch.Records) == 0 || len(batch.Records[0].Key) < 4 {
		return false
	}
	return binary.BigEndian.Uint16(batch.Records[0].Key[2:4]) == 0
}
