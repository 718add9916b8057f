package kafka

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/eapache/go-resiliency/breaker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/otel"
)

// retried counts records handed to the producer again after a failure the cluster recovers
// from (Retriable): a broker failover shows here.
var retried = promauto.NewCounter(prometheus.CounterOpts{
	Name: "herald_kafka_produce_retries_total",
	Help: "Records handed to the producer again after a failure the cluster recovers from (no leader during a failover, a broker restarting, sarama's breaker open).",
})

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
type Producer struct {
	p sarama.AsyncProducer
	// window bounds how long a send hands a record to the producer again after a failure the
	// cluster recovers from by itself (a partition without a leader while a dead broker is
	// fenced, a restarting broker, an open circuit breaker): sarama fails such a record at
	// once when it cannot look the leader up, whatever its own retries (Config.RetryWindow).
	window time.Duration
	done   chan struct{} // closed when the result loop has ended
}

// NewProducer connects a producer.
func NewProducer(c Config) (*Producer, error) {
	sc, err := c.Sarama()
	if err != nil {
		return nil, err
	}
	ap, err := sarama.NewAsyncProducer(c.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w: %w", ErrUnavailable, err)
	}
	p := &Producer{p: ap, window: cmp.Or(c.RetryWindow, DefaultRetryWindow), done: make(chan struct{})}
	go p.results()
	return p, nil
}

// results hands each acknowledgement or failure to the Send waiting for it.
func (p *Producer) results() {
	defer close(p.done)
	succ, errs := p.p.Successes(), p.p.Errors()
	for succ != nil || errs != nil {
		select {
		case m, ok := <-succ:
			if !ok {
				succ = nil
				continue
			}
			t := m.Metadata.(ticket)
			t.ch <- outcome{i: t.i}
		case e, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			t := e.Msg.Metadata.(ticket)
			t.ch <- outcome{i: t.i, err: e.Err}
		}
	}
}

// ticket rides a record through the producer: which of a Send's messages it is, and where
// its outcome goes.
type ticket struct {
	i  int
	ch chan<- outcome
}

type outcome struct {
	i   int
	err error
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
//
// A record that fails for a reason the cluster recovers from (Retriable) is handed over again,
// 100 ms doubling to 500 ms apart, until Config.RetryWindow has passed or ctx ends.
func (p *Producer) SendOrFollow(ctx context.Context, late func(error), msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	giveUp := time.Now().Add(p.window)
	pending := msgs
	for try := 0; ; try++ {
		failed, err := p.sendOnce(ctx, late, pending)
		if err != nil || len(failed) == 0 {
			return err
		}
		var last error
		retry := pending[:0:0]
		for _, f := range failed {
			if !Retriable(f.err) {
				return fmt.Errorf("%w: %w", ErrUnavailable, f.err)
			}
			retry, last = append(retry, pending[f.i]), f.err
		}
		wait := producerBackoff(try, 0)
		if time.Now().Add(wait).After(giveUp) {
			return fmt.Errorf("%w: still failing after %v: %w", ErrUnavailable, p.window, last)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return fmt.Errorf("%w: %d of %d records not written in time (%w): %w", ErrUnavailable, len(retry), len(msgs), last, ctx.Err())
		}
		pending = retry
		retried.Add(float64(len(retry)))
	}
}

// sendOnce hands msgs to the producer and waits for their outcomes: it returns the ones that
// failed, or an error when ctx ended first (then late, when given, follows what is in flight).
func (p *Producer) sendOnce(ctx context.Context, late func(error), msgs []Message) ([]outcome, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	// Buffered: a result arriving after the caller gave up must not block the result loop.
	results := make(chan outcome, len(msgs))
	for i, m := range msgs {
		pm := m.Record(ctx)
		pm.Metadata = ticket{i: i, ch: results}
		select {
		case p.p.Input() <- pm:
		case <-ctx.Done():
			err := fmt.Errorf("%w: %d of %d records handed to the producer before: %w", ErrUnavailable, i, len(msgs), ctx.Err())
			if late != nil {
				go follow(results, i, err, late)
			}
			return nil, err
		}
	}
	var failed []outcome
	for got := 0; got < len(msgs); got++ {
		select {
		case o := <-results:
			if o.err != nil {
				failed = append(failed, o)
			}
		case <-ctx.Done():
			if late != nil && len(failed) == 0 {
				go follow(results, len(msgs)-got, nil, late)
			}
			return nil, fmt.Errorf("%w: not acknowledged in time: %w", ErrUnavailable, ctx.Err())
		}
	}
	return failed, nil
}

// follow waits for n more results and calls late with the outcome (failed, if given, stands).
func follow(results <-chan outcome, n int, failed error, late func(error)) {
	for range n {
		if o := <-results; o.err != nil && failed == nil {
			failed = fmt.Errorf("%w: %w", ErrUnavailable, o.err)
		}
	}
	late(failed)
}

// Retriable reports whether a produce failed for a reason the cluster recovers from by itself:
// no broker reachable, a partition between leaders, too few in-sync replicas for a while, a
// broker that timed out or closed the connection, sarama's circuit breaker open after such
// failures. A record refused for what it is (too large, an unknown or forbidden topic) or a
// producer closed is not.
func Retriable(err error) bool {
	var kerr sarama.KError
	if errors.As(err, &kerr) {
		switch kerr {
		case sarama.ErrLeaderNotAvailable, sarama.ErrNotLeaderForPartition, sarama.ErrNotEnoughReplicas,
			sarama.ErrNotEnoughReplicasAfterAppend, sarama.ErrRequestTimedOut, sarama.ErrNetworkException,
			sarama.ErrKafkaStorageError, sarama.ErrFencedLeaderEpoch, sarama.ErrUnknownLeaderEpoch,
			sarama.ErrBrokerNotAvailable, sarama.ErrReplicaNotAvailable, sarama.ErrNotController:
			return true
		}
		return false
	}
	if errors.Is(err, sarama.ErrOutOfBrokers) || errors.Is(err, sarama.ErrNotConnected) ||
		errors.Is(err, breaker.ErrBreakerOpen) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var nerr net.Error
	return errors.As(err, &nerr)
}

// Close flushes what is buffered and closes the producer.
func (p *Producer) Close() error {
	p.p.AsyncClose() // the result loop drains the successes and errors until they close
	<-p.done
	return nil
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
