//go:build integration

package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/sim"
)

// smsStatus is the SMS state of user in a notification's status, with its receipts' statuses.
func smsStatus(w *world, id, user string) (state, reason, detail string, receipts []string) {
	st := w.must(http.StatusOK, "GET", "/v1/notifications/"+id+"/status", nil)
	rs, _ := st["recipients"].([]any)
	for _, r := range rs {
		for _, c := range r.(map[string]any)["channels"].([]any) {
			c := c.(map[string]any)
			if c["user_id"] != user || c["channel"] != "sms" {
				continue
			}
			state, _ = c["state"].(string)
			reason, _ = c["reason"].(string)
			detail, _ = c["detail"].(string)
			rcs, _ := c["receipts"].([]any)
			for _, rc := range rcs {
				receipts = append(receipts, rc.(map[string]any)["status"].(string))
			}
		}
	}
	return
}

// postCallback posts a Twilio status callback to u, signed with authToken (sig "" signs it).
func postCallback(t *testing.T, u, authToken, sig string, p url.Values) (int, map[string]any) {
	t.Helper()
	if sig == "" {
		sig = wire.TwilioSignature(authToken, u, p)
	}
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(p.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// A text's StatusCallback points at the jurisdiction's gateway; Twilio's signed callbacks
// (the simulator's) come back through it to the user's home region, which moves the state from
// dispatched to delivered and shows the receipts. A number the carrier reports as not existing
// (undelivered, 30005) fails as bounced, is suppressed, and the next send to it is suppressed
// without reaching the provider. Callbacks forged, re-signed, replayed, out of order or
// malformed change nothing they should not, and are answered with a stable code.
func TestTwilioStatusCallbacksMoveATextToDeliveredOrSuppressItsNumber(t *testing.T) {
	s, sc := regiontest.StartSim(t, 1)
	info := s.Info()
	w := newWorld(t, func(i int, rc *region.Config) {
		rc.Dispatch.SMS.Twilio = dispatch.TwilioConfig{BaseURL: info.SMS.URL, AccountSID: sc.SMS.AccountSID, AuthToken: sc.SMS.AuthToken, From: "+15005550006"}
	})
	ada, bob := "ada-"+w.app, "bob-"+w.app
	adaPhone, bobPhone := "+4915112340001", "+4915112340002"
	w.must(http.StatusCreated, "PUT", "/v1/users/"+ada, map[string]any{"country": "DE", "phone": adaPhone})
	w.must(http.StatusCreated, "PUT", "/v1/users/"+bob, map[string]any{"country": "DE", "phone": bobPhone})
	setSimFaults(t, s, "sms", sim.Faults{Undeliverable: []string{bobPhone}})
	send := func(users ...string) string {
		out := w.must(http.StatusAccepted, "POST", "/v1/notifications", map[string]any{
			"type": "transactional", "category": "otp", "title": "Code", "body": "123456", "recipients": users, "channels": []string{"sms"}})
		return out["notification_id"].(string)
	}
	first := send(ada, bob)
	poll.Until(t, 30*time.Second, func() error {
		if st, _, _, rc := smsStatus(w, first, ada); st != "delivered" || !strings.Contains(strings.Join(rc, ","), "delivered") {
			return fmt.Errorf("ada's text: %s, receipts %v", st, rc)
		}
		if st, why, detail, _ := smsStatus(w, first, bob); st != "failed" || why != "" || detail != "the provider reported it undelivered (carrier error 30005)" {
			return fmt.Errorf("bob's text: %s %s %s", st, why, detail)
		}
		return nil
	})
	list := w.must(http.StatusOK, "GET", "/v1/users/"+bob+"/suppressions", nil)
	if ss, _ := list["suppressions"].([]any); len(ss) != 1 || ss[0].(map[string]any)["reason"] != "bounced" || ss[0].(map[string]any)["address"] != bobPhone {
		t.Fatalf("bob's suppressions: %v", list)
	}
	second := send(bob)
	poll.Until(t, 30*time.Second, func() error {
		if st, why, _, _ := smsStatus(w, second, bob); st != "suppressed" || why != "bounced" {
			return fmt.Errorf("bob's next text: %s %s", st, why)
		}
		return nil
	})
	if n := len(regiontest.SimRecords(t, s, "sms", bobPhone)); n != 1 {
		t.Fatalf("%d texts reached the provider for the bounced number, want 1", n)
	}

	// The callback URL the region gave Twilio, from what the simulator received.
	recs := regiontest.SimRecords(t, s, "sms", adaPhone)
	if len(recs) != 1 {
		t.Fatalf("%d texts to ada", len(recs))
	}
	var form map[string][]string
	if err := json.Unmarshal(recs[0].Payload, &form); err != nil {
		t.Fatal(err)
	}
	cbURL := form["StatusCallback"][0]
	if !strings.HasPrefix(cbURL, w.gw+"/v1/receipts/twilio/"+w.eu1.Cfg.Name+".") || strings.Contains(cbURL, ada) || strings.Contains(cbURL, adaPhone) {
		t.Fatalf("StatusCallback %q: not the EU gateway and a sealed token", cbURL)
	}
	p := func(status string) url.Values {
		return url.Values{"MessageSid": {recs[0].ID}, "MessageStatus": {status}, "To": {adaPhone}, "AccountSid": {sc.SMS.AccountSID}}
	}
	// Replayed, and an earlier status arriving late: 200, and the state stays delivered.
	if code, out := postCallback(t, cbURL, sc.SMS.AuthToken, "", p("delivered")); code != http.StatusOK || out["recorded"] != false {
		t.Fatalf("a replayed delivered: %d %v", code, out)
	}
	if code, out := postCallback(t, cbURL, sc.SMS.AuthToken, "", p("queued")); code != http.StatusOK || out["recorded"] != false {
		t.Fatalf("a late queued: %d %v", code, out)
	}
	// Forged and malformed ones.
	tok := strings.TrimPrefix(cbURL, w.gw+"/v1/receipts/twilio/")
	_, sealed, _ := strings.Cut(tok, ".")
	for name, c := range map[string]struct {
		url, sig, ctype string
		params          url.Values
		code            int
		errCode         string
	}{
		"signed with another auth token": {cbURL, wire.TwilioSignature("guess", cbURL, p("failed")), "", p("failed"), http.StatusForbidden, "invalid_signature"},
		"a status changed after signing": {cbURL, wire.TwilioSignature(sc.SMS.AuthToken, cbURL, p("delivered")), "", p("failed"), http.StatusForbidden, "invalid_signature"},
		"the token renamed to the US":    {w.gw + "/v1/receipts/twilio/" + w.us1.Cfg.Name + "." + sealed, "", "", p("failed"), http.StatusNotFound, "not_found"},
		"a token of no region":           {w.gw + "/v1/receipts/twilio/nowhere-1." + sealed, "", "", p("failed"), http.StatusNotFound, "not_found"},
		"a JSON body":                    {cbURL, "", "application/json", p("failed"), http.StatusUnsupportedMediaType, "unsupported_media_type"},
		"an unknown status":              {cbURL, "", "", p("DELIVERED"), http.StatusBadRequest, "invalid_field"},
		"a NUL in the status":            {cbURL, "", "", p("failed\x00"), http.StatusBadRequest, "invalid_field"},
	} {
		sig := c.sig
		if sig == "" {
			sig = wire.TwilioSignature(sc.SMS.AuthToken, c.url, c.params)
		}
		req, _ := http.NewRequest(http.MethodPost, c.url, strings.NewReader(c.params.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		req.Header.Set("X-Twilio-Signature", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Error struct{ Code, Field string } `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != c.code || out.Error.Code != c.errCode {
			t.Errorf("%s: %d %v, want %d %s", name, resp.StatusCode, out, c.code, c.errCode)
		}
	}
	if st, _, _, _ := smsStatus(w, first, ada); st != "delivered" {
		t.Fatalf("ada's text after the hostile callbacks: %s", st)
	}
	if l := w.must(http.StatusOK, "GET", "/v1/users/"+ada+"/suppressions", nil); len(l["suppressions"].([]any)) != 0 {
		t.Fatalf("ada's suppressions after the hostile callbacks: %v", l)
	}
}
