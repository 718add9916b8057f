package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

const hookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// putHookSecret registers name's secret over the admin API.
func putHookSecret(t testing.TB, s *Sim, name, secret string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, s.Info().Admin+"/sim/webhook/secrets/"+name, strings.NewReader(`{"secret": "`+secret+`"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// postHook sends one message to /hooks/name, signed with secret (the library's own signer), as
// a webhook sender does.
func postHook(t testing.TB, client *http.Client, s *Sim, name, secret, id string, at time.Time, body string) (int, error) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := wh.Sign(id, at, []byte(body))
	req, _ := http.NewRequest(http.MethodPost, s.Info().Webhook.URL+"/hooks/"+name, strings.NewReader(body))
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func hookRecords(t testing.TB, s *Sim, name string) []Record {
	t.Helper()
	resp, err := http.Get(s.Info().Admin + "/sim/webhook/messages?to=" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Messages []Record }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Messages
}

func TestWebhookReceiverVerifiesAndRecords(t *testing.T) {
	s := startSim(t, nil)
	if code := putHookSecret(t, s, "eu", hookSecret); code != http.StatusNoContent {
		t.Fatalf("registering the secret: %d", code)
	}
	if code := putHookSecret(t, s, "eu", "not base64!"); code != http.StatusBadRequest {
		t.Fatalf("a bad secret: %d", code)
	}
	now := time.Now()
	other := "whsec_" + strings.Repeat("QUJD", 8)
	tests := []struct {
		name, endpoint, secret, id string
		at                         time.Time
		status                     int
		verified, reason           string
	}{
		{"signed", "eu", hookSecret, "msg_1", now, 204, "true", ""},
		{"another secret", "eu", other, "msg_2", now, 401, "false", "invalid_signature"},
		{"too old", "eu", hookSecret, "msg_3", now.Add(-10 * time.Minute), 401, "false", "timestamp_out_of_tolerance"},
		{"no secret registered", "us", hookSecret, "msg_4", now, 404, "false", "no_secret_registered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, err := postHook(t, http.DefaultClient, s, tt.endpoint, tt.secret, tt.id, tt.at, `{"type":"notification.delivered"}`)
			if err != nil || code != tt.status {
				t.Fatalf("status %d (%v), want %d", code, err, tt.status)
			}
			var rec *Record
			for _, r := range hookRecords(t, s, tt.endpoint) {
				if r.Headers["webhook-id"] == tt.id {
					rec = &r
				}
			}
			if rec == nil {
				t.Fatal("not recorded")
			}
			if rec.Headers["verified"] != tt.verified || rec.Error != tt.reason || rec.Status != tt.status {
				t.Fatalf("record %+v", rec)
			}
			if tt.status == 204 && (rec.ID != tt.id || !bytes.Contains(rec.Payload, []byte("notification.delivered"))) {
				t.Fatalf("record %+v", rec)
			}
		})
	}
}

func TestWebhookReceiverFaults(t *testing.T) {
	s := startSim(t, nil)
	putHookSecret(t, s, "eu", hookSecret)
	setFaults := func(body string) {
		req, _ := http.NewRequest(http.MethodPut, s.Info().Admin+"/sim/webhook/faults", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("setting faults: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	tests := []struct {
		faults string
		status int
		reason string
	}{
		{`{"outage_seconds": 60}`, 503, "outage"},
		{`{"error_rate": 1, "error_statuses": [500]}`, 500, "server_error"},
		{`{}`, 204, ""},
	}
	for i, tt := range tests {
		setFaults(tt.faults)
		id := fmt.Sprintf("msg_%d", i)
		code, err := postHook(t, http.DefaultClient, s, "eu", hookSecret, id, time.Now(), `{}`)
		if err != nil || code != tt.status {
			t.Fatalf("%s: status %d (%v), want %d", tt.faults, code, err, tt.status)
		}
	}
	// Latency past the sender's timeout: the sender gives up, the receiver records it so.
	setFaults(`{"latency_ms": 500}`)
	client := &http.Client{Timeout: 100 * time.Millisecond}
	if _, err := postHook(t, client, s, "eu", hookSecret, "msg_slow", time.Now(), `{}`); err == nil {
		t.Fatal("the sender did not time out")
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		var got *Record
		for _, r := range hookRecords(t, s, "eu") {
			if r.Headers["webhook-id"] == "msg_slow" {
				got = &r
			}
		}
		if got != nil {
			if got.Error != "sender_gone" || got.Status != 0 {
				t.Fatalf("record %+v", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the timed-out message was not recorded")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FuzzWebhookReceiver: whatever the headers and body, the receiver answers without panicking,
// and answers 204 only for a message the library verifies under the registered secret.
func FuzzWebhookReceiver(f *testing.F) {
	wh, _ := standardwebhooks.NewWebhook(hookSecret)
	now := time.Now()
	sig, _ := wh.Sign("msg_1", now, []byte(`{}`))
	f.Add("msg_1", strconv.FormatInt(now.Unix(), 10), sig, []byte(`{}`))
	f.Add("", "", "", []byte(nil))
	f.Add("msg_1", "abc", "v1,AAAA v2,BBBB", []byte(`{"a":1}`))
	f.Add("msg_1", "-1", "v1,", []byte(`x`))
	srv := newWebhookServer(NewRing(1000, 1024), NewInjector(Faults{}, 1), slog.New(slog.DiscardHandler))
	if err := srv.setSecret("eu", hookSecret); err != nil {
		f.Fatal(err)
	}
	h := srv.handler()
	f.Fuzz(func(t *testing.T, id, ts, signature string, body []byte) {
		req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/hooks/eu", bytes.NewReader(body))
		req.Header["Webhook-Id"] = []string{id}
		req.Header["Webhook-Timestamp"] = []string{ts}
		req.Header["Webhook-Signature"] = []string{signature}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == http.StatusNoContent && wh.Verify(body, req.Header) != nil {
			t.Fatalf("accepted a message that does not verify: id %q ts %q sig %q", id, ts, signature)
		}
	})
}
