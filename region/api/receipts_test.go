package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/receipts"
)

// fakeReceipts records the batches it is given and answers out or err.
type fakeReceipts struct {
	got       []wire.SendGridBatch
	out       receipts.BatchOutcome
	err       error
	twilioErr error
}

func (f *fakeReceipts) Twilio(context.Context, string, wire.TwilioCallback) (receipts.Outcome, error) {
	return receipts.Outcome{}, f.twilioErr
}

// A callback whose signature does not verify is refused 403 and counted, so
// HeraldProviderReceiptsRefused sees a wrong auth token (or a forger); an accepted one is not.
func TestTwilioCallbackWithABadSignatureIsRefusedAndCounted(t *testing.T) {
	body := `{"url":"https://gw.example/v1/receipts/twilio/t","params":{"MessageStatus":["delivered"]},"signature":"c2ln"}`
	refused := func() float64 {
		return testutil.ToFloat64(receiptsRefused.WithLabelValues("eu-west-1", "twilio", CodeInvalidSignature))
	}
	for _, c := range []struct {
		name   string
		err    error
		status int
		counts float64
	}{
		{"a signature that does not verify", receipts.ErrSignature, http.StatusForbidden, 1},
		{"a good callback", nil, http.StatusOK, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := refused()
			engine := testEngine(&Server{Region: "eu-west-1", Receipts: &fakeReceipts{twilioErr: c.err}, Logger: slog.New(slog.DiscardHandler)})
			rec := serve(engine, http.MethodPost, receipts.TwilioPath+"tok", body, nil)
			if rec.Code != c.status {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body, c.status)
			}
			if d := refused() - before; d != c.counts {
				t.Fatalf("herald_receipts_refused_total moved by %v, want %v", d, c.counts)
			}
		})
	}
}

func (f *fakeReceipts) SendGrid(_ context.Context, b wire.SendGridBatch) (receipts.BatchOutcome, error) {
	f.got = append(f.got, b)
	return f.out, f.err
}

// The region reads the gateway's forwarded batch as strictly as the gateway read SendGrid's:
// malformed ones are 400 naming the field and reach nothing; a store or Kafka failure is 503,
// so the gateway answers SendGrid 503 and SendGrid posts the batch again.
func TestSendGridReceiptsRouteReadsTheForwardedBatchStrictly(t *testing.T) {
	good := `{"events":[{"event":"delivered","email":"a@b.c","timestamp":1,"herald_receipt":"eu-west-1.x"}]}`
	for _, c := range []struct {
		name, body  string
		err         error
		status      int
		code, field string
		reached     bool
	}{
		{"a batch", good, nil, 200, "", "", true},
		{"the region failed", good, errors.New("cassandra down"), 503, "", "", true},
		{"no events", `{"events":[]}`, nil, 400, wire.CodeInvalidField, "events", false},
		{"null", `null`, nil, 400, wire.CodeMalformedJSON, "", false},
		{"an unknown member", `{"events":[{"event":"delivered","email":"a@b.c","timestamp":1,"ip":"1.2.3.4"}]}`, nil, 400, wire.CodeUnknownField, "events[0].ip", false},
		{"a NUL", `{"events":[{"event":"delivered","email":"a\u0000","timestamp":1}]}`, nil, 400, wire.CodeInvalidField, "events[0].email", false},
		{"no timestamp", `{"events":[{"event":"delivered","email":"a@b.c"}]}`, nil, 400, wire.CodeInvalidField, "events[0].timestamp", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeReceipts{out: receipts.BatchOutcome{Events: 1, Recorded: 1, Statuses: map[receipts.StatusCount]int{{Status: "delivered", Recorded: true}: 1}}, err: c.err}
			engine := testEngine(&Server{Region: "eu-west-1", Receipts: f, Logger: slog.New(slog.DiscardHandler)})
			rec := serve(engine, http.MethodPost, receipts.SendGridPath, c.body, nil)
			var out struct {
				Recorded int
				Error    struct{ Code, Field string }
			}
			_ = json.Unmarshal(rec.Body.Bytes(), &out)
			if rec.Code != c.status || (c.code != "" && (out.Error.Code != c.code || out.Error.Field != c.field)) {
				t.Fatalf("%d %s, want %d %s (%s)", rec.Code, rec.Body, c.status, c.code, c.field)
			}
			if (len(f.got) == 1) != c.reached {
				t.Fatalf("reached the service: %v", f.got)
			}
			if c.status == 200 && out.Recorded != 1 {
				t.Fatalf("answer %s", rec.Body)
			}
		})
	}
}
