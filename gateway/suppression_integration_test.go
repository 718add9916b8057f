//go:build integration

package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/sim"
)

// setSimFaults replaces one simulator's faults through its admin API.
func setSimFaults(t *testing.T, s *sim.Sim, name string, f sim.Faults) {
	t.Helper()
	raw, _ := json.Marshal(f)
	req, _ := http.NewRequest(http.MethodPut, s.Info().Admin+"/sim/"+name+"/faults", bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("setting %s faults: %d", name, resp.StatusCode)
	}
}

// emailState is the email state of user in a notification's status, "" until there is one.
func emailState(w *world, id, user string) (state, reason string) {
	st := w.must(http.StatusOK, "GET", "/v1/notifications/"+id+"/status", nil)
	rs, _ := st["recipients"].([]any)
	for _, r := range rs {
		for _, c := range r.(map[string]any)["channels"].([]any) {
			c := c.(map[string]any)
			if c["user_id"] == user && c["channel"] == "email" {
				s, _ := c["state"].(string)
				why, _ := c["reason"].(string)
				return s, why
			}
		}
	}
	return "", ""
}

// An address that answered 550 5.1.1 is not sent to again: the next send to it is suppressed
// as bounced, with no attempt at the provider, whatever the case of the address the user is
// given next; the user's suppressions list it, and removing it lets the next send through.
// Three notifications that soft-bounce (a full mailbox) suppress the address the same way,
// while one soft bounce is only retried. Another user's address is untouched throughout.
func TestAHardBounceSuppressesTheNextSendUntilTheAddressIsRemoved(t *testing.T) {
	s, sc := regiontest.StartSim(t, 1)
	info := s.Info()
	w := newWorld(t, func(i int, rc *region.Config) {
		rc.Dispatch.Email.SMTP = dispatch.SMTPConfig{Addr: info.SMTP.Addr, Username: sc.SMTP.Username, Password: sc.SMTP.Password,
			From: "Herald <noreply@herald.local>", CAFile: info.CAFile}
		rc.Dispatch.Retry.Delays = []time.Duration{time.Second}
	})
	ada, bob := "ada-"+w.app, "bob-"+w.app
	adaMail, bobMail := "Ada."+w.app+"@Example.org", "bob."+w.app+"@example.org"
	w.must(http.StatusCreated, "PUT", "/v1/users/"+ada, map[string]any{"country": "DE", "email": adaMail})
	w.must(http.StatusCreated, "PUT", "/v1/users/"+bob, map[string]any{"country": "DE", "email": bobMail})
	setSimFaults(t, s, "smtp", sim.Faults{Unregistered: []string{adaMail}})
	send := func(title string, users ...string) string {
		out := w.must(http.StatusAccepted, "POST", "/v1/notifications", map[string]any{
			"type": "transactional", "category": "order", "title": title, "body": "b", "recipients": users, "channels": []string{"email"}})
		return out["notification_id"].(string)
	}
	waitState := func(id, user, want string) (reason string) {
		t.Helper()
		poll.Until(t, 30*time.Second, func() error {
			var state string
			state, reason = emailState(w, id, user)
			if state != want {
				return fmt.Errorf("%s's email of %s: %q (%s), want %s", user, id, state, reason, want)
			}
			return nil
		})
		return reason
	}
	attempts := func(addr string) int { return len(regiontest.SimRecords(t, s, "smtp", addr)) }

	first := send("First", ada, bob)
	waitState(first, ada, "failed")
	waitState(first, bob, "delivered")
	if n := attempts(adaMail); n != 1 {
		t.Fatalf("%d attempts to the bouncing address, want 1", n)
	}
	list := w.must(http.StatusOK, "GET", "/v1/users/"+ada+"/suppressions", nil)
	ss, _ := list["suppressions"].([]any)
	if len(ss) != 1 {
		t.Fatalf("ada's suppressions: %v", list)
	}
	if e := ss[0].(map[string]any); e["channel"] != "email" || e["address"] != strings.ToLower(adaMail) || e["reason"] != "bounced" ||
		!strings.Contains(e["detail"].(string), "5.1.1") {
		t.Fatalf("suppression %v", e)
	}
	if l := w.must(http.StatusOK, "GET", "/v1/users/"+bob+"/suppressions", nil); len(l["suppressions"].([]any)) != 0 {
		t.Fatalf("bob's suppressions: %v", l)
	}

	// The same address in another case: still suppressed, nothing reaches the provider.
	w.must(http.StatusOK, "PUT", "/v1/users/"+ada, map[string]any{"country": "DE", "email": strings.ToUpper(adaMail)})
	second := send("Second", ada)
	if why := waitState(second, ada, "suppressed"); why != "bounced" {
		t.Fatalf("the next send is suppressed as %q, want bounced", why)
	}
	if n := attempts(adaMail) + attempts(strings.ToUpper(adaMail)); n != 1 {
		t.Fatalf("%d attempts to the suppressed address, want still 1", n)
	}

	// Hostile: a channel that has no list, and the push channel; then a removal.
	for _, ch := range []string{"push", "EMAIL", "in_app"} {
		if code, out, _ := w.call(w.key, "DELETE", "/v1/users/"+ada+"/suppressions/"+ch, nil); code != http.StatusBadRequest {
			t.Fatalf("DELETE suppressions/%s: %d %v", ch, code, out)
		}
	}
	if code, _, _ := w.call(w.key, "DELETE", "/v1/users/"+bob+"/suppressions/email", nil); code != http.StatusNotFound {
		t.Fatalf("removing what is not suppressed: %d, want 404", code)
	}
	setSimFaults(t, s, "smtp", sim.Faults{})
	w.must(http.StatusNoContent, "DELETE", "/v1/users/"+ada+"/suppressions/email", nil)
	third := send("Third", ada)
	waitState(third, ada, "delivered")

	// Soft bounces: one is retried; the third notification that soft-bounces suppresses.
	setSimFaults(t, s, "smtp", sim.Faults{Full: []string{strings.ToUpper(adaMail)}})
	var soft []string
	for i := range 3 {
		id := send(fmt.Sprintf("Full %d", i), ada)
		soft = append(soft, id)
		if i < 2 {
			// Retried, not suppressed: its retry soft-bounces too and counts nothing more.
			poll.Until(t, 30*time.Second, func() error {
				if n := attempts(strings.ToUpper(adaMail)); n < 2*(i+1) {
					return fmt.Errorf("%d attempts to the full mailbox", n)
				}
				return nil
			})
		}
	}
	waitState(soft[2], ada, "failed")
	after := send("After full", ada)
	if why := waitState(after, ada, "suppressed"); why != "bounced" {
		t.Fatalf("after three soft-bouncing notifications: suppressed as %q, want bounced", why)
	}
	list = w.must(http.StatusOK, "GET", "/v1/users/"+ada+"/suppressions", nil)
	if ss, _ := list["suppressions"].([]any); len(ss) != 1 || !strings.Contains(ss[0].(map[string]any)["detail"].(string), "3 soft bounces") {
		t.Fatalf("suppressions after soft bounces: %v", list)
	}
}
