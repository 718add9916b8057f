//go:build integration

package gateway_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/regiontest"
)

// While the home region is down, the jurisdiction's other region delivers on every channel with
// the user's devices, address and preferences as they are (the regions share the stores); what
// it wrote to the inbox, and the read state set through it, are what the home region reads
// once it is back; a deferred send made in the home region fires exactly once, from the other;
// and a preference changed through either region holds for sends through both, caches or not.
func TestFailoverDeliversWithTheUsersStateAndTheInboxGoesHomeWithTheUser(t *testing.T) {
	s, sc := regiontest.StartSim(t, 1)
	info := s.Info()
	w := newWorld(t, func(i int, c *region.Config) {
		c.Dispatch.Push.APNs = regiontest.SimAPNs(info)
		c.Dispatch.Email.SMTP = regiontest.SimSMTP(info, sc)
	})
	de := "de-" + w.app
	mail, token := de+"@example.com", fmt.Sprintf("%064x", len(w.app)*104729+7)
	if homes := w.register(map[string]string{de: "DE"}); homes[de] != w.eu1.Cfg.Name {
		t.Fatalf("home %v", homes)
	}
	w.must(http.StatusCreated, "POST", "/v1/users/"+de+"/devices", map[string]any{"platform": "ios", "token": token, "device_id": "phone"})

	send := func(title string, channels ...string) (id, region string) {
		t.Helper()
		out := w.must(http.StatusAccepted, "POST", "/v1/notifications", map[string]any{
			"type": "transactional", "category": "account", "title": title, "body": "b", "recipients": []string{de}, "channels": channels})
		parts, _ := out["parts"].([]any)
		if len(parts) == 1 {
			region, _ = parts[0].(map[string]any)["region"].(string)
		}
		return out["notification_id"].(string), region
	}
	// count is how many records a provider simulator holds for to whose text carries title.
	count := func(provider, to, title string) int {
		n := 0
		for _, r := range regiontest.SimRecords(t, s, provider, to) {
			if r.Status < 300 && strings.Contains(string(r.Payload), title) {
				n++
			}
		}
		return n
	}
	waitEmail := func(id, want string) string {
		t.Helper()
		var reason string
		poll.Until(t, 30*time.Second, func() error {
			var state string
			state, reason = emailState(w, id, de)
			if state != want {
				return fmt.Errorf("email of %s: %q (%s), want %s", id, state, reason, want)
			}
			return nil
		})
		return reason
	}
	failTo := func(stop, serve *regiontest.Running) {
		t.Helper()
		stop.Stop()
		poll.Until(t, 20*time.Second, func() error {
			code, out, _ := w.call(w.key, "GET", "/v1/users/"+de, nil)
			if code != http.StatusOK || out["served_by"] != serve.Cfg.Name {
				return fmt.Errorf("%d %v", code, out)
			}
			return nil
		})
	}

	// At home: a send that fills eu1's preference caches (email on), and a deferred send.
	id, at := send("Home", "email")
	if at != w.eu1.Cfg.Name {
		t.Fatalf("home send went to %s", at)
	}
	waitEmail(id, "delivered")
	dueAt := time.Now().Add(6 * time.Second).UTC()
	deferred := w.must(http.StatusAccepted, "POST", "/v1/notifications", map[string]any{
		"type": "transactional", "category": "account", "title": "Deferred", "body": "b", "recipients": []string{de},
		"channels": []string{"email"}, "send_at": dueAt.Format(time.RFC3339)})
	if p := deferred["parts"].([]any)[0].(map[string]any); p["region"] != w.eu1.Cfg.Name {
		t.Fatalf("deferred send went to %v", p["region"])
	}
	// Stored as due in the shared database (until eu1's fan-out took it from eu1's Kafka,
	// it waits there for eu1).
	pg, _ := stores(t, w.eu1)
	poll.Until(t, 15*time.Second, func() error {
		var n int
		if err := pg.QueryRow(t.Context(), `SELECT count(*) FROM scheduled_sends WHERE notification_id = $1`, deferred["notification_id"]).Scan(&n); err != nil || n != 1 {
			return fmt.Errorf("the deferred send is not scheduled yet (%d, %v)", n, err)
		}
		return nil
	})

	// eu1 is lost before the deferred send is due: eu2 delivers every channel with the
	// user's device and address, and fires the deferred send.
	failTo(w.eu1, w.eu2)
	_, at = send("Away", "in_app", "push", "email")
	if at != w.eu2.Cfg.Name {
		t.Fatalf("failover send went to %s, want %s", at, w.eu2.Cfg.Name)
	}
	poll.Until(t, 30*time.Second, func() error {
		if p, e := count("apns", token, "Away"), count("smtp", mail, "Away"); p != 1 || e != 1 {
			return fmt.Errorf("through eu2: %d pushes and %d emails to the user's device and address, want 1 each", p, e)
		}
		if n := count("smtp", mail, "Deferred"); n != 1 {
			return fmt.Errorf("the deferred send made in eu1 reached the user %d times, want 1", n)
		}
		return nil
	})
	// Read state and an opt-out set through eu2.
	away := inboxItem(t, w, "Away")
	w.must(http.StatusOK, "PATCH", "/v1/notifications/"+away+"/read", map[string]any{"user_id": de})
	w.must(http.StatusOK, "PUT", "/v1/users/"+de+"/preferences", map[string]any{"channels": map[string]bool{"email": false}})
	id, _ = send("Opted out in eu2", "email")
	if why := waitEmail(id, "suppressed"); why != "channel_disabled" {
		t.Fatalf("email after the opt-out through eu2: suppressed as %q, want channel_disabled", why)
	}

	// eu1 back: reads go home and find what eu2 wrote and marked; eu1's caches, filled before
	// it was lost, do not hold the old preferences; the deferred send did not fire again.
	w.eu1.Start()
	poll.Until(t, 20*time.Second, func() error {
		code, out, _ := w.call(w.key, "GET", "/v1/users/"+de, nil)
		if code != http.StatusOK || out["served_by"] != w.eu1.Cfg.Name {
			return fmt.Errorf("%d %v", code, out)
		}
		return nil
	})
	if got := inboxItem(t, w, "Away"); got != away {
		t.Fatalf("eu1's inbox item %q, want eu2's %q", got, away)
	}
	if u := w.must(http.StatusOK, "GET", "/v1/users/"+de+"/notifications/unread-count", nil); u["unread_count"] != float64(0) {
		t.Fatalf("the item read through eu2 counts as unread at home: %v", u)
	}
	id, at = send("Opted out, home again", "email")
	if at != w.eu1.Cfg.Name {
		t.Fatalf("send after failback went to %s", at)
	}
	if why := waitEmail(id, "suppressed"); why != "channel_disabled" {
		t.Fatalf("email through eu1 after an opt-out through eu2: suppressed as %q, want channel_disabled", why)
	}

	// Opted in again at home; then eu1 is lost again: eu2's caches, filled with the opt-out,
	// were told, and the email goes out.
	w.must(http.StatusOK, "PUT", "/v1/users/"+de+"/preferences", map[string]any{"channels": map[string]bool{"email": true}})
	failTo(w.eu1, w.eu2)
	id, _ = send("Opted in at home", "email")
	waitEmail(id, "delivered")
	if n := count("smtp", mail, "Deferred"); n != 1 {
		t.Fatalf("the deferred send reached the user %d times, want 1", n)
	}
}

// inboxItem is the id of the user's inbox item titled title, read through the gateway.
func inboxItem(t *testing.T, w *world, title string) string {
	t.Helper()
	var id string
	poll.Until(t, 30*time.Second, func() error {
		_, out, _ := w.call(w.key, "GET", "/v1/users/de-"+w.app+"/notifications", nil)
		items, _ := out["items"].([]any)
		for _, it := range items {
			m := it.(map[string]any)
			if m["title"] == title {
				id, _ = m["notification_id"].(string)
				return nil
			}
		}
		return fmt.Errorf("no inbox item %q in %v", title, out)
	})
	return id
}
