package kafka

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

// A hanging transaction is one a partition still holds open while its coordinator has ended
// it: the markers that should have closed it on the partition were never written. Kafka does
// that when it completes a transaction while the partition has no leader (a one-broker cluster
// shutting down or starting: "Couldn't find leader endpoint for partitions ... likely deleted
// already and hence can be skipped"). On __consumer_offsets it holds the transaction's offsets
// pending for good, and the group can fetch no offset again (UNSTABLE_OFFSET_COMMIT): its
// consumer never starts. Brokers before KIP-890's second phase cannot prevent it, and sarama
// does not speak that phase.

// offsetsTopic is the topic a group's offsets live on.
const offsetsTopic = "__consumer_offsets"

// OpenOffsetsTxn is a transaction open on a group's __consumer_offsets partition.
type OpenOffsetsTxn struct {
	Partition        int32
	ProducerID       int64
	ProducerEpoch    int16
	CoordinatorEpoch int32
	StartOffset      int64
	LastWrite        time.Time
	// TransactionalID, State and Epoch are what the transaction coordinator knows of the
	// producer ("" when no transactional id has it).
	TransactionalID string
	State           string
	Epoch           int16
}

// Hanging reports whether t can never be completed by its producer: its transactional id is
// one of ours (prefix), it has written nothing for minAge (longer than any transaction of ours
// lasts: the coordinator aborts them after TxnTimeout), and the coordinator has no transaction
// of that epoch in progress (it ended it, or the producer has a newer epoch since).
func (t OpenOffsetsTxn) Hanging(prefix string, minAge time.Duration, now time.Time) bool {
	if t.TransactionalID == "" || !strings.HasPrefix(t.TransactionalID, prefix) {
		return false
	}
	if now.Sub(t.LastWrite) < minAge {
		return false
	}
	ongoing := t.State == "Ongoing" || t.State == "PrepareCommit" || t.State == "PrepareAbort"
	return !ongoing || t.Epoch != t.ProducerEpoch
}

// OffsetsPartition is the __consumer_offsets partition of group: Kafka's
// abs(group.hashCode()) % partitions, with Java's String.hashCode.
func OffsetsPartition(group string, partitions int) int32 {
	var h int32
	for _, r := range group {
		if r >= 0x10000 { // a UTF-16 surrogate pair, as Java hashes it
			r -= 0x10000
			h = 31*h + 0xD800 + (r >> 10)
			h = 31*h + 0xDC00 + (r & 0x3FF)
			continue
		}
		h = 31*h + r
	}
	if h == -1<<31 {
		return 0 // Kafka's Utils.abs maps MinValue to 0
	}
	if h < 0 {
		h = -h
	}
	return h % int32(partitions)
}

// OpenOffsetsTxns lists the transactions open on group's __consumer_offsets partition, with
// what their coordinator knows of each producer.
func OpenOffsetsTxns(ctx context.Context, c Config, group string) ([]OpenOffsetsTxn, error) {
	sc, err := c.Sarama()
	if err != nil {
		return nil, err
	}
	ca, err := sarama.NewClusterAdmin(c.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer ca.Close()
	admin, ok := ca.(sarama.TransactionClusterAdmin)
	if !ok {
		return nil, errors.New("this sarama's cluster admin cannot describe producers")
	}
	meta, err := admin.DescribeTopics([]string{offsetsTopic})
	if err != nil || len(meta) != 1 || len(meta[0].Partitions) == 0 {
		return nil, fmt.Errorf("%w: describing %s: %v", ErrUnavailable, offsetsTopic, err)
	}
	p := OffsetsPartition(group, len(meta[0].Partitions))
	prods, err := admin.DescribeProducers(map[string][]int32{offsetsTopic: {p}})
	if err != nil {
		return nil, fmt.Errorf("%w: describing the producers of %s-%d: %w", ErrUnavailable, offsetsTopic, p, err)
	}
	part, ok := prods[offsetsTopic][p]
	if !ok {
		return nil, fmt.Errorf("%w: no producers answered for %s-%d", ErrUnavailable, offsetsTopic, p)
	}
	if part.ErrorCode != sarama.ErrNoError {
		return nil, fmt.Errorf("%w: describing the producers of %s-%d: %w", ErrUnavailable, offsetsTopic, p, part.ErrorCode)
	}
	var out []OpenOffsetsTxn
	for _, ps := range part.ActiveProducers {
		if ps.CurrentTxnStartOffset < 0 {
			continue
		}
		t := OpenOffsetsTxn{Partition: p, ProducerID: ps.ProducerID, ProducerEpoch: int16(ps.ProducerEpoch), CoordinatorEpoch: ps.CoordinatorEpoch,
			StartOffset: ps.CurrentTxnStartOffset, LastWrite: time.UnixMilli(ps.LastTimestamp)}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		txns, err := admin.ListTransactions(nil, []int64{ps.ProducerID}, -1)
		if err != nil {
			return nil, fmt.Errorf("%w: listing the transactions of producer %d: %w", ErrUnavailable, ps.ProducerID, err)
		}
		if len(txns) > 0 {
			t.TransactionalID = txns[0].TransactionalID
			st, err := admin.DescribeTransactions([]string{t.TransactionalID})
			if err != nil {
				return nil, fmt.Errorf("%w: describing transaction %s: %w", ErrUnavailable, t.TransactionalID, err)
			}
			if s, ok := st[t.TransactionalID]; ok {
				t.State, t.Epoch = s.TransactionState, s.ProducerEpoch
			}
		}
		out = append(out, t)
	}
	return out, nil
}

// AbortHangingOffsets aborts the hanging transactions (OpenOffsetsTxn.Hanging) on group's
// __consumer_offsets partition, as Kafka's kafka-transactions.sh abort does (an abort marker
// written to the partition by its leader), and returns those it aborted. The group's pending
// offsets of those transactions are dropped; its consumers start again from the last committed
// offsets and repeat what the transactions covered (never visible, so never handed on).
func AbortHangingOffsets(ctx context.Context, c Config, group, prefix string, minAge time.Duration, now time.Time) ([]OpenOffsetsTxn, error) {
	open, err := OpenOffsetsTxns(ctx, c, group)
	if err != nil {
		return nil, err
	}
	var aborted []OpenOffsetsTxn
	for _, t := range open {
		if !t.Hanging(prefix, minAge, now) {
			continue
		}
		if err := AbortOpenTxn(ctx, c, t); err != nil {
			return aborted, err
		}
		aborted = append(aborted, t)
	}
	return aborted, nil
}

// AbortOpenTxn writes an abort marker for t on its __consumer_offsets partition, through the
// partition's leader. It does not look whether t hangs: AbortHangingOffsets does.
func AbortOpenTxn(ctx context.Context, c Config, t OpenOffsetsTxn) error {
	sc, err := c.Sarama()
	if err != nil {
		return err
	}
	client, err := sarama.NewClient(c.Brokers, sc)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer client.Close()
	leader, err := client.Leader(offsetsTopic, t.Partition)
	if err != nil {
		return fmt.Errorf("%w: the leader of %s-%d: %w", ErrUnavailable, offsetsTopic, t.Partition, err)
	}
	return writeAbortMarker(ctx, leader.Addr(), sc.ClientID, t)
}

// apiWriteTxnMarkers is Kafka's WriteTxnMarkers request (API key 27), version 1: the first
// flexible version, which Kafka 4 brokers answer (v0 was removed). sarama has no encoder for it.
const (
	apiWriteTxnMarkers     = 27
	writeTxnMarkersVersion = 1
)

// encodeWriteTxnMarkers is a size-prefixed WriteTxnMarkers v1 request (request header v2)
// aborting t on its __consumer_offsets partition.
func encodeWriteTxnMarkers(correlation int32, clientID string, t OpenOffsetsTxn) []byte {
	var b []byte
	b = binary.BigEndian.AppendUint32(b, 0) // size, set below
	b = binary.BigEndian.AppendUint16(b, apiWriteTxnMarkers)
	b = binary.BigEndian.AppendUint16(b, writeTxnMarkersVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(correlation))
	b = binary.BigEndian.AppendUint16(b, uint16(len(clientID))) // header v2 keeps a plain nullable string
	b = append(b, clientID...)
	b = binary.AppendUvarint(b, 0) // header tagged fields
	b = binary.AppendUvarint(b, 1+1)
	b = binary.BigEndian.AppendUint64(b, uint64(t.ProducerID))
	b = binary.BigEndian.AppendUint16(b, uint16(t.ProducerEpoch))
	b = append(b, 0)                 // transaction_result: false, abort
	b = binary.AppendUvarint(b, 1+1) // topics
	b = binary.AppendUvarint(b, uint64(len(offsetsTopic)+1))
	b = append(b, offsetsTopic...)
	b = binary.AppendUvarint(b, 1+1) // partition_indexes
	b = binary.BigEndian.AppendUint32(b, uint32(t.Partition))
	b = binary.AppendUvarint(b, 0) // topic tagged fields
	b = binary.BigEndian.AppendUint32(b, uint32(t.CoordinatorEpoch))
	b = binary.AppendUvarint(b, 0) // marker tagged fields
	b = binary.AppendUvarint(b, 0) // request tagged fields
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// decodeWriteTxnMarkers reads a WriteTxnMarkers v1 response body (after the size) and returns
// the first partition error, if any.
func decodeWriteTxnMarkers(body []byte, correlation int32) error {
	r := &reader{b: body}
	if got := int32(r.u32()); got != correlation {
		return fmt.Errorf("write txn markers: answer to request %d, not %d", got, correlation)
	}
	r.skipTags()
	var first error
	for range r.compactLen() { // markers
		r.u64()                    // producer id
		for range r.compactLen() { // topics
			r.compactString()
			for range r.compactLen() { // partitions
				part := int32(r.u32())
				if code := int16(r.u16()); code != 0 && first == nil {
					first = fmt.Errorf("write txn markers on partition %d: %w", part, sarama.KError(code))
				}
				r.skipTags()
			}
			r.skipTags()
		}
		r.skipTags()
	}
	r.skipTags()
	if r.err != nil {
		return fmt.Errorf("write txn markers: malformed answer: %w", r.err)
	}
	return first
}

// reader decodes Kafka's flexible encoding; the first short read sticks in err.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n < 0 || len(r.b) < n {
		if r.err == nil {
			r.err = io.ErrUnexpectedEOF
		}
		return make([]byte, min(max(n, 0), 8)) // zeros for the fixed-width readers; never n bytes
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u16() uint16 { return binary.BigEndian.Uint16(r.take(2)) }
func (r *reader) u32() uint32 { return binary.BigEndian.Uint32(r.take(4)) }
func (r *reader) u64() uint64 { return binary.BigEndian.Uint64(r.take(8)) }

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = io.ErrUnexpectedEOF
		return 0
	}
	r.b = r.b[n:]
	return v
}

// compactLen is a compact array's length (0 for null), bounded by what is left to read.
func (r *reader) compactLen() int {
	n := r.uvarint()
	if n == 0 || r.err != nil {
		return 0
	}
	if n-1 > uint64(len(r.b)) {
		r.err = errors.New("array longer than the answer")
		return 0
	}
	return int(n - 1)
}

func (r *reader) compactString() string {
	n := r.uvarint()
	if n == 0 {
		return ""
	}
	return string(r.take(int(n - 1)))
}

// skipTags skips a tagged-field section: a count, then (tag, size, bytes) each.
func (r *reader) skipTags() {
	n := r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		r.uvarint()
		size := r.uvarint()
		if size > uint64(len(r.b)) {
			r.err = io.ErrUnexpectedEOF
			return
		}
		r.take(int(size))
	}
}

// writeAbortMarker sends the request to addr and reads its answer.
func writeAbortMarker(ctx context.Context, addr, clientID string, t OpenOffsetsTxn) error {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(30 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	const correlation = 1
	if _, err := conn.Write(encodeWriteTxnMarkers(correlation, clientID, t)); err != nil {
		return fmt.Errorf("%w: write txn markers: %w", ErrUnavailable, err)
	}
	br := bufio.NewReader(conn)
	var size [4]byte
	if _, err := io.ReadFull(br, size[:]); err != nil {
		return fmt.Errorf("%w: write txn markers: %w", ErrUnavailable, err)
	}
	n := binary.BigEndian.Uint32(size[:])
	if n > 1<<20 {
		return fmt.Errorf("write txn markers: answer of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return fmt.Errorf("%w: write txn markers: %w", ErrUnavailable, err)
	}
	return decodeWriteTxnMarkers(body, correlation)
}
