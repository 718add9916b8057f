package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/eapache/go-resiliency/breaker"
	"go.opentelemetry.io/otel"
)

// ErrUnavailable wraps every produce failure: the record is not durable and the caller must not
// report success (the API answers 503 with Retry-After).
var ErrUnavailable = errors.New("kafka unavailable")

// Message is one record to produce.
type Message struct {
	Topic string
	Key   string
	Value []byte
}

// Record is m as a sarama record carrying ctx's trace context in its headers.
func (m Message) Record(ctx context.Context) *sarama.ProducerMessage {
	pm := &sarama.ProducerMessage{Topic: m.Topic, Value: sarama.ByteEncoder(m.Value)}
	if m.Key != "" {
		pm.Key = sarama.StringEncoder(m.Key)
	}
	otel.GetTextMapPropagator().Inject(ctx, ProducerHeaders{pm})
	return pm
}

// Producer sends records and returns once the cluster acknowledged them (acks=all, idempotent)
// or the caller's context ended, whichever comes first, carrying the caller's trace context in
// the record headers.
//
// sarama guards each topic's partitioning with a circuit breaker it does not let anyone
// configure: three failures in a row (the cluster unreachable) open it for 10 s, and while it
// is open every record of the topic fails at once, also after the cluster is back. A Producer
// that sees its records fail that way checks the cluster, and once it answers, replaces its
// sarama producer with a new one (new breakers) from the same client: the kafka-restart fault
// had the scheduler's outbox relay refused for up to 10 s after Kafka returned.
type Producer struct {
	client sarama.Client
	cur    atomic.Pointer[asyncProducer]

	renewing  atomic.Bool
	lastRenew atomic.Int64 // unix nanos of the last swap
	renewed   atomic.Int64 // swaps so far (tests, metrics)
}

// asyncProducer is one sarama producer and its result loop.
type asyncProducer struct {
	p    sarama.AsyncProducer
	done chan struct{} // closed when the result loop has ended

	// mu is held for reading while records are handed over, and for writing to retire the
	// producer (after which nothing is handed to it: it is closed).
	mu      sync.RWMutex
	retired bool
}

// acquire returns the current sarama producer, read-locked: records can be handed to it until
// release.
func (p *Producer) acquire() *asyncProducer {
	for {
		ap := p.cur.Load()
		ap.mu.RLock()
		if !ap.retired {
			return ap
		}
		ap.mu.RUnlock() // replaced meanwhile: take the new one
	}
}

// retire stops handing records to ap (waiting for the hand-overs in progress, which end with
// their callers' contexts at the latest) and closes it; what it holds still completes or fails
// to its Sends.
func (ap *asyncProducer) retire() {
	ap.mu.Lock()
	ap.retired = true
	ap.mu.Unlock()
	ap.p.AsyncClose()
}

// renewEvery bounds how often a Producer replaces its sarama producer.
const renewEvery = 2 * time.Second

// NewProducer connects a producer.
func NewProducer(c Config) (*Producer, error) {
	sc, err := c.Sarama()
	if err != nil {
		return nil, err
	}
	client, err := sarama.NewClient(c.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w: %w", ErrUnavailable, err)
	}
	ap, err := newAsyncProducer(client)
	if err != nil {
		client.Close()
		return nil, err
	}
	p := &Producer{client: client}
	p.cur.Store(ap)
	return p, nil
}

func newAsyncProducer(client sarama.Client) (*asyncProducer, error) {
	p, err := sarama.NewAsyncProducerFromClient(client)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w: %w", ErrUnavailable, err)
	}
	ap := &asyncProducer{p: p, done: make(chan struct{})}
	go ap.results()
	return ap, nil
}

// results hands each acknowledgement or failure to the Send waiting for it.
func (ap *asyncProducer) results() {
	defer close(ap.done)
	succ, errs := ap.p.Successes(), ap.p.Errors()
	for succ != nil || errs != nil {
		select {
		case m, ok := <-succ:
			if !ok {
				succ = nil
				continue
			}
			m.Metadata.(chan error) <- nil
		case e, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			e.Msg.Metadata.(chan error) <- e.Err
		}
	}
}

// Renewals is how often the producer replaced its sarama producer after its breakers opened.
func (p *Producer) Renewals() int64 { return p.renewed.Load() }

// renewIfBack replaces the sarama producer, on a goroutine of its own, when its breaker
// refused a record and the cluster answers again (at most once per renewEvery).
func (p *Producer) renewIfBack() {
	if time.Since(time.Unix(0, p.lastRenew.Load())) < renewEvery || !p.renewing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer p.renewing.Store(false)
		if err := p.client.RefreshMetadata(); err != nil {
			return // still down: the next refused record asks again
		}
		fresh, err := newAsyncProducer(p.client)
		if err != nil {
			return
		}
		old := p.cur.Swap(fresh) // new Sends take the fresh producer from now on
		p.lastRenew.Store(time.Now().UnixNano())
		p.renewed.Add(1)
		old.retire()
	}()
}

// Send produces messages durably. It returns nil once every message was acknowledged, or an
// error wrapping ErrUnavailable: a message failed, or ctx ended before every acknowledgement
// (the error then also wraps ctx's error). After an error some messages may still be written,
// later: the caller must treat the outcome as unknown (consumers deduplicate; the API's
// idempotency claim covers its retries), never as "not written".
func (p *Producer) Send(ctx context.Context, msgs ...Message) error {
	return p.SendOrFollow(ctx, nil, msgs...)
}

// SendOrFollow is Send, and when ctx ends before every acknowledgement it follows the records
// already handed to the producer: late is called once, on a goroutine of its own, with nil when
// they were all acknowledged after all, or an error wrapping ErrUnavailable when one failed or
// some were never handed over. late is not called when SendOrFollow returns nil or a record
// failed before ctx ended.
func (p *Producer) SendOrFollow(ctx context.Context, late func(error), msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	// Buffered: a result arriving after the caller gave up must not block the result loop.
	results := make(chan error, len(msgs))
	ap := p.acquire()
	in := ap.p.Input()
	for i, m := range msgs {
		pm := m.Record(ctx)
		pm.Metadata = results
		select {
		case in <- pm:
		case <-ctx.Done():
			ap.mu.RUnlock()
			err := fmt.Errorf("%w: %d of %d records handed to the producer before: %w", ErrUnavailable, i, len(msgs), ctx.Err())
			if late != nil {
				go follow(results, i, err, late)
			}
			return err
		}
	}
	ap.mu.RUnlock()
	var first error
	for got := 0; got < len(msgs); got++ {
		select {
		case err := <-results:
			if err != nil && first == nil {
				first = err
			}
		case <-ctx.Done():
			if late != nil && first == nil {
				go follow(results, len(msgs)-got, nil, late)
			}
			return fmt.Errorf("%w: not acknowledged in time: %w", ErrUnavailable, ctx.Err())
		}
	}
	if first != nil {
		if errors.Is(first, breaker.ErrBreakerOpen) {
			p.renewIfBack()
		}
		return fmt.Errorf("%w: %w", ErrUnavailable, first)
	}
	return nil
}

// follow waits for n more results and calls late with the outcome (failed, if given, stands).
func follow(results <-chan error, n int, failed error, late func(error)) {
	for range n {
		if err := <-results; err != nil && failed == nil {
			failed = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	late(failed)
}

// Close flushes what is buffered and closes the producer.
func (p *Producer) Close() error {
	for p.renewing.Load() { // a swap in progress finishes first
		time.Sleep(10 * time.Millisecond)
	}
	cur := p.cur.Load()
	cur.retire() // the result loop drains the successes and errors until they close
	<-cur.done
	return p.client.Close()
}

// ProducerHeaders adapts a producer record's headers to OpenTelemetry's TextMapCarrier.
type ProducerHeaders struct{ M *sarama.ProducerMessage }

// Get returns a header value.
func (h ProducerHeaders) Get(key string) string {
	for _, r := range h.M.Headers {
		if string(r.Key) == key {
			return string(r.Value)
		}
	}
	return ""
}

// Set sets a header value.
func (h ProducerHeaders) Set(key, value string) {
	for i, r := range h.M.Headers {
		if string(r.Key) == key {
			h.M.Headers[i].Value = []byte(value)
			return
		}
	}
	h.M.Headers = append(h.M.Headers, sarama.RecordHeader{Key: []byte(key), Value: []byte(value)})
}

// Keys lists header keys.
func (h ProducerHeaders) Keys() []string {
	out := make([]string, len(h.M.Headers))
	for i, r := range h.M.Headers {
		out[i] = string(r.Key)
	}
	return out
}

// ConsumerHeaders adapts a consumed record's headers to OpenTelemetry's TextMapCarrier.
type ConsumerHeaders struct{ M *sarama.ConsumerMessage }

// Get returns a header value.
func (h ConsumerHeaders) Get(key string) string {
	for _, r := range h.M.Headers {
		if r != nil && string(r.Key) == key {
			return string(r.Value)
		}
	}
	return ""
}

// Set is not used on consumed records.
func (h ConsumerHeaders) Set(string, string) {}

// Keys lists header keys.
func (h ConsumerHeaders) Keys() []string {
	out := make([]string, 0, len(h.M.Headers))
	for _, r := range h.M.Headers {
		if r != nil {
			out = append(out, string(r.Key))
		}
	}
	return out
}

// Extract returns ctx carrying the trace context of a consumed record.
func Extract(ctx context.Context, m *sarama.ConsumerMessage) context.Context {
	return otel.GetTextMapPropagator().Extract(ctx, ConsumerHeaders{m})
}
