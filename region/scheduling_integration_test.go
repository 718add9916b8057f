//go:build integration

package region_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/region/prefs"
)

func TestSendAtFiresAfterARestartOfTheRegion(t *testing.T) {
	r := startRegion(t)
	at := time.Now().Add(4 * time.Second).UTC().Truncate(time.Second)
	code, b := r.call("POST", "/v1/notifications", map[string]any{"type": "social", "category": "reminder", "body": "Meeting",
		"recipients": []string{"ada"}, "channels": []string{"in_app"}, "send_at": at.Format(time.RFC3339)}, r.app)
	if code != 202 {
		t.Fatalf("send: %d %v", code, b)
	}
	id := b["notification_id"].(string)
	poll.Until(t, 20*time.Second, func() error {
		var n int
		if err := r.pg.QueryRow(t.Context(), `SELECT count(*) FROM scheduled_sends WHERE notification_id = $1`, id).Scan(&n); err != nil || n != 1 {
			return fmt.Errorf("scheduled rows %d, err %v", n, err)
		}
		return nil
	})
	if n := r.inboxRows("ada"); n != 0 {
		t.Fatalf("delivered before send_at: %d rows", n)
	}
	// Every process of the region goes away while the event waits, and comes back.
	r.restart()
	st := r.waitState(id, "ada", "in_app", "delivered")
	deliveredAt := time.Now()
	if deliveredAt.Before(at) {
		t.Fatalf("delivered at %s, before send_at %s", deliveredAt, at)
	}
	if n := st["notification"].(map[string]any); n["fanout_path"] != "scheduled" {
		t.Fatalf("notification %v", n)
	}
	// The scheduler deletes the row in the transaction that handed the event on, which may
	// commit a moment after fan-out already delivered it.
	poll.Until(t, 5*time.Second, func() error {
		var left int
		if err := r.pg.QueryRow(t.Context(), `SELECT count(*) FROM scheduled_sends WHERE notification_id = $1`, id).Scan(&left); err != nil || left != 0 {
			return fmt.Errorf("scheduled rows left: %d %v", left, err)
		}
		return nil
	})
}

func TestQuietHoursDeferToTheWindowEndInTheUsersTimeZone(t *testing.T) {
	r := startRegion(t)
	ps := prefs.NewStore(r.pg)
	// Two users whose quiet hours contain the current minute, in two time zones, and one whose
	// window is elsewhere in the day.
	mk := func(tz string, inside bool) prefs.Preferences {
		loc, _ := time.LoadLocation(tz)
		local := time.Now().In(loc)
		start, end := local.Add(-time.Hour), local.Add(2*time.Hour)
		if !inside {
			start, end = local.Add(3*time.Hour), local.Add(5*time.Hour)
		}
		return prefs.Preferences{Timezone: tz, QuietHours: &prefs.QuietHours{Start: start.Format("15:04"), End: end.Format("15:04")}}
	}
	users := map[string]prefs.Preferences{"paris": mk("Europe/Paris", true), "tokyo": mk("Asia/Tokyo", true), "awake": mk("America/New_York", false)}
	for u, p := range users {
		if err := ps.Put(t.Context(), r.app, u, p); err != nil {
			t.Fatal(err)
		}
	}
	code, b := r.call("POST", "/v1/notifications", map[string]any{"type": "marketing", "category": "promo", "body": "Sale",
		"recipients": []string{"paris", "tokyo", "awake"}, "channels": []string{"in_app"}}, r.app)
	if code != 202 {
		t.Fatalf("send: %d %v", code, b)
	}
	id := b["notification_id"].(string)
	r.waitState(id, "awake", "in_app", "delivered")
	st := r.waitState(id, "paris", "in_app", "deferred")
	r.waitState(id, "tokyo", "in_app", "deferred")
	for _, u := range []string{"paris", "tokyo"} {
		loc, _ := time.LoadLocation(users[u].Timezone)
		var due time.Time
		if err := r.pg.QueryRow(t.Context(), `SELECT due_at FROM scheduled_sends WHERE notification_id = $1 AND event->'recipients'->>0 = $2`, id, u).Scan(&due); err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if got := due.In(loc).Format("15:04"); got != users[u].QuietHours.End {
			t.Fatalf("%s deferred to %s local, want the window end %s", u, got, users[u].QuietHours.End)
		}
		if d := time.Until(due); d < time.Hour || d > 2*time.Hour+time.Minute {
			t.Fatalf("%s deferred by %s", u, d)
		}
	}
	_ = st
	// Let the window end arrive (by moving the stored due time): the deferral fires once, is
	// delivered and is not deferred again although the user's quiet hours still hold.
	if _, err := r.pg.Exec(t.Context(), `UPDATE scheduled_sends SET due_at = now() WHERE notification_id = $1`, id); err != nil {
		t.Fatal(err)
	}
	r.waitState(id, "paris", "in_app", "delivered")
	r.waitState(id, "tokyo", "in_app", "delivered")
	if n := r.inboxRows("paris"); n != 1 {
		t.Fatalf("paris has %d inbox rows", n)
	}
}
