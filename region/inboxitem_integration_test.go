//go:build integration

package region_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/fanout"
)

// The route an app's notification service extension calls when a content-free push brings only
// the notification id.
func TestInboxItemByIDIsTheUsersOwnItemAndNoOneElses(t *testing.T) {
	r := startRegion(t)
	id := r.sendInApp("ada", "Body of ada's item")
	var item map[string]any
	poll.Until(t, 30*time.Second, func() error {
		code, b := r.call("GET", "/v1/users/ada/notifications/"+id, nil, r.app)
		if code != 200 {
			return fmt.Errorf("%d %v", code, b)
		}
		item = b
		return nil
	})
	if item["notification_id"] != id || item["body"] != "Body of ada's item" || item["type"] != "social" || item["category"] != "feed" {
		t.Fatalf("item %v", item)
	}
	// The same item once read: still served, with its read time.
	if code, b := r.call("PATCH", "/v1/notifications/"+id+"/read", map[string]any{"user_id": "ada"}, r.app); code != 200 {
		t.Fatalf("read: %d %v", code, b)
	}
	if code, b := r.call("GET", "/v1/users/ada/notifications/"+id, nil, r.app); code != 200 || b["read_at"] == nil {
		t.Fatalf("read item: %d %v", code, b)
	}

	other := "app-other-" + r.app
	for _, c := range []struct {
		name, path, app string
		want            int
		field           string
	}{
		{"another user of the app", "/v1/users/bob/notifications/" + id, r.app, 404, ""},
		{"the user's id in another case", "/v1/users/ADA/notifications/" + id, r.app, 404, ""},
		{"another app's user of the same id", "/v1/users/ada/notifications/" + id, other, 404, ""},
		{"an id in upper case", "/v1/users/ada/notifications/" + strings.ToUpper(id), r.app, 404, ""},
		{"not a uuid", "/v1/users/ada/notifications/not-a-uuid", r.app, 404, ""},
		{"a uuid no notification has", "/v1/users/ada/notifications/00000000-0000-4000-8000-000000000000", r.app, 404, ""},
		{"NUL in the id", "/v1/users/ada/notifications/%00", r.app, 404, ""},
		{"a huge id", "/v1/users/ada/notifications/" + strings.Repeat("a", 10000), r.app, 404, ""},
		{"user id .", "/v1/users/%2E/notifications/" + id, r.app, 400, "user_id"},
		{"user id with NUL", "/v1/users/a%00/notifications/" + id, r.app, 400, "user_id"},
	} {
		code, b := r.rawCall("GET", c.path, nil, c.app)
		if code != c.want {
			t.Errorf("%s: %d %v, want %d", c.name, code, b, c.want)
			continue
		}
		if e, _ := b["error"].(map[string]any); e == nil || (c.field != "" && e["field"] != c.field) {
			t.Errorf("%s: error body %v, want field %q", c.name, b, c.field)
		}
	}
}

func TestInboxItemByIDServesATopicFeedItemToEarlierSubscribersOnly(t *testing.T) {
	r := startRegion(t)
	r.call("PUT", "/v1/topics/big/subscribers/u1", nil, r.app)
	disc, err := discovery.Open(r.cfg.Discovery)
	if err != nil {
		t.Fatal(err)
	}
	if err := disc.Put(t.Context(), region.ThresholdKey(r.cfg.Name), []byte("0")); err != nil {
		t.Fatal(err)
	}
	// Sends until one goes through the feed (the threshold change reaches fan-out by a watch).
	var feedID string
	poll.Until(t, 30*time.Second, func() error {
		code, b := r.call("POST", "/v1/notifications", map[string]any{"type": "social", "category": "news", "title": "Big news", "body": "For all",
			"topic": "big", "channels": []string{"in_app"}}, r.app)
		if code != 202 {
			return fmt.Errorf("topic send: %d %v", code, b)
		}
		id := b["notification_id"].(string)
		var path string
		poll.Until(t, 30*time.Second, func() error {
			_, st := r.call("GET", "/v1/notifications/"+id+"/status", nil, r.app)
			n, _ := st["notification"].(map[string]any)
			if n == nil || n["fanout_done_at"] == nil {
				return fmt.Errorf("fan-out not done: %v", st)
			}
			path, _ = n["fanout_path"].(string)
			return nil
		})
		if path != fanout.PathTopicRead {
			return fmt.Errorf("fan-out path %q", path)
		}
		feedID = id
		return nil
	})
	code, b := r.call("GET", "/v1/users/u1/notifications/"+feedID, nil, r.app)
	if code != 200 || b["topic"] != "big" || b["body"] != "For all" {
		t.Fatalf("subscriber: %d %v", code, b)
	}
	r.call("PUT", "/v1/topics/big/subscribers/late", nil, r.app)
	if code, b := r.call("GET", "/v1/users/late/notifications/"+feedID, nil, r.app); code != 404 {
		t.Fatalf("a later subscriber gets the earlier feed item: %d %v", code, b)
	}
	if code, b := r.call("GET", "/v1/users/stranger/notifications/"+feedID, nil, r.app); code != 404 {
		t.Fatalf("a non-subscriber gets the feed item: %d %v", code, b)
	}
}
