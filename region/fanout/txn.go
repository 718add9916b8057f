package fanout

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/retry"
	"github.com/herald-notify/herald/region/notify"
)

// collector gathers one event's records, and what to do once they are durable, for the
// transaction that will also commit the event's offset.
type collector struct {
	mu   sync.Mutex
	recs []*sarama.ProducerMessage
	then []func()
}

func (c *collector) Send(ctx context.Context, msgs ...kafka.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range msgs {
		c.recs = append(c.recs, m.Record(ctx)) // the trace context of the chunk that decided it
	}
	return nil
}

func (c *collector) Then(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.then = append(c.then, fn)
}

// completion is one finished event waiting for its transaction.
type completion struct {
	ctx   context.Context // the consumer group session's; once it ended the partition may be another's
	group *sarama.ConsumerGroupMetadata
	m     *sarama.ConsumerMessage
	out   *collector
	done  chan error // the transaction's outcome
}

// Transactor commits records and offsets atomically (kafka.TxnProducer).
type Transactor interface {
	Commit(ctx context.Context, recs []*sarama.ProducerMessage, offsets map[string][]*sarama.PartitionOffsetMetadata, group *sarama.ConsumerGroupMetadata) error
}

// committer commits finished events in transactions, group-commit style: whatever finished
// while the previous transaction was committing goes into the next one. It receives each
// partition's events in offset order (the claim's marker hands them on in order), so a
// transaction never commits an offset past an event it does not carry.
type committer struct {
	txn          Transactor
	in           chan *completion
	maxRecords   int
	region, tier string
	log          *slog.Logger
	thens        sync.WaitGroup // after-commit work still running
	eventsTopic  string
	txns         uint64 // transactions begun: picks each one's events partition
	// linger is how long a transaction waits, after its first event, for more to finish (0:
	// none, it takes what finished while the previous one committed). Each transaction costs
	// the broker a few milliseconds of CPU whatever it carries.
	linger time.Duration
}

func newCommitter(txn Transactor, region, tier string, log *slog.Logger) *committer {
	return &committer{txn: txn, in: make(chan *completion, 1024), maxRecords: 20000, region: region, tier: tier, log: log,
		eventsTopic: notify.EventsTopic(region)}
}

func (c *committer) add(x *completion) { c.in <- x }

// run commits until ctx ends. ctx must outlive the consumer group: a claim leaves only once its
// last completion was committed or given up.
func (c *committer) run(ctx context.Context) {
	defer c.thens.Wait()
	for {
		var batch []*completion
		select {
		case x := <-c.in:
			batch = append(batch, x)
		case <-ctx.Done():
			return
		}
		n := len(batch[0].out.recs)
		var deadline <-chan time.Time // nil: take only what is there
		var timer *time.Timer
		if c.linger > 0 {
			timer = time.NewTimer(c.linger)
			deadline = timer.C
		}
	more:
		for n < c.maxRecords {
			if deadline == nil {
				select {
				case x := <-c.in:
					batch = append(batch, x)
					n += len(x.out.recs)
					continue
				default:
					break more
				}
			}
			select {
			case x := <-c.in:
				batch = append(batch, x)
				n += len(x.out.recs)
			case <-deadline:
				deadline = nil // then whatever else is already there
			case <-ctx.Done():
				break more
			}
		}
		if timer != nil {
			timer.Stop()
		}
		c.commit(ctx, batch)
	}
}

// commitRetry is the wait between attempts of a hand-off transaction: short, since the claim it
// belongs to may end meanwhile (its session lasts seconds).
var commitRetry = retry.Backoff{Initial: 50 * time.Millisecond, Max: 2 * time.Second, Jitter: 0.2}

// commit commits a batch, retrying while its session lasts. Given up (the partitions went to
// another member, or the process is stopping), the events are repeated by whoever consumes
// the partitions next, and nothing of them was visible.
//
// A completion whose claim has ended is given up before any attempt, even when Kafka would take
// it: once one transaction of a claim was given up, every later event of that claim queued
// behind it must be too, or its offset would commit past the events given up and they would
// never be repeated (seen when Kafka restarted under load: a transaction failed with "run out
// of available brokers", the claim ended, and the next batch of the same partition committed
// once the broker was back, losing the first batch's tasks).
func (c *committer) commit(ctx context.Context, batch []*completion) {
	waits := commitRetry.Start()
	var err error
	for {
		batch = c.dropEnded(ctx, batch, err)
		if len(batch) == 0 {
			return
		}
		start := time.Now()
		c.txns++
		err = c.txn.Commit(ctx, c.records(batch), offsetsOf(batch), batch[len(batch)-1].group)
		if err == nil {
			txnSeconds.WithLabelValues(c.region, c.tier).Observe(time.Since(start).Seconds())
			txnEvents.WithLabelValues(c.region, c.tier).Observe(float64(len(batch)))
			break
		}
		txnFailures.WithLabelValues(c.region, c.tier).Inc()
		if batch[0].ctx.Err() != nil || ctx.Err() != nil {
			continue // dropEnded gives them up
		}
		wait := waits.Next()
		c.log.Warn("hand-off transaction failed; retrying", "tier", c.tier, "events", len(batch), "err", err, "took", time.Since(start), "backoff", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-batch[0].ctx.Done():
		case <-ctx.Done():
		}
		t.Stop()
	}
	c.thens.Add(1)
	go func() {
		defer c.thens.Done()
		for _, x := range batch {
			for _, fn := range x.out.then {
				fn()
			}
			x.done <- nil
		}
	}()
}

// errClaimEnded is a given-up completion's outcome when no transaction of it failed.
var errClaimEnded = errors.New("hand-off given up: the partition's claim ended before its transaction committed")

// dropEnded gives up the completions whose claim ended (or all, when the process stops) and
// returns the rest. cause is the last transaction's error, if any.
func (c *committer) dropEnded(ctx context.Context, batch []*completion, cause error) []*completion {
	live := make([]*completion, 0, len(batch))
	var ended []*completion
	for _, x := range batch {
		if ctx.Err() != nil || x.ctx.Err() != nil {
			ended = append(ended, x)
		} else {
			live = append(live, x)
		}
	}
	if len(ended) == 0 {
		return live
	}
	if cause == nil {
		cause = errClaimEnded
	}
	c.log.Warn("hand-off transaction given up; its events will be repeated by the partitions' next consumer",
		"tier", c.tier, "events", len(ended), "err", cause)
	txnGivenUp.WithLabelValues(c.region, c.tier).Add(float64(len(ended)))
	for _, x := range ended {
		x.done <- cause
	}
	return live
}

// offsetsOf is the next offset of each partition of the batch.
func offsetsOf(batch []*completion) map[string][]*sarama.PartitionOffsetMetadata {
	next := map[string]map[int32]int64{}
	for _, x := range batch {
		if next[x.m.Topic] == nil {
			next[x.m.Topic] = map[int32]int64{}
		}
		next[x.m.Topic][x.m.Partition] = max(next[x.m.Topic][x.m.Partition], x.m.Offset+1)
	}
	offsets := map[string][]*sarama.PartitionOffsetMetadata{}
	for topic, parts := range next {
		for p, off := range parts {
			offsets[topic] = append(offsets[topic], &sarama.PartitionOffsetMetadata{Partition: p, Offset: off})
		}
	}
	return offsets
}

// records copies the batch's records: sarama keeps per-attempt state in a record, and a
// retried transaction sends them again.
//
// The delivery-event records of one transaction share a key, and so a partition: each
// partition a transaction writes to costs a registration and a commit marker, and the events
// need no order (the exporter counts each outcome by its own key). Successive transactions
// take successive keys, which spreads them over the partitions.
func (c *committer) records(batch []*completion) []*sarama.ProducerMessage {
	var out []*sarama.ProducerMessage
	eventsKey := sarama.StringEncoder(c.tier + "/" + strconv.FormatUint(c.txns, 10))
	for _, x := range batch {
		for _, r := range x.out.recs {
			key := r.Key
			if r.Topic == c.eventsTopic {
				key = eventsKey
			}
			out = append(out, &sarama.ProducerMessage{Topic: r.Topic, Key: key, Value: r.Value, Headers: r.Headers})
		}
	}
	return out
}
