package kafka

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

func TestOffsetsPartitionIsKafkasJavaHashOfTheGroup(t *testing.T) {
	for _, c := range []struct {
		group string
		n     int
		want  int32
	}{
		// Where the hanging transactions of the kafka-restart fault were (TransactionsCommand
		// describe-producers on each partition of a 10-partition __consumer_offsets).
		{"us-east-1.fanout.marketing", 10, 7},
		{"eu-west-1.fanout.marketing", 10, 5},
		{"eu-central-1.fanout.marketing", 10, 7},
		{"us-east-1.fanout.social", 10, 0},
		{"", 50, 0},
		// Java: "polygenelubricants".hashCode() == Integer.MIN_VALUE; Utils.abs maps it to 0.
		{"polygenelubricants", 50, 0},
		// Java hashes UTF-16: "😀" is the pair D83D DE00, 31*0xD83D+0xDE00 = 1772899.
		{"😀", 1000, 1772899 % 1000},
	} {
		if got := OffsetsPartition(c.group, c.n); got != c.want {
			t.Errorf("OffsetsPartition(%q, %d) = %d, want %d", c.group, c.n, got, c.want)
		}
	}
}

func TestHangingIsOnlyAnOldTransactionOfOursItsCoordinatorNoLongerHas(t *testing.T) {
	now := time.Date(2026, 12, 7, 15, 31, 0, 0, time.UTC)
	// What the kafka-restart fault left: producer 31 at epoch 28 still open on the partition,
	// its coordinator at epoch 29 with nothing in progress.
	hanging := OpenOffsetsTxn{ProducerID: 31, ProducerEpoch: 28, LastWrite: now.Add(-2 * time.Minute),
		TransactionalID: "us-east-1.fanout.marketing.us-east-1-vm-8103", State: "Empty", Epoch: 29}
	for _, c := range []struct {
		name string
		edit func(*OpenOffsetsTxn)
		want bool
	}{
		{"ended by its coordinator, a newer epoch since", func(*OpenOffsetsTxn) {}, true},
		{"ended by its coordinator, same epoch", func(o *OpenOffsetsTxn) { o.Epoch = 28; o.State = "CompleteCommit" }, true},
		{"in progress at a newer epoch", func(o *OpenOffsetsTxn) { o.State = "Ongoing" }, true},
		{"in progress at its epoch", func(o *OpenOffsetsTxn) { o.State = "Ongoing"; o.Epoch = 28 }, false},
		{"being committed at its epoch", func(o *OpenOffsetsTxn) { o.State = "PrepareCommit"; o.Epoch = 28 }, false},
		{"being aborted at its epoch", func(o *OpenOffsetsTxn) { o.State = "PrepareAbort"; o.Epoch = 28 }, false},
		{"written to within minAge", func(o *OpenOffsetsTxn) { o.LastWrite = now.Add(-20 * time.Second) }, false},
		{"another application's", func(o *OpenOffsetsTxn) { o.TransactionalID = "billing.us-east-1.fanout.x" }, false},
		{"no transactional id known", func(o *OpenOffsetsTxn) { o.TransactionalID = "" }, false},
		{"another region's", func(o *OpenOffsetsTxn) { o.TransactionalID = "eu-west-1.fanout.marketing.eu-west-1-vm-8101" }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := hanging
			c.edit(&o)
			if got := o.Hanging("us-east-1.fanout.", time.Minute, now); got != c.want {
				t.Fatalf("Hanging = %v, want %v (%+v)", got, c.want, o)
			}
		})
	}
}

// response builds a WriteTxnMarkers v1 answer with one partition answered code.
func response(correlation int32, code int16) []byte {
	var b []byte
	b = binary.BigEndian.AppendUint32(b, uint32(correlation))
	b = binary.AppendUvarint(b, 0)
	b = binary.AppendUvarint(b, 2) // one marker
	b = binary.BigEndian.AppendUint64(b, 31)
	b = binary.AppendUvarint(b, 2) // one topic
	b = binary.AppendUvarint(b, uint64(len(offsetsTopic)+1))
	b = append(b, offsetsTopic...)
	b = binary.AppendUvarint(b, 2) // one partition
	b = binary.BigEndian.AppendUint32(b, 7)
	b = binary.BigEndian.AppendUint16(b, uint16(code))
	b = binary.AppendUvarint(b, 0)
	b = binary.AppendUvarint(b, 0)
	b = binary.AppendUvarint(b, 0)
	b = binary.AppendUvarint(b, 0)
	return b
}

func TestWriteTxnMarkersAnswersAreReadWithTheirPartitionErrors(t *testing.T) {
	if err := decodeWriteTxnMarkers(response(1, 0), 1); err != nil {
		t.Fatalf("a clean answer: %v", err)
	}
	if err := decodeWriteTxnMarkers(response(1, int16(sarama.ErrNotLeaderForPartition)), 1); !errors.Is(err, sarama.ErrNotLeaderForPartition) {
		t.Fatalf("a partition error: %v", err)
	}
	if err := decodeWriteTxnMarkers(response(2, 0), 1); err == nil {
		t.Fatal("an answer to another request was taken")
	}
	full := response(1, 0)
	for n := range len(full) - 1 {
		if err := decodeWriteTxnMarkers(full[:n], 1); err == nil {
			t.Fatalf("an answer cut at %d of %d bytes was taken", n, len(full))
		}
	}
}

func TestWriteTxnMarkersRequestCarriesTheAbortOfThatProducerOnThatPartition(t *testing.T) {
	o := OpenOffsetsTxn{Partition: 7, ProducerID: 31, ProducerEpoch: 28, CoordinatorEpoch: 24}
	b := encodeWriteTxnMarkers(9, "herald", o)
	if got := binary.BigEndian.Uint32(b); int(got) != len(b)-4 {
		t.Fatalf("size %d, request of %d bytes after it", got, len(b)-4)
	}
	r := &reader{b: b[4:]}
	if k, v, corr := r.u16(), r.u16(), r.u32(); k != apiWriteTxnMarkers || v != writeTxnMarkersVersion || corr != 9 {
		t.Fatalf("header: key %d version %d correlation %d", k, v, corr)
	}
	if id := string(r.take(int(r.u16()))); id != "herald" {
		t.Fatalf("client id %q", id)
	}
	r.skipTags()
	if n := r.compactLen(); n != 1 {
		t.Fatalf("%d markers", n)
	}
	pid, epoch, result := int64(r.u64()), int16(r.u16()), r.take(1)[0]
	if pid != 31 || epoch != 28 || result != 0 {
		t.Fatalf("marker producer %d epoch %d result %d, want 31 28 0 (abort)", pid, epoch, result)
	}
	if n := r.compactLen(); n != 1 {
		t.Fatalf("%d topics", n)
	}
	if topic := r.compactString(); topic != offsetsTopic {
		t.Fatalf("topic %q", topic)
	}
	if n := r.compactLen(); n != 1 {
		t.Fatalf("%d partitions", n)
	}
	if p := r.u32(); p != 7 {
		t.Fatalf("partition %d", p)
	}
	r.skipTags()
	if ce := r.u32(); ce != 24 {
		t.Fatalf("coordinator epoch %d", ce)
	}
	r.skipTags()
	r.skipTags()
	if r.err != nil || len(r.b) != 0 {
		t.Fatalf("read error %v, %d bytes left", r.err, len(r.b))
	}
}

func FuzzDecodeWriteTxnMarkers(f *testing.F) {
	f.Add(response(1, 0))
	f.Add(response(1, 6))
	f.Add([]byte{0, 0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = decodeWriteTxnMarkers(b, 1) // any answer: an error or nil, never a panic or a hang
	})
}
