//go:build integration

package region_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region"
)

func at(t *testing.T, item map[string]any) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, item["created_at"].(string))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (r *running) sendInApp(user, body string) string {
	r.t.Helper()
	code, b := r.call("POST", "/v1/notifications", map[string]any{"type": "social", "category": "feed", "body": body,
		"recipients": []string{user}, "channels": []string{"in_app"}}, r.app)
	if code != 202 {
		r.t.Fatalf("send: %d %v", code, b)
	}
	return b["notification_id"].(string)
}

func (r *running) page(user, cursor string, limit int, unread bool) ([]map[string]any, string) {
	r.t.Helper()
	q := url.Values{"limit": {fmt.Sprint(limit)}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if unread {
		q.Set("unread_only", "true")
	}
	code, b := r.call("GET", "/v1/users/"+user+"/notifications?"+q.Encode(), nil, r.app)
	if code != 200 {
		r.t.Fatalf("page: %d %v", code, b)
	}
	var items []map[string]any
	for _, it := range b["items"].([]any) {
		items = append(items, it.(map[string]any))
	}
	next, _ := b["next_cursor"].(string)
	return items, next
}

func TestInboxPagesEachItemExactlyOnceInOrderWhileNewOnesArrive(t *testing.T) {
	r := startRegion(t)
	const total = 250
	sent := map[string]bool{}
	for i := 0; i < total; i++ {
		sent[r.sendInApp("ada", fmt.Sprint("item ", i))] = true
	}
	poll.Until(t, 60*time.Second, func() error {
		if n := r.inboxRows("ada"); n != total {
			return fmt.Errorf("%d of %d rows", n, total)
		}
		return nil
	})
	// New notifications keep arriving while the client pages.
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load() && i < 50; i++ {
			body := fmt.Sprintf(`{"type":"social","category":"feed","body":"late %d","recipients":["ada"],"channels":["in_app"]}`, i)
			req, _ := http.NewRequest("POST", r.base+"/v1/notifications", strings.NewReader(body))
			req.Header.Set("X-Herald-App", r.app)
			req.Header.Set("Content-Type", "application/json")
			if resp, err := testenv.RegionClient(t).Do(req); err == nil {
				resp.Body.Close()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	seen := map[string]bool{}
	var prev map[string]any
	cursor := ""
	pages := 0
	for {
		items, next := r.page("ada", cursor, 20, false)
		pages++
		for _, it := range items {
			id := it["notification_id"].(string)
			if seen[id] {
				t.Fatalf("item %s returned twice", id)
			}
			seen[id] = true
			if prev != nil && at(t, it).After(at(t, prev)) {
				t.Fatalf("not newest first: %v after %v", it["created_at"], prev["created_at"])
			}
			prev = it
		}
		if next == "" {
			break
		}
		cursor = next
	}
	stop.Store(true)
	wg.Wait()
	for id := range sent {
		if !seen[id] {
			t.Fatalf("item %s sent before paging began was never returned", id)
		}
	}
	t.Logf("%d pages, %d items (%d sent before paging began, the rest while it ran)", pages, len(seen), total)

	// Over 100 is refused, not clamped; a forged cursor is refused.
	if code, b := r.call("GET", "/v1/users/ada/notifications?limit=101", nil, r.app); code != 400 || b["error"].(map[string]any)["field"] != "limit" {
		t.Fatalf("limit 101: %d %v", code, b)
	}
	if code, _ := r.call("GET", "/v1/users/ada/notifications?cursor=abc", nil, r.app); code != 400 {
		t.Fatalf("bad cursor: %d", code)
	}
}

func TestUnreadOnlyReadAndReadAll(t *testing.T) {
	r := startRegion(t)
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, r.sendInApp("bob", fmt.Sprint("n", i)))
	}
	poll.Until(t, 30*time.Second, func() error {
		if n := r.inboxRows("bob"); n != 5 {
			return fmt.Errorf("%d rows", n)
		}
		return nil
	})
	if code, b := r.call("PATCH", "/v1/notifications/"+ids[1]+"/read", map[string]any{"user_id": "bob"}, r.app); code != 200 {
		t.Fatalf("read: %d %v", code, b)
	}
	// Another user cannot mark bob's notification.
	if code, _ := r.call("PATCH", "/v1/notifications/"+ids[1]+"/read", map[string]any{"user_id": "eve"}, r.app); code != 404 {
		t.Fatalf("eve marked bob's item: %d", code)
	}
	unread, _ := r.page("bob", "", 20, true)
	if len(unread) != 4 {
		t.Fatalf("unread_only gave %d items, want 4", len(unread))
	}
	for _, it := range unread {
		if it["notification_id"] == ids[1] {
			t.Fatal("a read item is listed as unread")
		}
	}
	if code, b := r.call("GET", "/v1/users/bob/notifications/unread-count", nil, r.app); code != 200 || b["unread_count"].(float64) != 4 {
		t.Fatalf("unread count: %d %v", code, b)
	}
	if code, b := r.call("POST", "/v1/notifications/read-all", map[string]any{"user_id": "bob"}, r.app); code != 200 || b["marked"].(float64) != 4 {
		t.Fatalf("read-all: %d %v", code, b)
	}
	if code, b := r.call("GET", "/v1/users/bob/notifications/unread-count", nil, r.app); code != 200 || b["unread_count"].(float64) != 0 {
		t.Fatalf("unread count after read-all: %d %v", code, b)
	}
	all, _ := r.page("bob", "", 20, false)
	if len(all) != 5 || all[0]["read_at"] == nil {
		t.Fatalf("after read-all: %d items, first %v", len(all), all[0])
	}
}

func TestInboxMergesLargeTopicFeedsWithoutDuplicates(t *testing.T) {
	r := startRegion(t)
	for _, u := range []string{"u1", "u2", "u3"} {
		r.call("PUT", "/v1/topics/big/subscribers/"+u, nil, r.app)
	}
	r.setTopicThreshold(1)
	own := r.sendInApp("u1", "personal")
	code, b := r.call("POST", "/v1/notifications", map[string]any{"type": "social", "category": "news", "title": "Big news", "body": "For all",
		"topic": "big", "channels": []string{"in_app"}}, r.app)
	if code != 202 {
		t.Fatalf("topic send: %d %v", code, b)
	}
	feedID := b["notification_id"].(string)
	var items []map[string]any
	poll.Until(t, 30*time.Second, func() error {
		items, _ = r.page("u1", "", 20, false)
		if len(items) != 2 {
			return fmt.Errorf("%d items", len(items))
		}
		return nil
	})
	if items[0]["notification_id"] != feedID || items[0]["topic"] != "big" || items[1]["notification_id"] != own {
		t.Fatalf("merged page %v", items)
	}
	// Reading the feed item copies it into u1's own partition: still listed once, now read.
	if code, b := r.call("PATCH", "/v1/notifications/"+feedID+"/read", map[string]any{"user_id": "u1"}, r.app); code != 200 {
		t.Fatalf("read feed item: %d %v", code, b)
	}
	items, _ = r.page("u1", "", 20, false)
	if len(items) != 2 || items[0]["read_at"] == nil {
		t.Fatalf("after reading the feed item: %v", items)
	}
	unread, _ := r.page("u1", "", 20, true)
	if len(unread) != 1 || unread[0]["notification_id"] != own {
		t.Fatalf("unread after reading the feed item: %v", unread)
	}
	// u2 still sees it unread; a user who subscribed later does not see it at all.
	if items, _ := r.page("u2", "", 20, true); len(items) != 1 || items[0]["notification_id"] != feedID {
		t.Fatalf("u2: %v", items)
	}
	r.call("PUT", "/v1/topics/big/subscribers/late", nil, r.app)
	if items, _ := r.page("late", "", 20, false); len(items) != 0 {
		t.Fatalf("a later subscriber sees older feed items: %v", items)
	}
}

func TestPreferencesRoundTripAndInvalidFieldsAreNamed(t *testing.T) {
	r := startRegion(t)
	doc := map[string]any{"channels": map[string]bool{"sms": false}, "categories": map[string]any{"promo": map[string]bool{"email": false}},
		"quiet_hours": map[string]string{"start": "22:00", "end": "07:00"}, "timezone": "Europe/Paris", "channel_order": []string{"push", "email"}}
	if code, b := r.call("PUT", "/v1/users/ada/preferences", doc, r.app); code != 200 {
		t.Fatalf("put: %d %v", code, b)
	}
	code, b := r.call("GET", "/v1/users/ada/preferences", nil, r.app)
	if code != 200 || b["timezone"] != "Europe/Paris" || b["quiet_hours"].(map[string]any)["end"] != "07:00" {
		t.Fatalf("get: %d %v", code, b)
	}
	if code, b := r.call("GET", "/v1/users/nobody/preferences", nil, r.app); code != 200 || b["hard_stop"] != false {
		t.Fatalf("defaults: %d %v", code, b)
	}
	bad := []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"channels": map[string]bool{"fax": true}}, "channels.fax"},
		{map[string]any{"timezone": "Mars/Olympus"}, "timezone"},
		{map[string]any{"quiet_hours": map[string]string{"start": "25:00", "end": "07:00"}}, "quiet_hours.start"},
		{map[string]any{"channel_order": []string{"push", "push"}}, "channel_order[1]"},
		{map[string]any{"categories": map[string]any{"promo": map[string]bool{"pigeon": false}}}, "categories.promo.pigeon"},
		{map[string]any{"colour": "red"}, "colour"},
	}
	for _, tt := range bad {
		code, b := r.call("PUT", "/v1/users/ada/preferences", tt.body, r.app)
		if code != 400 || b["error"].(map[string]any)["field"] != tt.field {
			t.Errorf("%v: %d %v, want 400 on %s", tt.body, code, b, tt.field)
		}
	}
	// The stored preferences drive the next send: SMS off means suppressed.
	r.call("PUT", "/v1/users/ada", map[string]any{"phone": "+33612345678"}, r.app)
	code, b = r.call("POST", "/v1/notifications", map[string]any{"type": "transactional", "category": "otp", "body": "123456",
		"recipients": []string{"ada"}, "channels": []string{"sms"}}, r.app)
	if code != 202 {
		t.Fatalf("send: %d %v", code, b)
	}
	st := r.waitState(b["notification_id"].(string), "ada", "sms", "suppressed")
	if _, reason := stateOf(st, "ada", "sms"); reason != "channel_disabled" {
		t.Fatalf("reason %q", reason)
	}
}

func TestOptOutAppliesToTheVeryNextSendThroughEveryCache(t *testing.T) {
	// The API runs here and fan-out in another process, so the fan-out's in-process cache
	// learns of the opt-out only through the Redis eviction channel.
	r := startRegion(t, func(c *region.Config) { c.Roles = []string{region.RoleAPI, region.RoleScheduler} })
	startChild(t, r.cfg, "fanout.log")
	r.call("PUT", "/v1/users/ada", map[string]any{"email": "ada@example.com"}, r.app)
	send := func() string {
		code, b := r.call("POST", "/v1/notifications", map[string]any{"type": "social", "category": "promo", "body": "Sale",
			"recipients": []string{"ada"}, "channels": []string{"email"}}, r.app)
		if code != 202 {
			t.Fatalf("send: %d %v", code, b)
		}
		return b["notification_id"].(string)
	}
	// Warm every cache with the default preferences (email on).
	r.waitState(send(), "ada", "email", "queued")
	r.waitState(send(), "ada", "email", "queued")

	start := time.Now()
	if code, b := r.call("PUT", "/v1/users/ada/preferences", map[string]any{"categories": map[string]any{"promo": map[string]bool{"email": false}}}, r.app); code != 200 {
		t.Fatalf("opt out: %d %v", code, b)
	}
	window := time.Since(start)
	st := r.waitState(send(), "ada", "email", "suppressed")
	if _, reason := stateOf(st, "ada", "email"); reason != "category_disabled" {
		t.Fatalf("reason %q", reason)
	}
	t.Logf("opt-out applied to the next send; invalidation window (PUT to every cache evicted) %s", window.Round(100*time.Microsecond))
	if window > time.Second {
		t.Fatalf("invalidation took %s, over the one-second goal", window)
	}
	// The hard stop is read outside every cache.
	if _, err := r.pg.Exec(t.Context(), `UPDATE preferences SET hard_stop = true WHERE app_id = $1 AND user_id = 'ada'`, r.app); err != nil {
		t.Fatal(err)
	}
	code, b := r.call("POST", "/v1/notifications", map[string]any{"type": "transactional", "category": "otp", "body": "1",
		"recipients": []string{"ada"}, "channels": []string{"in_app"}}, r.app)
	if code != 202 {
		t.Fatalf("send: %d %v", code, b)
	}
	st = r.waitState(b["notification_id"].(string), "ada", "in_app", "suppressed")
	if _, reason := stateOf(st, "ada", "in_app"); reason != "hard_stop" {
		t.Fatalf("hard stop reason %q", reason)
	}
}

// A large topic's subscribers are read past the preferences cache (each once per send): their
// preferences and hard stops still apply, and the cache is not filled with them.
func TestLargeTopicAppliesPreferencesWithoutFillingTheCache(t *testing.T) {
	r := startRegion(t)
	for _, u := range []string{"optout", "stopped", "plain"} {
		r.call("PUT", "/v1/users/"+u, map[string]any{"email": u + "@example.com"}, r.app)
		r.call("PUT", "/v1/topics/big/subscribers/"+u, nil, r.app)
	}
	if code, b := r.call("PUT", "/v1/users/optout/preferences", map[string]any{"categories": map[string]any{"news": map[string]bool{"email": false}}}, r.app); code != 200 {
		t.Fatalf("opt out: %d %v", code, b)
	}
	if _, err := r.pg.Exec(t.Context(), `INSERT INTO preferences (app_id, user_id, prefs, hard_stop) VALUES ($1, 'stopped', '{}', true)`, r.app); err != nil {
		t.Fatal(err)
	}
	r.setTopicThreshold(1)
	code, b := r.call("POST", "/v1/notifications", map[string]any{"type": "social", "category": "news", "body": "For all",
		"topic": "big", "channels": []string{"email"}}, r.app)
	if code != 202 {
		t.Fatalf("topic send: %d %v", code, b)
	}
	id := b["notification_id"].(string)
	r.waitState(id, "plain", "email", "queued")
	for user, reason := range map[string]string{"optout": "category_disabled", "stopped": "hard_stop"} {
		st := r.waitState(id, user, "email", "suppressed")
		if _, got := stateOf(st, user, "email"); got != reason {
			t.Fatalf("%s: reason %q, want %q", user, got, reason)
		}
	}
	keys, err := testRedisKeys(r, "prefs:*")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Fatalf("the topic send filled the preferences cache: %v", keys)
	}
}
