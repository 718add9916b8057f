//go:build integration

package gateway_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-notify/herald/gateway"
	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/sim"
)

// startEventSim starts the simulators with the SMTP simulator posting SendGrid's signed events
// to eventsURL.
func startEventSim(t *testing.T, eventsURL string) (*sim.Sim, sim.Config) {
	t.Helper()
	return regiontest.StartSim(t, 1, func(c *sim.Config) { c.SMTP.Events.URL = eventsURL })
}

// channelState is the state and reason of user's channel in a notification's status, with its
// receipts' statuses.
func channelState(w *world, id, user, channel string) (state, reason, detail string, receipts []string) {
	st := w.must(http.StatusOK, "GET", "/v1/notifications/"+id+"/status", nil)
	rs, _ := st["recipients"].([]any)
	parts, _ := st["parts"].([]any) // a send split across regions: each part's status
	for _, p := range parts {
		ps, _ := p.(map[string]any)["status"].(map[string]any)
		more, _ := ps["recipients"].([]any)
		rs = append(rs, more...)
	}
	for _, r := range rs {
		for _, c := range r.(map[string]any)["channels"].([]any) {
			c := c.(map[string]any)
			if c["user_id"] != user || c["channel"] != channel {
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

// sendGridCounts sums herald_receipts_total{provider="sendgrid"} of one region.
func sendGridCounts(t *testing.T, regionName string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "herald_receipts_total" && mf.GetName() != "herald_receipts_skipped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["region"] == regionName && labels["provider"] == "sendgrid" {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// postSendGrid posts a batch to the gateway signed with key at now.
func postSendGrid(t *testing.T, url string, key *ecdsa.PrivateKey, body []byte) (int, map[string]any) {
	t.Helper()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	sig, err := sim.SignSendGrid(key, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(wire.SendGridSignatureHeader, sig)
	req.Header.Set(wire.SendGridTimestampHeader, ts)
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

// Email sent through a relay that reports SendGrid events carries a sealed receipt token in
// X-SMTPAPI; SendGrid's signed event batches (the simulator's) come back through the gateway,
// split by region, to each user's home region. An address that bounces after the relay took
// the mail fails as bounced and is suppressed, so the next send to it is suppressed (bounced)
// without reaching the relay; a spam report suppresses the address as complained and turns the
// category off; an unsubscribe event (signed with a second, rotated-in key) turns the category
// off; a US user's events reach only the US region, the EU users' only theirs; the app's
// webhook endpoints get delivered, failed (bounced), complained and unsubscribed, each user's
// from their jurisdiction's endpoint only.
func TestSendGridEventsBounceComplainAndUnsubscribeThroughTheGateway(t *testing.T) {
	listen := regiontest.FreePort(t)
	s, sc := startEventSim(t, "http://"+listen+"/v1/receipts/sendgrid")
	info := s.Info()
	second, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&second.PublicKey)
	w := newWorldWith(t, func(c *gateway.Config) {
		c.Listen, c.PublicURL = listen, "http://"+listen
		c.Receipts.SendGrid = gateway.SendGridReceiptsConfig{PublicKeyFiles: []string{info.SMTP.EventsPublicKeyFile},
			PublicKeys: []string{base64.StdEncoding.EncodeToString(der)}}
	}, fastWebhooks, func(i int, rc *region.Config) {
		rc.Dispatch.Email.SMTP = dispatch.SMTPConfig{Addr: info.SMTP.Addr, Username: sc.SMTP.Username, Password: sc.SMTP.Password,
			From: "Herald <noreply@herald.local>", CAFile: info.CAFile, Events: dispatch.EventsSendGrid}
	})
	sgURL := w.gw + "/v1/receipts/sendgrid"
	ada, bob, cy, dan := "ada-"+w.app, "bob-"+w.app, "cy-"+w.app, "dan-"+w.app
	mail := func(u string) string { return u + "@example.org" }
	for _, u := range []string{ada, bob, cy} {
		w.must(http.StatusCreated, "PUT", "/v1/users/"+u, map[string]any{"country": "DE", "email": mail(u)})
	}
	w.must(http.StatusCreated, "PUT", "/v1/users/"+dan, map[string]any{"country": "US", "email": mail(dan)})
	setSimFaults(t, s, "smtp", sim.Faults{BounceLater: []string{mail(bob)}, Complain: []string{mail(cy)}})
	euHook, usHook := "sg-eu-"+w.app, "sg-us-"+w.app
	w.hookEndpoint(s, "EU", euHook, map[string]any{"event_types": []string{"notification.delivered", "notification.failed",
		"notification.complained", "notification.unsubscribed"}})
	w.hookEndpoint(s, "US", usHook, map[string]any{"event_types": []string{"notification.delivered", "notification.failed",
		"notification.complained", "notification.unsubscribed"}})
	send := func(tier, category string, users ...string) string {
		out := w.must(http.StatusAccepted, "POST", "/v1/notifications", map[string]any{
			"type": tier, "category": category, "title": "Hello", "body": "b", "recipients": users, "channels": []string{"email"}})
		return out["notification_id"].(string)
	}
	usBefore, euBefore := sendGridCounts(t, w.us1.Cfg.Name), sendGridCounts(t, w.eu1.Cfg.Name)+sendGridCounts(t, w.eu2.Cfg.Name)

	first := send("marketing", "promo", ada, bob, cy, dan)
	defer func() {
		if t.Failed() {
			t.Logf("status: %v", w.must(http.StatusOK, "GET", "/v1/notifications/"+first+"/status", nil))
			t.Logf("gateway log: %s", w.log.String())
		}
	}()
	poll.Until(t, 45*time.Second, func() error {
		for _, u := range []string{ada, dan, cy} {
			if st, _, _, rc := channelState(w, first, u, "email"); st != "delivered" || !slices.Contains(rc, "delivered") {
				return fmt.Errorf("%s's email: %s, receipts %v", u, st, rc)
			}
		}
		if _, _, _, rc := channelState(w, first, cy, "email"); !slices.Contains(rc, "complained") {
			return fmt.Errorf("cy's receipts %v", rc)
		}
		if st, _, detail, _ := channelState(w, first, bob, "email"); st != "failed" || detail != "the provider reported it bounced (SMTP status 5.1.1)" {
			return fmt.Errorf("bob's email: %s %s", st, detail)
		}
		return nil
	})
	// The mail carried its token in X-SMTPAPI, sealed: it names no one.
	recs := mailsTo(t, s, mail(ada))
	if len(recs) != 1 || !strings.Contains(recs[0].Headers["x-smtpapi"], `"herald_receipt":"`+w.eu1.Cfg.Name+".") ||
		strings.Contains(recs[0].Headers["x-smtpapi"], ada) {
		t.Fatalf("X-SMTPAPI %q", recs[0].Headers["x-smtpapi"])
	}
	// Residency: the US user's events (processed, delivered) reached the US region only; the EU
	// users' (ada 2, bob 2, cy 3) the EU regions only.
	if got := sendGridCounts(t, w.us1.Cfg.Name) - usBefore; got != 2 {
		t.Fatalf("the US region took %v SendGrid events, want dan's 2", got)
	}
	if got := sendGridCounts(t, w.eu1.Cfg.Name) + sendGridCounts(t, w.eu2.Cfg.Name) - euBefore; got != 7 {
		t.Fatalf("the EU regions took %v SendGrid events, want ada's, bob's and cy's 7", got)
	}

	// The hard bounce suppressed bob's address; the spam report cy's, as complained, and turned
	// promo email off for cy.
	list := w.must(http.StatusOK, "GET", "/v1/users/"+bob+"/suppressions", nil)
	if ss, _ := list["suppressions"].([]any); len(ss) != 1 || ss[0].(map[string]any)["reason"] != "bounced" {
		t.Fatalf("bob's suppressions: %v", list)
	}
	list = w.must(http.StatusOK, "GET", "/v1/users/"+cy+"/suppressions", nil)
	if ss, _ := list["suppressions"].([]any); len(ss) != 1 || ss[0].(map[string]any)["reason"] != "complained" {
		t.Fatalf("cy's suppressions: %v", list)
	}
	prefs := w.must(http.StatusOK, "GET", "/v1/users/"+cy+"/preferences", nil)
	if cats, _ := prefs["categories"].(map[string]any); cats["promo"] == nil || cats["promo"].(map[string]any)["email"] != false {
		t.Fatalf("cy's preferences after the spam report: %v", prefs)
	}
	second1 := send("transactional", "order", bob)
	poll.Until(t, 30*time.Second, func() error {
		if st, why, _, _ := channelState(w, second1, bob, "email"); st != "suppressed" || why != "bounced" {
			return fmt.Errorf("bob's next email: %s %s", st, why)
		}
		return nil
	})
	if n := len(regiontest.SimRecords(t, s, "smtp", mail(bob))); n != 1 {
		t.Fatalf("%d mails reached the relay for the bounced address, want 1", n)
	}

	// An unsubscribe event for ada's promo mail, signed with the rotated-in key, posted twice.
	var args struct {
		UniqueArgs map[string]string `json:"unique_args"`
	}
	if err := json.Unmarshal([]byte(recs[0].Headers["x-smtpapi"]), &args); err != nil {
		t.Fatal(err)
	}
	tok := args.UniqueArgs[wire.SendGridTokenField]
	body := []byte(fmt.Sprintf(`[{"event":"unsubscribe","email":%q,"timestamp":%d,"sg_event_id":"u1","herald_receipt":%q},`+
		`{"event":"delivered","email":"x@example.org","timestamp":%d,"herald_receipt":"%s.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},`+
		`{"event":"open","email":"y@example.org","timestamp":%d}]`, mail(ada), time.Now().Unix(), tok, time.Now().Unix(), w.us1.Cfg.Name, time.Now().Unix()))
	code, out := postSendGrid(t, sgURL, second, body)
	if code != http.StatusOK || out["events"] != 3.0 || out["forwarded"] != 2.0 || out["recorded"] != 1.0 || out["skipped"] != 2.0 {
		t.Fatalf("an unsubscribe batch: %d %v", code, out)
	}
	prefs = w.must(http.StatusOK, "GET", "/v1/users/"+ada+"/preferences", nil)
	if cats, _ := prefs["categories"].(map[string]any); cats["promo"] == nil || cats["promo"].(map[string]any)["email"] != false {
		t.Fatalf("ada's preferences after the unsubscribe event: %v", prefs)
	}
	if code, out := postSendGrid(t, sgURL, second, body); code != http.StatusOK || out["recorded"] != 0.0 {
		t.Fatalf("the same events again, newly signed: %d %v", code, out)
	}
	third := send("marketing", "promo", ada)
	poll.Until(t, 30*time.Second, func() error {
		if st, why, _, _ := channelState(w, third, ada, "email"); st != "suppressed" || why != "category_disabled" {
			return fmt.Errorf("ada's next promo email: %s %s", st, why)
		}
		return nil
	})
	// Hostile batches change nothing and get a stable code; an EU token renamed to the US
	// region is skipped there.
	_, sealed, _ := strings.Cut(tok, ".")
	forged := []byte(fmt.Sprintf(`[{"event":"spamreport","email":%q,"timestamp":%d,"herald_receipt":"%s.%s"}]`, mail(ada), time.Now().Unix(), w.us1.Cfg.Name, sealed))
	if code, out := postSendGrid(t, sgURL, second, forged); code != http.StatusOK || out["skipped"] != 1.0 || out["recorded"] != 0.0 {
		t.Fatalf("an EU token renamed to the US region: %d %v", code, out)
	}
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if code, out := postSendGrid(t, sgURL, stranger, body); code != http.StatusForbidden || out["error"].(map[string]any)["code"] != "invalid_signature" {
		t.Fatalf("signed with a key not configured: %d %v", code, out)
	}
	if code, out := postSendGrid(t, sgURL, second, []byte(`[{"event":"bounce","email":"a\u0000","timestamp":1}]`)); code != http.StatusBadRequest || out["error"].(map[string]any)["field"] != "[0].email" {
		t.Fatalf("a NUL: %d %v", code, out)
	}
	if l := w.must(http.StatusOK, "GET", "/v1/users/"+ada+"/suppressions", nil); len(l["suppressions"].([]any)) != 0 {
		t.Fatalf("ada's suppressions after the hostile batches: %v", l)
	}

	// The app heard of it all on its webhook endpoints (filtered to the four types), each event
	// once, signed, each user's from their jurisdiction only.
	byUser := func(name string) map[string][]string {
		out := map[string][]string{}
		seen := map[string]bool{}
		for _, h := range hooks(t, s, name) {
			if h.status != http.StatusNoContent { // the later sends are suppressed: filtered out
				continue
			}
			if !h.verified || seen[h.id] {
				t.Fatalf("%s: %+v unverified or twice", name, h)
			}
			seen[h.id] = true
			out[h.user] = append(out[h.user], strings.TrimPrefix(h.typ, "notification.")+"/"+h.reason)
		}
		for _, v := range out {
			slices.Sort(v)
		}
		return out
	}
	want := map[string]map[string][]string{
		euHook: {ada: {"delivered/", "unsubscribed/"}, bob: {"failed/bounced"}, cy: {"complained/", "delivered/"}},
		usHook: {dan: {"delivered/"}},
	}
	poll.Until(t, 30*time.Second, func() error {
		for name, users := range want {
			got := byUser(name)
			if fmt.Sprint(got) != fmt.Sprint(users) {
				return fmt.Errorf("%s received %v, want %v", name, got, users)
			}
		}
		return nil
	})
}
