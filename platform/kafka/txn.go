package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// TxnTimeout bounds how long a transaction left open by a crashed process holds back
// read_committed consumers of the partitions it wrote to, when no process with the same
// transactional id comes back to abort it at once.
const TxnTimeout = 10 * time.Second

// TxnRetries is how often sarama retries one request of a transaction before it returns the
// error (its default is 50).
const TxnRetries = 8

// TxnProducer writes records and a consumer group's offsets in one Kafka transaction: a
// read_committed consumer sees the records exactly when the offsets are committed, so a crash
// either repeats the whole consumed range with nothing of it visible, or repeats nothing.
//
// The transactional id must be unique per running process and stable across its restarts: a
// restarted process fences and aborts what its predecessor left open; two live processes with
// one id fence each other.
type TxnProducer struct {
	cfg Config
	id  string

	mu sync.Mutex // one transaction at a time
	p  sarama.AsyncProducer
}

// NewTxnProducer connects a transactional producer.
func NewTxnProducer(c Config, transactionalID string) (*TxnProducer, error) {
	t := &TxnProducer{cfg: c, id: transactionalID}
	if err := t.open(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *TxnProducer) open() error {
	sc, err := t.cfg.Sarama()
	if err != nil {
		return err
	}
	sc.Producer.Transaction.ID = t.id
	sc.Producer.Transaction.Timeout = TxnTimeout
	// sarama retries each transactional request (coordinator lookup, EndTxn, ...) 50 times by
	// default, each attempt with its own metadata retries: with the broker down a commit did not
	// return for 37 s, and held its tier's hand-offs for 18 s after Kafka was back (the
	// kafka-restart fault). A few quick retries, then the error: the caller aborts, gives up
	// the events of partitions whose claim ended, and retries the rest.
	sc.Producer.Transaction.Retry.Max = TxnRetries
	sc.Producer.Transaction.Retry.Backoff = 100 * time.Millisecond
	// A record's failure moves the transaction to an error that CommitTxn returns; nothing
	// needs to read the channels.
	sc.Producer.Return.Successes = false
	sc.Producer.Return.Errors = false
	p, err := sarama.NewAsyncProducer(t.cfg.Brokers, sc)
	if err != nil {
		return fmt.Errorf("kafka transactional producer %s: %w: %w", t.id, ErrUnavailable, err)
	}
	t.p = p
	return nil
}

// Commit produces recs and commits offsets for group, atomically. On error nothing of it is
// visible to read_committed consumers and the producer is ready for the next call.
func (t *TxnProducer) Commit(ctx context.Context, recs []*sarama.ProducerMessage, offsets map[string][]*sarama.PartitionOffsetMetadata, group *sarama.ConsumerGroupMetadata) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.p == nil {
		if err := t.open(); err != nil {
			return err
		}
	}
	if err := t.p.BeginTxn(); err != nil {
		t.abandon()
		return fmt.Errorf("%w: beginning transaction: %w", ErrUnavailable, err)
	}
	for _, r := range recs {
		t.p.Input() <- r
	}
	if len(offsets) > 0 {
		if err := t.p.AddOffsetsToTxnWithGroupMetadata(offsets, group); err != nil {
			t.abandon()
			return fmt.Errorf("%w: adding offsets to transaction: %w", ErrUnavailable, err)
		}
	}
	if err := t.p.CommitTxn(); err != nil {
		t.abandon()
		return fmt.Errorf("%w: committing transaction: %w", ErrUnavailable, err)
	}
	return nil
}

// abandon aborts a failed transaction, or drops a producer that cannot go on (fatal error,
// fenced); the next Commit opens a new one.
func (t *TxnProducer) abandon() {
	st := t.p.TxnStatus()
	if st&sarama.ProducerTxnFlagFatalError == 0 && st&(sarama.ProducerTxnFlagInTransaction|sarama.ProducerTxnFlagAbortableError) != 0 {
		if err := t.p.AbortTxn(); err == nil {
			return
		}
	}
	_ = t.p.Close()
	t.p = nil
}

// Close aborts an open transaction, if any, and closes the producer.
func (t *TxnProducer) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.p == nil {
		return nil
	}
	err := t.p.Close()
	t.p = nil
	if errors.As(err, new(sarama.ProducerErrors)) {
		return nil // records of a transaction that will not commit
	}
	return err
}
