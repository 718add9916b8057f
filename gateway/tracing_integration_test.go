//go:build integration

package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/regiontest"
)

// TestOneTraceFromTheGatewayToTheProviderCall sends one push through the gateway and follows
// its trace: the gateway's server span, the region API's, fan-out (context carried in the Kafka
// record's headers), dispatch (again through Kafka) and the APNs call, all in one trace, each
// the child of the one before.
func TestOneTraceFromTheGatewayToTheProviderCall(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	t.Cleanup(func() {
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
		_ = tp.Shutdown(context.Background())
	})

	s, _ := regiontest.StartSim(t, 1)
	info := s.Info()
	w := newWorld(t, func(i int, c *region.Config) {
		c.Dispatch.Push.APNs = regiontest.SimAPNs(info)
	})
	u := "traced-" + w.app
	w.register(map[string]string{u: "DE"})
	tok := fmt.Sprintf("%064x", 42)
	w.must(http.StatusCreated, "POST", "/v1/users/"+u+"/devices", map[string]any{"platform": "ios", "token": tok, "device_id": "d1"})
	w.must(http.StatusAccepted, "POST", "/v1/notifications", map[string]any{
		"type": "transactional", "category": "otp", "title": "Code", "body": "424242", "recipients": []string{u}, "channels": []string{"push"}})
	poll.Until(t, 30*time.Second, func() error {
		resp, err := http.Get(info.Admin + "/sim/apns/messages?to=" + url.QueryEscape(tok))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var out struct{ Count int }
		_ = json.NewDecoder(resp.Body).Decode(&out)
		if out.Count == 0 {
			return fmt.Errorf("no push at the simulator yet")
		}
		return nil
	})

	byName := func(name string) []sdktrace.ReadOnlySpan {
		var out []sdktrace.ReadOnlySpan
		for _, sp := range rec.Ended() {
			if sp.Name() == name {
				out = append(out, sp)
			}
		}
		return out
	}
	var provider sdktrace.ReadOnlySpan
	var chain []string
	want := []string{"POST /v1/notifications", "POST /v1/notifications", "fanout.event", "dispatch.task", "provider.send"}
	// A span is recorded when it ends, and the provider call ends before the task and the
	// requests around it: poll until the whole chain has ended.
	poll.Until(t, 30*time.Second, func() error {
		sends := byName("provider.send")
		if len(sends) == 0 {
			return fmt.Errorf("no provider.send span ended yet")
		}
		provider = sends[0]
		trace := provider.SpanContext().TraceID()
		spans := map[[8]byte]sdktrace.ReadOnlySpan{}
		for _, sp := range rec.Ended() {
			if sp.SpanContext().TraceID() == trace {
				spans[sp.SpanContext().SpanID()] = sp
			}
		}
		// Walk up from the provider call to the root.
		chain = nil
		for sp := provider; ; {
			chain = append([]string{sp.Name()}, chain...)
			parent, ok := spans[sp.Parent().SpanID()]
			if !sp.Parent().IsValid() || !ok {
				break
			}
			sp = parent
		}
		i := 0
		for _, name := range chain {
			if i < len(want) && name == want[i] {
				i++
			}
		}
		if i != len(want) {
			return fmt.Errorf("trace %s: span chain %v, want %v in order", trace, chain, want)
		}
		return nil
	})
	t.Logf("trace %s: %v", provider.SpanContext().TraceID(), chain)
	if chain[0] != "POST /v1/notifications" {
		t.Fatalf("the trace's root is %q, not the gateway's request", chain[0])
	}
	for _, a := range provider.Attributes() {
		if a.Key == "provider" && a.Value.AsString() != "apns" {
			t.Fatalf("provider attribute %v", a.Value.AsString())
		}
	}
}
