//go:build integration

package region_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/platform/testenv"
)

type sseEvent struct {
	id, event, data string
}

// openStream connects to a user's inbox stream and returns its "notification" events as they
// arrive (openStreamAll returns every event, unread counts included).
func openStream(t *testing.T, r *running, user, lastID string) (<-chan sseEvent, func()) {
	t.Helper()
	all, cancel := openStreamAll(t, r, user, lastID)
	out := make(chan sseEvent, 100)
	go func() {
		defer close(out)
		for ev := range all {
			if ev.event == "notification" {
				out <- ev
			}
		}
	}()
	return out, cancel
}

func openStreamAll(t *testing.T, r *running, user, lastID string) (<-chan sseEvent, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", r.base+"/v1/users/"+user+"/notifications/stream", nil)
	req.Header.Set("X-Herald-App", r.app)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := testenv.RegionClient(t).Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		cancel()
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan sseEvent, 100)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.data != "" {
					out <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	return out, cancel
}

func next(t *testing.T, events <-chan sseEvent, within time.Duration) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("stream closed")
		}
		return ev
	case <-time.After(within):
		t.Fatalf("no event within %s", within)
	}
	return sseEvent{}
}

func TestStreamDeliversNewItemsLiveAndResumesFromLastEventIDWithoutGapsOrRepeats(t *testing.T) {
	r := startRegion(t)
	events, closeStream := openStream(t, r, "ada", "")
	time.Sleep(200 * time.Millisecond) // the subscription is in place
	sent := time.Now()
	id1 := r.sendInApp("ada", "first")
	ev := next(t, events, 5*time.Second)
	took := time.Since(sent)
	var item map[string]any
	if err := json.Unmarshal([]byte(ev.data), &item); err != nil || item["notification_id"] != id1 || ev.event != "notification" || ev.id == "" {
		t.Fatalf("event %+v (%v)", ev, err)
	}
	t.Logf("live item received %s after the send", took.Round(time.Millisecond))
	if took > time.Second {
		t.Fatalf("live item took %s, over a second", took)
	}
	closeStream()

	// While disconnected, two more arrive; the reconnect gets exactly those, in order.
	id2 := r.sendInApp("ada", "second")
	id3 := r.sendInApp("ada", "third")
	poll.Until(t, 20*time.Second, func() error {
		if n := r.inboxRows("ada"); n != 3 {
			return errNotYet
		}
		return nil
	})
	events, closeStream = openStream(t, r, "ada", ev.id)
	defer closeStream()
	var got []string
	var lastID string
	for len(got) < 2 {
		ev := next(t, events, 5*time.Second)
		var it map[string]any
		_ = json.Unmarshal([]byte(ev.data), &it)
		got = append(got, it["notification_id"].(string))
		lastID = ev.id
	}
	if got[0] != id2 || got[1] != id3 {
		t.Fatalf("resumed with %v, want [%s %s]", got, id2, id3)
	}
	// Nothing more (no repeat of the first), until a new one arrives.
	select {
	case ev := <-events:
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(500 * time.Millisecond):
	}
	id4 := r.sendInApp("ada", "fourth")
	ev = next(t, events, 5*time.Second)
	if !strings.Contains(ev.data, id4) || ev.id == lastID {
		t.Fatalf("live after resume: %+v", ev)
	}
	// A forged Last-Event-ID is refused.
	req, _ := http.NewRequest("GET", r.base+"/v1/users/ada/notifications/stream", nil)
	req.Header.Set("X-Herald-App", r.app)
	req.Header.Set("Last-Event-ID", "nonsense")
	if resp, err := testenv.RegionClient(t).Do(req); err != nil || resp.StatusCode != 400 {
		t.Fatalf("forged id: %v %v", resp, err)
	}
}

type notYet struct{}

func (notYet) Error() string { return "not yet" }

var errNotYet error = notYet{}

func TestStreamSendsTheUnreadCountAtOpenAndAfterNewItems(t *testing.T) {
	r := startRegion(t)
	r.sendInApp("bea", "before")
	poll.Until(t, 20*time.Second, func() error {
		if r.inboxRows("bea") != 1 {
			return errNotYet
		}
		return nil
	})
	events, closeStream := openStreamAll(t, r, "bea", "")
	defer closeStream()
	count := func(ev sseEvent) int {
		var c struct {
			N int `json:"unread_count"`
		}
		if ev.event != "unread_count" || json.Unmarshal([]byte(ev.data), &c) != nil || ev.id != "" {
			t.Fatalf("want an unread_count event without an id, got %+v", ev)
		}
		return c.N
	}
	if n := count(next(t, events, 5*time.Second)); n != 1 {
		t.Fatalf("unread at open: %d, want 1", n)
	}
	// Three items in a burst: three notification events, then counts that reach 4 without
	// one count per item.
	for i := 0; i < 3; i++ {
		r.sendInApp("bea", "burst")
	}
	items, counts, last := 0, 0, 0
	deadline := time.Now().Add(10 * time.Second)
	for (items < 3 || last != 4) && time.Now().Before(deadline) {
		ev := next(t, events, 5*time.Second)
		if ev.event == "notification" {
			items++
			continue
		}
		counts++
		last = count(ev)
	}
	if items != 3 || last != 4 {
		t.Fatalf("after the burst: %d items, last count %d; want 3 and 4", items, last)
	}
	if counts > 3 {
		t.Fatalf("%d counts for a burst of 3 items: the count should be debounced", counts)
	}
}
