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
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/sim"
)

// mailsTo returns the simulator's accepted mails to addr.
func mailsTo(t *testing.T, s *sim.Sim, addr string) []sim.Record {
	t.Helper()
	var ok []sim.Record
	for _, m := range regiontest.SimRecords(t, s, "smtp", addr) {
		if m.Status == 250 {
			ok = append(ok, m)
		}
	}
	return ok
}

// raw sends a request to the gateway as a mail client or a browser would: no API key.
func raw(t *testing.T, method, u, contentType, body, accept string) (int, string, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, u, rd)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// Marketing email sent through the gateway carries one-click unsubscribe (RFC 8058); posting
// it as a mail client does turns the category off for the user at once, so the next marketing
// email of that category is suppressed (category_disabled) while another category still arrives.
// Transactional mail carries no unsubscribe. Forged, changed and replayed links, wrong bodies
// and an erased user's link get the same answers a guesser can learn nothing from.
func TestOneClickUnsubscribeTurnsTheCategoryOffForTheNextSend(t *testing.T) {
	s, sc := regiontest.StartSim(t, 1)
	info := s.Info()
	w := newWorld(t, func(i int, rc *region.Config) {
		rc.Dispatch.Email.SMTP = dispatch.SMTPConfig{Addr: info.SMTP.Addr, Username: sc.SMTP.Username, Password: sc.SMTP.Password,
			From: "Herald <noreply@herald.local>", CAFile: info.CAFile, UnsubscribeMailto: "unsubscribe@herald.local",
			DKIM: dispatch.DKIMConfig{Domain: info.SMTP.DKIMDomain, Selector: info.SMTP.DKIMSelector, KeyFile: info.SMTP.DKIMKeyFile}}
	})
	user := "ada-" + w.app
	email := user + "@example.org"
	w.must(http.StatusCreated, "PUT", "/v1/users/"+user, map[string]any{"country": "DE", "email": email})
	send := func(tier, category, title string) string {
		out := w.must(http.StatusAccepted, "POST", "/v1/notifications", map[string]any{
			"type": tier, "category": category, "title": title, "body": "b", "recipients": []string{user}, "channels": []string{"email"}})
		return out["notification_id"].(string)
	}
	waitMail := func(subject string) sim.Record {
		var rec sim.Record
		poll.Until(t, 30*time.Second, func() error {
			for _, m := range mailsTo(t, s, email) {
				if m.Headers["subject"] == subject {
					rec = m
					return nil
				}
			}
			return fmt.Errorf("no mail %q to %s yet", subject, email)
		})
		return rec
	}

	send("transactional", "order", "Your order")
	if m := waitMail("Your order"); m.Headers["list-unsubscribe"] != "" || m.Headers["list-unsubscribe-post"] != "" {
		t.Fatalf("transactional mail carries unsubscribe headers: %v", m.Headers)
	}
	send("marketing", "promo", "Sale 1")
	m := waitMail("Sale 1")
	if m.Headers["list-unsubscribe-post"] != "List-Unsubscribe=One-Click" {
		t.Fatalf("List-Unsubscribe-Post: %q", m.Headers["list-unsubscribe-post"])
	}
	// Signed, unsubscribe fields included, as the receiving side (the simulator) checks it.
	if !strings.HasPrefix(m.Headers["dkim"], "pass d=herald.local") || !strings.Contains(m.Headers["dkim-signed-headers"], "list-unsubscribe:") ||
		!strings.Contains(m.Headers["dkim-signed-headers"], "list-unsubscribe-post") {
		t.Fatalf("DKIM at the receiver: %q over %q", m.Headers["dkim"], m.Headers["dkim-signed-headers"])
	}
	lu := m.Headers["list-unsubscribe"]
	start, end := strings.Index(lu, "<"+w.gw+"/v1/unsubscribe/"), strings.Index(lu, ">")
	if start != 0 || end < 0 || !strings.Contains(lu, "<mailto:unsubscribe@herald.local?subject=unsubscribe%20") {
		t.Fatalf("List-Unsubscribe %q: want the gateway's one-click link first, then the mailbox", lu)
	}
	link := lu[1:end]
	token := strings.TrimPrefix(link, w.gw+"/v1/unsubscribe/")
	if strings.Contains(token, user) || strings.Contains(token, w.app) || strings.Contains(token, "promo") {
		t.Fatalf("the link names the user, the app or the category in clear: %s", link)
	}

	// A mail scanner follows the link: the page offers the button and changes nothing.
	code, page, hdr := raw(t, "GET", link, "", "", "")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") || !strings.Contains(page, "promo") || !strings.Contains(page, `name="List-Unsubscribe" value="One-Click"`) {
		t.Fatalf("GET link: %d %s %s", code, hdr.Get("Content-Type"), page)
	}

	// Hostile: a changed token, a token naming another region, an unknown region, a huge one,
	// the wrong body, a JSON body.
	flip := []byte(token)
	flip[len(flip)-3] ^= 1
	other := w.eu2.Cfg.Name + token[strings.Index(token, "."):]
	for _, bad := range []struct {
		name, u, ctype, body string
		want                 int
	}{
		{"changed token", w.gw + "/v1/unsubscribe/" + string(flip), "", "", 404},
		{"another region's name", w.gw + "/v1/unsubscribe/" + other, "", "", 404},
		{"unknown region", w.gw + "/v1/unsubscribe/zz-nowhere-9" + token[strings.Index(token, "."):], "", "", 404},
		{"huge token", w.gw + "/v1/unsubscribe/" + strings.Repeat("a", 5000) + ".x", "", "", 404},
		{"NUL", w.gw + "/v1/unsubscribe/" + url.PathEscape(token+"\x00"), "", "", 404},
		{"wrong body", link, "application/x-www-form-urlencoded", "List-Unsubscribe=Yes", 400},
		{"repeated field", link, "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click&List-Unsubscribe=One-Click", 400},
		{"JSON body", link, "application/json", `{"List-Unsubscribe":"One-Click"}`, 415},
		{"text body", link, "text/plain", "List-Unsubscribe=One-Click", 415},
	} {
		code, body, _ := raw(t, "POST", bad.u, bad.ctype, bad.body, "")
		if code != bad.want {
			t.Errorf("%s: %d %s, want %d", bad.name, code, body, bad.want)
		}
	}
	code, _, _ = raw(t, "GET", w.gw+"/v1/unsubscribe/"+string(flip), "", "", "")
	if code != 404 {
		t.Errorf("GET with a changed token: %d", code)
	}
	// Still subscribed: nothing above changed the preferences.
	send("marketing", "promo", "Sale 2")
	waitMail("Sale 2")

	// One click, as a mail client posts it; twice (replayed) is the same answer.
	for i := range 2 {
		code, body, _ := raw(t, "POST", link, "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click", "")
		if code != 200 || !strings.Contains(body, `"unsubscribed":true`) || !strings.Contains(body, `"category":"promo"`) {
			t.Fatalf("one-click #%d: %d %s", i+1, code, body)
		}
	}
	prefs := w.must(http.StatusOK, "GET", "/v1/users/"+user+"/preferences", nil)
	if cats, _ := prefs["categories"].(map[string]any); cats["promo"].(map[string]any)["email"] != false {
		t.Fatalf("preferences after unsubscribe: %v", prefs)
	}
	// At once: the next marketing email of the category is suppressed, another category still goes.
	id := send("marketing", "promo", "Sale 3")
	poll.Until(t, 30*time.Second, func() error {
		out := w.must(http.StatusOK, "GET", "/v1/notifications/"+id+"/status", nil)
		b, _ := json.Marshal(out["recipients"])
		if !strings.Contains(string(b), `"state":"suppressed"`) || !strings.Contains(string(b), `"reason":"category_disabled"`) {
			return fmt.Errorf("status: %s", b)
		}
		return nil
	})
	send("marketing", "news", "Weekly news")
	waitMail("Weekly news")
	for _, m := range mailsTo(t, s, email) {
		if m.Headers["subject"] == "Sale 3" {
			t.Fatal("an email of the unsubscribed category was sent")
		}
	}
	// A browser's form post gets a page.
	code, page, hdr = raw(t, "POST", link, "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click", "text/html")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") || !strings.Contains(page, "unsubscribed") {
		t.Fatalf("browser post: %d %s", code, page)
	}

	// An erased user's link is not one any more.
	w.must(http.StatusAccepted, "DELETE", "/v1/users/"+user, nil)
	poll.Until(t, 30*time.Second, func() error {
		if code, body, _ := raw(t, "POST", link, "", "", ""); code != 404 {
			return fmt.Errorf("an erased user's link: %d %s", code, body)
		}
		return nil
	})
}
