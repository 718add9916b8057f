package dispatch

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"

	"github.com/herald-notify/herald/region/notify"
)

// twilioStub answers Twilio's Messages API with 201 and keeps each request's form.
func twilioStub(t *testing.T) (*httptest.Server, func() []url.Values) {
	t.Helper()
	var mu sync.Mutex
	var forms []url.Values
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		mu.Lock()
		forms = append(forms, r.PostForm)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"sid": "SM123", "status": "queued"}`))
	}))
	t.Cleanup(srv.Close)
	return srv, func() []url.Values { mu.Lock(); defer mu.Unlock(); return slices.Clone(forms) }
}

func TestATextWhoseProviderWillReportIsDispatchedNotDeliveredUntilItsReceipt(t *testing.T) {
	srv, forms := twilioStub(t)
	cfg := TwilioConfig{BaseURL: srv.URL, AccountSID: "AC1", AuthToken: "tok", From: "+15005550006"}
	for _, c := range []struct {
		name      string
		callback  func(notify.Task, string) string
		wantState string
		wantStage []string
	}{
		{"with a status callback", func(t notify.Task, p string) string {
			return "https://gw.example/v1/receipts/twilio/r." + p + "." + t.UserID
		},
			notify.StateDispatched, []string{"dispatched"}},
		{"without one (no gateway in the policy yet)", func(notify.Task, string) string { return "" },
			notify.StateDelivered, []string{"dispatched", "delivered"}},
		{"no callback function", nil, notify.StateDelivered, []string{"dispatched", "delivered"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			sms := newTwilio(cfg, "twilio", c.callback)
			f := newFixture(DefaultConfig(), map[string][2]Provider{KindSMS: {sms, nil}})
			task := sampleTask(notify.SMS)
			task.Target.Phone = "+447700900123"
			n := len(forms())
			if err := f.d.process(context.Background(), task, nil); err != nil {
				t.Fatal(err)
			}
			form := forms()[n]
			if c.wantState == notify.StateDispatched && form.Get("StatusCallback") != "https://gw.example/v1/receipts/twilio/r.twilio."+task.UserID {
				t.Fatalf("StatusCallback %q", form.Get("StatusCallback"))
			}
			if c.wantState == notify.StateDelivered && form.Has("StatusCallback") {
				t.Fatalf("StatusCallback %q sent without a gateway", form.Get("StatusCallback"))
			}
			if f.lastState() != c.wantState {
				t.Fatalf("state %q, want %q", f.lastState(), c.wantState)
			}
			var stages []string
			for _, b := range f.prod.events {
				for _, o := range b.Outcomes {
					stages = append(stages, o.Stage)
				}
			}
			if !slices.Equal(stages, c.wantStage) {
				t.Fatalf("stages %v, want %v", stages, c.wantStage)
			}
		})
	}
}

func TestAuthTokensNameEveryTwilioProviderAsTheDispatcherDoes(t *testing.T) {
	c := TwilioConfig{BaseURL: "https://api.twilio.com", AuthToken: "a", Secondary: &TwilioConfig{BaseURL: "https://b", AuthToken: "b"}}
	got := c.AuthTokens()
	if len(got) != 2 || got["twilio"] != "a" || got["twilio-secondary"] != "b" {
		t.Fatalf("%v", got)
	}
	if got := (TwilioConfig{}).AuthTokens(); len(got) != 0 {
		t.Fatalf("unconfigured: %v", got)
	}
}
