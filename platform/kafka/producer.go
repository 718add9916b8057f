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

// Producer sends records and returns only once the cluster acknowledged them (acks=all,
// idempotent), carrying the caller's trace context in the record headers.
type Producer struct {
	p sarama.SyncProducer
}

// NewProducer connects a producer.
func NewProducer(c Config) (*Producer, error) {
	sc, err := c.Sarama()
	if err != nil {
		return nil, err
	}
	p, err := sarama.NewSyncProducer(c.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w: %w", ErrUnavailable, err)
	}
	return &Producer{p: p}, nil
}

// Send produces messages durably. Either every message was acknowledged, or an error wrapping
// ErrUnavailable is returned (some may have been written: consumers deduplicate).
func (p *Producer) Send(ctx context.Context, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	pms := make([]*sarama.ProducerMessage, len(msgs))
	for i, m := range msgs {
		pms[i] = m.Record(ctx)
	}
	var err error
	if len(pms) == 1 {
		_, _, err = p.p.SendMessage(pms[0])
	} else {
		err = p.p.SendMessages(pms)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// Close flushes and closes the producer.
func (p *Producer) Close() error { return p.p.Close() }

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
