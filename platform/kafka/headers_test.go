package kafka

import (
	"context"
	"testing"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func TestTraceContextTravelsInRecordHeaders(t *testing.T) {
	otel.SetTextMapPropagator(propagation.TraceContext{})
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "accept")
	defer span.End()

	pm := &sarama.ProducerMessage{Topic: "t"}
	otel.GetTextMapPropagator().Inject(ctx, ProducerHeaders{pm})
	if len(pm.Headers) == 0 {
		t.Fatal("no traceparent header was written")
	}
	// What the broker hands the consumer: the same headers on a consumed record.
	cm := &sarama.ConsumerMessage{}
	for i := range pm.Headers {
		cm.Headers = append(cm.Headers, &pm.Headers[i])
	}
	got := Extract(context.Background(), cm)
	_, child := tp.Tracer("test").Start(got, "fanout")
	defer child.End()
	if child.SpanContext().TraceID() != span.SpanContext().TraceID() {
		t.Fatalf("fan-out span is in trace %s, want %s", child.SpanContext().TraceID(), span.SpanContext().TraceID())
	}
}
