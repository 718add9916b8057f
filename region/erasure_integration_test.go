//go:build integration

package region_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/poll"
)

func TestErasureLeavesNoRowOfTheUserInAnyStoreAndLaterSendsAreSuppressed(t *testing.T) {
	r := startRegion(t)
	ctx := t.Context()
	// Give ada something in every store.
	r.call("PUT", "/v1/users/ada", map[string]any{"email": "ada@example.com", "phone": "+33612345678"}, r.app)
	r.call("POST", "/v1/users/ada/devices", map[string]any{"platform": "ios", "token": fmt.Sprintf("%064x", 7), "device_id": "phone"}, r.app)
	r.call("PUT", "/v1/users/ada/preferences", map[string]any{"timezone": "Europe/Paris"}, r.app)
	r.call("PUT", "/v1/topics/news/subscribers/ada", nil, r.app)
	r.call("PUT", "/v1/users/bob", map[string]any{"email": "bob@example.com"}, r.app)
	// A delivery event the exporter stored (this test region runs no exporter, so plant one).
	if _, err := r.pg.Exec(ctx, `INSERT INTO analytics_events (event_key, window_start, app, tier, category, channel, stage, reason, country, user_id, region)
		VALUES ('n1|ada|in_app|delivered', date_trunc('minute', now()), $1, 'social', 'c', 'in_app', 'delivered', '', '', 'ada', 'zz-test-1')`, r.app); err != nil {
		t.Fatal(err)
	}
	code, b := r.call("POST", "/v1/notifications", map[string]any{"type": "social", "category": "c", "body": "hi",
		"recipients": []string{"ada", "bob"}, "channels": []string{"in_app", "email"}}, r.app)
	if code != 202 {
		t.Fatalf("send: %d %v", code, b)
	}
	first := b["notification_id"].(string)
	r.waitState(first, "ada", "email", "queued")
	r.waitState(first, "bob", "in_app", "delivered")
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	r.call("POST", "/v1/notifications", map[string]any{"type": "social", "category": "c", "body": "later", "recipients": []string{"ada"}, "send_at": later}, r.app)
	poll.Until(t, 20*time.Second, func() error {
		var n int
		_ = r.pg.QueryRow(ctx, `SELECT count(*) FROM scheduled_sends WHERE app_id = $1`, r.app).Scan(&n)
		if n != 1 {
			return fmt.Errorf("%d scheduled", n)
		}
		return nil
	})

	// A workflow run that waits, past its throttle: the run holds the payload, the throttle
	// names the user.
	r.call("PUT", "/v1/templates/hello", map[string]any{"type": "social", "category": "c", "content": map[string]any{"in_app": map[string]any{"title": "hi {{.who}}"}}}, r.app)
	if code, b := r.call("PUT", "/v1/workflows/later", map[string]any{"type": "social", "category": "c", "steps": []any{
		map[string]any{"id": "cap", "type": "throttle", "limit": 5, "duration": "1d"},
		map[string]any{"id": "wait", "type": "delay", "duration": "1h"},
		map[string]any{"id": "chat", "type": "in_app", "template_id": "hello"}}}, r.app); code != 201 {
		t.Fatalf("workflow: %d %v", code, b)
	}
	if code, b := r.call("POST", "/v1/workflows/later/trigger", map[string]any{"recipients": []string{"ada", "bob"}, "payload": map[string]any{"who": "Ada Lovelace"}}, r.app); code != 202 {
		t.Fatalf("trigger: %d %v", code, b)
	}
	poll.Until(t, 30*time.Second, func() error {
		var n int
		_ = r.pg.QueryRow(ctx, `SELECT count(*) FROM workflow_throttle WHERE app_id = $1`, r.app).Scan(&n)
		if n != 2 {
			return fmt.Errorf("%d runs past the throttle", n)
		}
		return nil
	})

	code, b = r.call("DELETE", "/v1/users/ada", nil, r.app)
	if code != 202 || b["erasure_id"] == nil {
		t.Fatalf("erase: %d %v", code, b)
	}
	id := b["erasure_id"].(string)
	poll.Until(t, 60*time.Second, func() error {
		code, b := r.call("GET", "/v1/erasures/"+id, nil, r.app)
		if code != 200 || b["state"] != "done" {
			return fmt.Errorf("erasure %d %v", code, b)
		}
		return nil
	})
	if code, _ := r.call("GET", "/v1/erasures/"+id, nil, "other-app"); code != 404 {
		t.Fatalf("another app read the receipt: %d", code)
	}

	// Every store, queried directly.
	for _, q := range []string{
		`SELECT count(*) FROM users WHERE app_id = $1 AND user_id = 'ada'`,
		`SELECT count(*) FROM devices WHERE app_id = $1 AND user_id = 'ada'`,
		`SELECT count(*) FROM preferences WHERE app_id = $1 AND user_id = 'ada'`,
		`SELECT count(*) FROM topic_subscriptions WHERE app_id = $1 AND user_id = 'ada'`,
		`SELECT count(*) FROM scheduled_sends WHERE app_id = $1 AND event::text LIKE '%"ada"%'`,
		`SELECT count(*) FROM erasures WHERE app_id = $1 AND user_id = 'ada'`,
		`SELECT count(*) FROM analytics_events WHERE app = $1 AND user_id = 'ada'`,
		`SELECT count(*) FROM workflow_runs WHERE app_id = $1 AND (user_id = 'ada' OR payload::text LIKE '%Lovelace%' AND user_id <> 'bob')`,
		`SELECT count(*) FROM workflow_throttle WHERE app_id = $1 AND user_id = 'ada'`,
	} {
		var n int
		if err := r.pg.QueryRow(ctx, q, r.app).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s: %d rows (%v)", q, n, err)
		}
	}
	if n := r.inboxRows("ada"); n != 0 {
		t.Errorf("ada has %d inbox rows", n)
	}
	var n int
	if err := r.cass.Query(`SELECT count(*) FROM delivery_status WHERE user_id = 'ada'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("delivery_status rows for ada: %d (%v)", n, err)
	}
	if err := r.cass.Query(`SELECT count(*) FROM delivery_attempt WHERE user_id = 'ada'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("delivery_attempt rows for ada: %d (%v)", n, err)
	}
	// The in-app delivery states have no user index: the erasure found ada's through her inbox.
	if err := r.cass.Query(`SELECT count(*) FROM inbox_delivered_sets WHERE users CONTAINS 'ada' ALLOW FILTERING`).Scan(&n); err != nil || n != 0 {
		t.Errorf("inbox_delivered_sets rows holding ada: %d (%v)", n, err)
	}
	if got := r.deliveredSet(first); !got["bob"] || got["ada"] {
		t.Errorf("in-app deliveries of %s after erasing ada: %v, want bob alone", first, got)
	}
	keys, err := testRedisKeys(r, "*ada*")
	if err != nil || len(keys) != 0 {
		t.Errorf("redis keys naming ada: %v (%v)", keys, err)
	}
	// bob is untouched.
	if n := r.inboxRows("bob"); n != 1 {
		t.Errorf("bob has %d inbox rows", n)
	}
	if err := r.pg.QueryRow(ctx, `SELECT count(*) FROM workflow_runs WHERE app_id = $1 AND user_id = 'bob'`, r.app).Scan(&n); err != nil || n != 1 {
		t.Errorf("bob's workflow runs: %d (%v)", n, err)
	}
	// A later send to ada is suppressed as erased.
	code, b = r.call("POST", "/v1/notifications", map[string]any{"type": "transactional", "category": "otp", "body": "1",
		"recipients": []string{"ada"}, "channels": []string{"in_app"}}, r.app)
	if code != 202 {
		t.Fatalf("send after erasure: %d %v", code, b)
	}
	st := r.waitState(b["notification_id"].(string), "ada", "in_app", "suppressed")
	if _, reason := stateOf(st, "ada", "in_app"); reason != "erased" {
		t.Fatalf("reason %q", reason)
	}
}
