package dispatch

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

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

// An SMTP provider whose relay reports events (events: sendgrid) puts the receipt token in
// X-SMTPAPI unique_args, where SendGrid reads it and echoes it in each event; without the
// setting, or without a token, the header is not there.
func TestAnEmailToARelayThatReportsEventsCarriesItsReceiptTokenInXSMTPAPI(t *testing.T) {
	task := sampleTask(notify.Email)
	for _, c := range []struct {
		name  string
		token string
		want  string
	}{
		{"a token", "eu-west-1.c2VhbGVk", `{"unique_args":{"herald_receipt":"eu-west-1.c2VhbGVk"}}`},
		{"no token (no gateway yet)", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &smtpProvider{name: "smtp", receipt: func(notify.Task, string) string { return c.token }}
			var extra [][2]string
			if tok := p.receipt(task, p.name); tok != "" {
				extra = append(extra, [2]string{"X-SMTPAPI", smtpAPIHeader(tok)})
			}
			raw, err := buildMail(task, "noreply@herald.local", "ada@example.com", "<x@herald.local>", "", time.Now(), extra...)
			if err != nil {
				t.Fatal(err)
			}
			m, err := mail.ReadMessage(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Header.Get("X-SMTPAPI"); got != c.want {
				t.Fatalf("X-SMTPAPI %q, want %q", got, c.want)
			}
		})
	}
	if err := (&SMTPConfig{Addr: "127.0.0.1:25", From: "a@b.c", Events: "ses"}).validate(0); err == nil {
		t.Fatal("events: ses taken")
	}
	if err := (&SMTPConfig{Addr: "127.0.0.1:25", From: "a@b.c", Events: EventsSendGrid}).validate(0); err != nil {
		t.Fatal(err)
	}
}
