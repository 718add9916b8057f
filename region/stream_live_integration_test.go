//go:build integration

package region_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/region"
)

// streamEvent decodes a stream event: an item or an unread count.
type streamEvent struct {
	NotificationID string `json:"notification_id"`
	UserID         string `json:"user_id"`
	Topic          string `json:"topic"`
	UnreadCount    *int   `json:"unread_count"`
}

func decodeEvent(t *testing.T, ev sseEvent) streamEvent {
	t.Helper()
	var e streamEvent
	if err := json.Unmarshal([]byte(ev.data), &e); err != nil {
		t.Fatalf("event %+v: %v", ev, err)
	}
	return e
}

// nextOf returns the next event of the kind, skipping the others.
func nextOf(t *testing.T, events <-chan sseEvent, kind string, within time.Duration) (sseEvent, streamEvent) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ev := next(t, events, time.Until(deadline))
		if ev.event == kind {
			return ev, decodeEvent(t, ev)
		}
	}
}

// countReaches waits for an unread_count event with the value n.
func countReaches(t *testing.T, events <-chan sseEvent, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := -1
	for time.Now().Before(deadline) {
		_, e := nextOf(t, events, "unread_count", time.Until(deadline))
		if last = *e.UnreadCount; last == n {
			return
		}
	}
	t.Fatalf("unread count never reached %d (last %d)", n, last)
}

func (r *running) sendTopic(topic, title string) string {
	r.t.Helper()
	code, b := r.call("POST", "/v1/notifications", map[string]any{"type": "marketing", "category": "news", "title": title, "body": "For all",
		"topic": topic, "channels": []string{"in_app"}}, r.app)
	if code != 202 {
		r.t.Fatalf("topic send: %d %v", code, b)
	}
	return b["notification_id"].(string)
}

func TestStreamDeliversLargeTopicItemsLiveAndResumesWithThemOnce(t *testing.T) {
	r := startRegion(t)
	r.call("PUT", "/v1/topics/big/subscribers/u1", nil, r.app)
	disc, _ := discovery.Open(r.cfg.Discovery)
	if err := disc.Put(t.Context(), region.ThresholdKey(r.cfg.Name), []byte("0")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // fan-out has read the threshold: every topic is fanned out on read

	u1, close1 := openStreamAll(t, r, "u1", "")
	dan, closeDan := openStreamAll(t, r, "dan", "") // not subscribed yet
	defer closeDan()
	countReaches(t, u1, 0, 5*time.Second)
	countReaches(t, dan, 0, 5*time.Second)

	// A feed item reaches the subscriber's open stream as its own items do, and its count.
	sent := time.Now()
	t1 := r.sendTopic("big", "first")
	ev, e := nextOf(t, u1, "notification", 5*time.Second)
	took := time.Since(sent)
	if e.NotificationID != t1 || e.Topic != "big" || e.UserID != "u1" || ev.id == "" {
		t.Fatalf("feed item on the stream: %+v", ev)
	}
	t.Logf("large-topic item received %s after the send", took.Round(time.Millisecond))
	if took > time.Second {
		t.Fatalf("the large-topic item took %s, over a second", took)
	}
	countReaches(t, u1, 1, 3*time.Second)
	lastID := ev.id

	// dan joins the topic while his stream is open: the subscription itself makes the stream
	// follow the topic, at its next recount (at most a second later), with no item of his own.
	if code, _ := r.call("PUT", "/v1/topics/big/subscribers/dan", nil, r.app); code != 201 {
		t.Fatalf("subscribe dan: %d", code)
	}
	time.Sleep(2 * time.Second)

	// u1 goes away; a feed item and an item of its own arrive meanwhile.
	close1()
	t2 := r.sendTopic("big", "second")
	p2 := r.sendInApp("u1", "own")
	poll.Until(t, 20*time.Second, func() error {
		if items, _ := r.page("u1", "", 20, false); len(items) != 3 {
			return fmt.Errorf("%d items", len(items))
		}
		return nil
	})
	if _, e := nextOf(t, dan, "notification", 5*time.Second); e.NotificationID != t2 || e.Topic != "big" {
		t.Fatalf("dan after joining: %+v (t1 %s was before he joined)", e, t1)
	}

	// The reconnect gets exactly the two it missed, in the inbox order, then its count.
	u1, close1 = openStreamAll(t, r, "u1", lastID)
	defer close1()
	var got []string
	for len(got) < 2 {
		_, e := nextOf(t, u1, "notification", 5*time.Second)
		got = append(got, e.NotificationID)
	}
	if got[0] != t2 || got[1] != p2 {
		t.Fatalf("resumed with %v, want [%s %s]", got, t2, p2)
	}
	countReaches(t, u1, 3, 3*time.Second)
	select {
	case ev := <-u1:
		if ev.event == "notification" {
			t.Fatalf("a repeat after the catch-up: %+v", ev)
		}
	case <-time.After(500 * time.Millisecond):
	}
}

func TestStreamCountFollowsReadsMadeElsewhere(t *testing.T) {
	r := startRegion(t)
	ids := []string{r.sendInApp("cara", "one"), r.sendInApp("cara", "two"), r.sendInApp("cara", "three")}
	poll.Until(t, 20*time.Second, func() error {
		if n := r.inboxRows("cara"); n != 3 {
			return fmt.Errorf("%d rows", n)
		}
		return nil
	})
	events, closeStream := openStreamAll(t, r, "cara", "")
	defer closeStream()
	countReaches(t, events, 3, 5*time.Second)
	time.Sleep(1100 * time.Millisecond) // past the debounce of the count at open

	// Another device reads one: the open stream's count drops at once, not with the next item.
	start := time.Now()
	if code, b := r.call("PATCH", "/v1/notifications/"+ids[0]+"/read", map[string]any{"user_id": "cara"}, r.app); code != 200 {
		t.Fatalf("read: %d %v", code, b)
	}
	countReaches(t, events, 2, 2*time.Second)
	took := time.Since(start)
	t.Logf("count after a read elsewhere: %s after the PATCH was sent", took.Round(time.Millisecond))
	if took > time.Second {
		t.Fatalf("the count took %s after the read", took)
	}
	// read-all right after: debounced, the count comes within the second.
	start = time.Now()
	if code, b := r.call("POST", "/v1/notifications/read-all", map[string]any{"user_id": "cara"}, r.app); code != 200 {
		t.Fatalf("read-all: %d %v", code, b)
	}
	countReaches(t, events, 0, 3*time.Second)
	t.Logf("count after read-all: %s", time.Since(start).Round(time.Millisecond))
	// Nothing else: reads are not items.
	select {
	case ev := <-events:
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(500 * time.Millisecond):
	}

	// At shutdown the region ends the stream (it holds the connection, not the HTTP server).
	r.stop()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the stream stayed open after the region stopped")
		}
	}
}
