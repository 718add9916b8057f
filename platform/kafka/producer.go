package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/IBM/sarama"
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
type Producer struct {
	p    sarama.AsyncProducer
	done chan struct{} // closed when the result loop has ended
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
	p := &Producer{p: ap, done: make(chan struct{})}
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
	for i, m := range msgs {
		pm := m.Record(ctx)
		pm.Metadata = results
		select {
		case p.p.Input() <- pm:
		case <-ctx.Done():
			err := fmt.Errorf("%w: %d of %d records handed to the producer before: %w", ErrUnavailable, i, len(msgs), ctx.Err())
			if late != nil {
				go follow(results, i, err, late)
			}
			return err
		}
	}
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
