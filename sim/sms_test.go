package sim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

const (
	smsTo   = "+447700900123"
	smsFrom = "+15005550006"
)

// postSMS is a Twilio Messages.json call the way any HTTP client makes it: a form post with
// basic auth.
func postSMS(t testing.TB, s *Sim, sid, authToken string, form url.Values) (*http.Response, map[string]any) {
	t.Helper()
	u := s.Info().SMS.URL + "/2010-04-01/Accounts/" + sid + "/Messages.json"
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if authToken != "" {
		req.SetBasicAuth(sid, authToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decoding: %v", err)
	}
	return resp, body
}

func smsForm(to, body string) url.Values {
	return url.Values{"To": {to}, "From": {smsFrom}, "Body": {body}}
}

func TestSMSAcceptsAMessageLikeTwilio(t *testing.T) {
	s := startSim(t, nil)
	sid, token := s.Info().SMS.AccountSID, s.cfg.SMS.AuthToken
	resp, body := postSMS(t, s, sid, token, smsForm(smsTo, "Your code is 123456"))
	if resp.StatusCode != 201 {
		t.Fatalf("status %d %v", resp.StatusCode, body)
	}
	msgSID, _ := body["sid"].(string)
	if !regexp.MustCompile(`^SM[0-9a-f]{32}$`).MatchString(msgSID) {
		t.Fatalf("sid %q", msgSID)
	}
	want := map[string]any{"status": "queued", "to": smsTo, "from": smsFrom, "body": "Your code is 123456",
		"account_sid": sid, "num_segments": "1", "direction": "outbound-api", "api_version": "2010-04-01"}
	for k, v := range want {
		if body[k] != v {
			t.Errorf("%s = %v, want %v", k, body[k], v)
		}
	}
	if _, err := time.Parse(time.RFC1123Z, body["date_created"].(string)); err != nil {
		t.Errorf("date_created: %v", err)
	}
	recs := records(t, s, "sms", smsTo)
	if len(recs) != 1 || recs[0].ID != msgSID || recs[0].Status != 201 {
		t.Fatalf("records %+v", recs)
	}
	var form url.Values
	if err := json.Unmarshal(recs[0].Payload, &form); err != nil || form.Get("Body") != "Your code is 123456" {
		t.Fatalf("payload %s", recs[0].Payload)
	}
}

func TestSMSErrorsUseTwilioCodes(t *testing.T) {
	s := startSim(t, nil)
	sid, token := s.Info().SMS.AccountSID, s.cfg.SMS.AuthToken
	tests := []struct {
		name       string
		faults     Faults
		sid, token string
		form       url.Values
		wantStatus int
		wantCode   float64
		wantRetry  string
	}{
		{"wrong auth token", Faults{}, sid, "wrong", smsForm(smsTo, "x"), 401, 20003, ""},
		{"no credentials", Faults{}, sid, "", smsForm(smsTo, "x"), 401, 20003, ""},
		{"another account's path", Faults{}, "AC" + strings.Repeat("f", 32), token, smsForm(smsTo, "x"), 401, 20003, ""},
		{"To not E.164", Faults{}, sid, token, smsForm("07700900123", "x"), 400, 21211, ""},
		{"To missing", Faults{}, sid, token, url.Values{"From": {smsFrom}, "Body": {"x"}}, 400, 21604, ""},
		{"Body missing", Faults{}, sid, token, smsForm(smsTo, ""), 400, 21602, ""},
		{"Body over 1600 characters", Faults{}, sid, token, smsForm(smsTo, strings.Repeat("a", 1601)), 400, 21617, ""},
		{"unsubscribed recipient", Faults{Unregistered: []string{smsTo}}, sid, token, smsForm(smsTo, "x"), 400, 21610, ""},
		{"number listed invalid", Faults{Invalid: []string{smsTo}}, sid, token, smsForm(smsTo, "x"), 400, 21211, ""},
		{"rate limited", Faults{RateLimitRate: 1, RetryAfterSeconds: 3}, sid, token, smsForm(smsTo, "x"), 429, 20429, "3"},
		{"outage", Faults{OutageSeconds: 10}, sid, token, smsForm(smsTo, "x"), 503, 20503, "10"},
		{"server error 500", Faults{ErrorRate: 1, ErrorStatuses: []int{500}}, sid, token, smsForm(smsTo, "x"), 500, 20500, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setFaults(t, s, "sms", tt.faults)
			resp, body := postSMS(t, s, tt.sid, tt.token, tt.form)
			if resp.StatusCode != tt.wantStatus || body["code"] != tt.wantCode || body["status"] != float64(tt.wantStatus) {
				t.Fatalf("got %d %v", resp.StatusCode, body)
			}
			if !strings.HasPrefix(body["more_info"].(string), "https://www.twilio.com/docs/errors/") {
				t.Fatalf("more_info %v", body["more_info"])
			}
			if resp.Header.Get("Retry-After") != tt.wantRetry {
				t.Fatalf("Retry-After %q, want %q", resp.Header.Get("Retry-After"), tt.wantRetry)
			}
		})
	}
}

func TestSMSPostsSignedStatusCallbacks(t *testing.T) {
	s := startSim(t, nil)
	got := make(chan url.Values, 2)
	var cbURL string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		if sig := TwilioSignature(s.cfg.SMS.AuthToken, cbURL, r.PostForm); r.Header.Get("X-Twilio-Signature") != sig {
			t.Errorf("signature %q, want %q", r.Header.Get("X-Twilio-Signature"), sig)
		}
		got <- r.PostForm
	}))
	defer srv.Close()
	cbURL = srv.URL + "/twilio/status?region=eu"
	form := smsForm(smsTo, "hi")
	form.Set("StatusCallback", cbURL)
	resp, body := postSMS(t, s, s.Info().SMS.AccountSID, s.cfg.SMS.AuthToken, form)
	if resp.StatusCode != 201 {
		t.Fatalf("%d %v", resp.StatusCode, body)
	}
	for _, want := range []string{"sent", "delivered"} {
		select {
		case p := <-got:
			if p.Get("MessageStatus") != want || p.Get("MessageSid") != body["sid"] || p.Get("To") != smsTo {
				t.Fatalf("callback %v, want status %s", p, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s callback", want)
		}
	}
}

func TestTwilioSignatureMatchesTwilioDocsExample(t *testing.T) {
	// The example from Twilio's "Webhooks security" page.
	params := url.Values{"CallSid": {"CA1234567890ABCDE"}, "Caller": {"+12349013030"}, "Digits": {"1234"},
		"From": {"+12349013030"}, "To": {"+18005551212"}}
	got := TwilioSignature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", params)
	if got != "0/KCTR6DLpKmkAf8muzZqo1nDgQ=" {
		t.Fatalf("signature %s", got)
	}
}

func TestSMSSegments(t *testing.T) {
	tests := []struct {
		body string
		want int
	}{
		{"hi", 1}, {strings.Repeat("a", 160), 1}, {strings.Repeat("a", 161), 2}, {strings.Repeat("é", 70), 1},
		{strings.Repeat("é", 71), 2}, {strings.Repeat("a", 1600), 11},
	}
	for _, tt := range tests {
		if got := segments(tt.body); got != tt.want {
			t.Errorf("segments(%d runes) = %d, want %d", len([]rune(tt.body)), got, tt.want)
		}
	}
}

func FuzzDecodeSMSForm(f *testing.F) {
	f.Add("To=%2B447700900123&From=%2B15005550006&Body=hi")
	f.Add("To=07700&From=&Body=")
	f.Add("To=%2B447700900123&MessagingServiceSid=MG00000000000000000000000000000000&Body=x&StatusCallback=http%3A%2F%2Fh%2F")
	f.Add("To=%2B1%20&From=Herald&Body=%FF")
	f.Fuzz(func(t *testing.T, raw string) {
		form, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		req, terr := decodeSMSForm(form)
		if terr != nil {
			if terr.Status != 400 || terr.Code < 20000 || terr.Message == "" {
				t.Fatalf("error %+v", terr)
			}
			return
		}
		// What is accepted must be sendable: an E.164 recipient, a sender and a bounded body.
		if !e164RE.MatchString(req.To) || (req.From == "" && req.MessagingServiceSid == "") ||
			len([]rune(req.Body)) > twilioMaxBody {
			t.Fatalf("accepted %+v", req)
		}
	})
}

func TestSMSRefusesAnotherAccountsPath(t *testing.T) {
	s := startSim(t, nil)
	other := "AC" + strings.Repeat("f", 32)
	req, _ := http.NewRequest("POST", s.Info().SMS.URL+"/2010-04-01/Accounts/"+other+"/Messages.json",
		strings.NewReader(smsForm(smsTo, "x").Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(s.Info().SMS.AccountSID, s.cfg.SMS.AuthToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body twilioError
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != 404 || body.Code != 20404 {
		t.Fatalf("%d %+v", resp.StatusCode, body)
	}
	if recs := records(t, s, "sms", ""); len(recs) != 0 {
		t.Fatalf("recorded %+v", recs)
	}
}
