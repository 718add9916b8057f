package kafka

import (
	"testing"

	"github.com/IBM/sarama"
)

func dataBatch(first int64, n int, producer int64, txn bool) *sarama.Records {
	b := &sarama.RecordBatch{FirstOffset: first, LastOffsetDelta: int32(n - 1), ProducerID: producer, IsTransactional: txn}
	for i := 0; i < n; i++ {
		b.Records = append(b.Records, &sarama.Record{OffsetDelta: int64(i)})
	}
	return &sarama.Records{RecordBatch: b}
}

// marker is a control batch: the key is version 0 and type 0 (abort) or 1 (commit).
func marker(offset, producer int64, commit bool) *sarama.Records {
	typ := byte(0)
	if commit {
		typ = 1
	}
	return &sarama.Records{RecordBatch: &sarama.RecordBatch{FirstOffset: offset, ProducerID: producer, IsTransactional: true, Control: true,
		Records: []*sarama.Record{{Key: []byte{0, 0, 0, typ}}}}}
}

func TestCountDataLeavesOutMarkersAndAbortedRecords(t *testing.T) {
	tests := []struct {
		name        string
		recs        []*sarama.Records
		aborted     []*sarama.AbortedTransaction
		from, to    int64
		want        int64
		wantCovered bool
	}{
		{"only a commit marker left: nothing to consume", []*sarama.Records{marker(4, 7, true)}, nil, 4, 5, 0, true},
		{"committed transaction: its records, not its marker",
			[]*sarama.Records{dataBatch(5, 2, 7, true), marker(7, 7, true)}, nil, 5, 8, 2, true},
		{"aborted transaction: none of it",
			[]*sarama.Records{dataBatch(5, 3, 8, true), marker(8, 8, false), dataBatch(9, 1, 7, true), marker(10, 7, true)},
			[]*sarama.AbortedTransaction{{ProducerID: 8, FirstOffset: 5}}, 5, 11, 1, true},
		{"another producer's records beside an aborted transaction count",
			[]*sarama.Records{dataBatch(0, 2, 8, true), dataBatch(2, 2, 9, false), marker(4, 8, false)},
			[]*sarama.AbortedTransaction{{ProducerID: 8, FirstOffset: 0}}, 0, 5, 2, true},
		{"the producer's next transaction after its abort counts",
			[]*sarama.Records{dataBatch(0, 1, 8, true), marker(1, 8, false), dataBatch(2, 1, 8, true), marker(3, 8, true)},
			[]*sarama.AbortedTransaction{{ProducerID: 8, FirstOffset: 0}}, 0, 4, 1, true},
		{"a batch starting before the committed offset counts from it",
			[]*sarama.Records{dataBatch(0, 10, 1, false)}, nil, 6, 10, 4, true},
		{"non-transactional records up to the end",
			[]*sarama.Records{dataBatch(3, 4, 1, false)}, nil, 3, 7, 4, true},
		{"a fetch that stops short does not cover the range",
			[]*sarama.Records{dataBatch(3, 2, 1, false)}, nil, 3, 9, 2, false},
		{"an empty fetch covers nothing", nil, nil, 3, 4, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blk := &sarama.FetchResponseBlock{RecordsSet: tt.recs, AbortedTransactions: tt.aborted}
			n, covered, err := countData(blk, tt.from, tt.to, true)
			if err != nil {
				t.Fatal(err)
			}
			if n != tt.want || covered != tt.wantCovered {
				t.Fatalf("got %d records (covered %v), want %d (covered %v)", n, covered, tt.want, tt.wantCovered)
			}
		})
	}
}

// Read uncommitted (what the residency audit reads: everything stored), an aborted
// transaction's records are data; markers, however many, are not.
func TestCountDataReadUncommittedCountsAbortedRecordsButNoMarkers(t *testing.T) {
	for _, tt := range []struct {
		name     string
		recs     []*sarama.Records
		aborted  []*sarama.AbortedTransaction
		from, to int64
		want     int64
	}{
		{"two markers close the range", []*sarama.Records{marker(4, 7, false), marker(5, 8, true)}, nil, 4, 6, 0},
		{"an aborted transaction's records count",
			[]*sarama.Records{dataBatch(5, 3, 8, true), marker(8, 8, false), marker(9, 7, true)},
			[]*sarama.AbortedTransaction{{ProducerID: 8, FirstOffset: 5}}, 5, 10, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			blk := &sarama.FetchResponseBlock{RecordsSet: tt.recs, AbortedTransactions: tt.aborted}
			n, covered, err := countData(blk, tt.from, tt.to, false)
			if err != nil || !covered || n != tt.want {
				t.Fatalf("got %d (covered %v, %v), want %d", n, covered, err, tt.want)
			}
		})
	}
}
