package inbox

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func item(id string, at time.Duration) Item {
	return Item{NotificationID: id, CreatedAt: t0.Add(at)}
}

func TestPositionRoundTripsAndRefusesForgedIDs(t *testing.T) {
	p := NewPosition(t0)
	for i := range 40 { // more than it names: the floor rises
		p.Add(item(fmt.Sprintf("n%d", i), time.Duration(i)*time.Second))
	}
	q, err := ParsePosition(p.String())
	if err != nil {
		t.Fatal(err)
	}
	if q.String() != p.String() || q.floor != p.floor || !slices.Equal(q.sent, p.sent) {
		t.Fatalf("round trip: %+v, want %+v", q, p)
	}
	if len(p.String()) > 200 {
		t.Fatalf("id of %d characters", len(p.String()))
	}
	legacy := Cursor{At: t0.Add(time.Minute), ID: "x"}.Encode()
	tests := []struct {
		id      string
		ok      bool
		floorAt time.Time
	}{
		{p.String(), true, p.Floor()},
		{NewPosition(t0).String(), true, t0},
		{legacy, true, t0.Add(time.Minute)}, // streams sent plain cursors before positions
		{"", false, time.Time{}},
		{"nonsense", false, time.Time{}},
		{p.String()[:len(p.String())-3], false, time.Time{}}, // cut short
		{p.String() + "AAAA", false, time.Time{}},            // trailing bytes
		{"AQ", false, time.Time{}},                           // a version and nothing
	}
	for _, tc := range tests {
		got, err := ParsePosition(tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("ParsePosition(%q): err %v, want ok=%v", tc.id, err, tc.ok)
			continue
		}
		if tc.ok && !got.Floor().Equal(tc.floorAt) {
			t.Errorf("ParsePosition(%q): floor %s, want %s", tc.id, got.Floor(), tc.floorAt)
		}
	}
}

func TestPositionFloorRisesByWindowAndCountButNeverPastANamedItem(t *testing.T) {
	tests := []struct {
		name      string
		at        []time.Duration // items sent, in this order
		wantFloor time.Duration
		wantNamed int
	}{
		{"nothing sent", nil, 0, 0},
		{"a few, in order", []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}, 0, 3},
		{"a few, out of order", []time.Duration{3 * time.Second, time.Second, 2 * time.Second}, 0, 3},
		{"older than the window below the newest", []time.Duration{time.Second, 10 * time.Minute}, time.Second, 1},
		{"an item at or below the floor is not named", []time.Duration{time.Second, 10 * time.Minute, 500 * time.Millisecond}, time.Second, 1},
		{"an item falling out of the window at once", []time.Duration{time.Second, 10 * time.Minute, 2 * time.Second}, 2 * time.Second, 1},
		{"before the stream opened", []time.Duration{-time.Second}, 0, 0},
		{"a burst keeps the newest", burst(20), 4 * time.Millisecond, positionItems},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPosition(t0)
			for i, at := range tc.at {
				p.Add(item(fmt.Sprintf("n%d", i), at))
			}
			if want := t0.Add(tc.wantFloor); !p.Floor().Equal(want) {
				t.Errorf("floor %s, want %s", p.Floor(), want)
			}
			if len(p.sent) != tc.wantNamed {
				t.Errorf("%d named, want %d", len(p.sent), tc.wantNamed)
			}
			for i, at := range tc.at {
				it := item(fmt.Sprintf("n%d", i), at)
				if p.Above(it) != p.Has(it) {
					t.Errorf("item at %s: above the floor %v but named %v", at, p.Above(it), p.Has(it))
				}
			}
		})
	}
}

func burst(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i+1) * time.Millisecond
	}
	return out
}

func TestSentAdmitsEachItemOnce(t *testing.T) {
	s := Sent{Position: NewPosition(t0)}
	late := item("deferred", -8*time.Hour)
	// There when the stream opened, newest first; "new" is above the floor: not the client's yet.
	page := []Item{item("new", 3*time.Second), item("in-the-inbox", -time.Second)}
	for i := range 40 {
		page = append(page, item(fmt.Sprintf("old-%d", i), -time.Duration(i+2)*time.Second))
	}
	s.Seen(page)
	steps := []struct {
		it   Item
		want bool
	}{
		{item("in-the-inbox", -time.Second), false}, // announced after the stream opened
		{item("old-0", -2*time.Second), false},
		{item("old-39", -41*time.Second), true}, // past what is remembered: sent
		{item("new", 3*time.Second), true},
		{item("a", time.Second), true},
		{item("a", time.Second), false}, // live after the catch-up
		{late, true},                    // below the floor: sent live
		{late, false},                   // and not twice on this connection
		{item("b", 2*time.Second), true},
	}
	for i, st := range steps {
		if got := s.Admit(st.it); got != st.want {
			t.Fatalf("step %d (%s): admitted %v, want %v", i, st.it.NotificationID, got, st.want)
		}
	}
}

// TestStreamsResumingFromTheirPositionGetEveryItemOnce plays a user's stream reconnecting again
// and again while items are written out of their inbox order, as tiers lagging behind each
// other and deferred deliveries write them, and checks what the client received: no item
// twice, and every item written up to two minutes late received, connected or not when it was
// written.
func TestStreamsResumingFromTheirPositionGetEveryItemOnce(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 1))
		type written struct {
			Item
			at time.Time // when written (and announced)
		}
		var store []written
		for i := range 300 {
			created := t0.Add(time.Duration(i)*20*time.Second + time.Duration(rng.IntN(1000))*time.Millisecond)
			late := time.Duration(0)
			switch r := rng.IntN(100); {
			case r < 25:
				late = time.Duration(rng.IntN(120_000)) * time.Millisecond // a lagging tier
			case r < 30:
				late = time.Duration(1+rng.IntN(8)) * time.Hour // deferred by quiet hours
			}
			store = append(store, written{Item{NotificationID: fmt.Sprintf("n%03d", i), CreatedAt: created}, created.Add(late)})
		}
		sort.Slice(store, func(i, j int) bool { return store[i].at.Before(store[j].at) })

		got := map[string]int{}
		lastID := ""
		opened := t0.Add(-time.Minute)
		firstOpen := opened
		end := t0.Add(300 * 20 * time.Second)
		for now := opened; ; {
			connected := now.Add(time.Duration(1+rng.IntN(20)) * time.Minute)
			if connected.After(end) {
				connected = end.Add(24 * time.Hour) // the last connection stays for every deferred item
			}
			// Open: the position from the last id received, the catch-up, then live.
			var s Sent
			if lastID == "" {
				s = Sent{Position: NewPosition(now)}
			} else {
				p, err := ParsePosition(lastID)
				if err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				s = Sent{Position: p}
				var missed []Item
				for _, w := range store {
					if !w.at.After(now) && w.CreatedAt.After(s.Floor()) {
						missed = append(missed, w.Item)
					}
				}
				sort.Slice(missed, func(i, j int) bool { return before(missed[j], missed[i]) })
				for _, it := range missed {
					if s.Admit(it) {
						got[it.NotificationID]++ // the id sent with it is superseded by the one at open
					}
				}
			}
			lastID = s.String() // the id sent at open
			for _, w := range store {
				// Live: what is written while connected, and what was written in the second
				// before the subscription took (announced to it and also in the catch-up).
				if w.at.After(now.Add(-time.Second)) && !w.at.After(connected) && s.Admit(w.Item) {
					got[w.NotificationID]++
					lastID = s.String()
				}
			}
			if connected.After(end) {
				break
			}
			now = connected.Add(time.Duration(rng.IntN(15)) * time.Minute) // disconnected
		}
		for _, w := range store {
			if got[w.NotificationID] > 1 {
				t.Fatalf("seed %d: %s received %d times", seed, w.NotificationID, got[w.NotificationID])
			}
			if w.at.Sub(w.CreatedAt) <= 2*time.Minute && w.CreatedAt.After(firstOpen) && got[w.NotificationID] == 0 {
				t.Fatalf("seed %d: %s (created %s, written %s late) never received", seed, w.NotificationID, w.CreatedAt.Sub(t0), w.at.Sub(w.CreatedAt))
			}
		}
	}
}

func TestPositionIDIsOpaqueText(t *testing.T) {
	p := NewPosition(t0)
	p.Add(item("a", time.Second))
	if s := p.String(); strings.ContainsAny(s, "\r\n: ") {
		t.Fatalf("id %q cannot go on an SSE id line", s)
	}
}
