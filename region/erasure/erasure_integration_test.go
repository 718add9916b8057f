//go:build integration

package erasure_test

import (
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/cassandra"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/erasure"
	"github.com/herald-notify/herald/region/inbox"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/region/userkeys"
)

// TestErasureRunningPastAMonthBoundaryClearsTheNewMonthsInbox starts the erasure service on the
// last second of a month, moves its clock into the next month, writes an inbox row there and
// erases the user: the erasure must clear that month too before it reports done.
func TestErasureRunningPastAMonthBoundaryClearsTheNewMonthsInbox(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	ctx := testenv.Context(t, 3*time.Minute)
	pg := regiontest.Migrated(t, c)
	cass, err := cassandra.Connect(ctx, c.Cassandra)
	if err != nil {
		t.Fatal(err)
	}
	defer cass.Close()

	var clock atomic.Pointer[time.Time]
	set := func(t time.Time) { clock.Store(&t) }
	set(time.Date(2027, 1, 31, 23, 59, 59, 0, time.UTC))
	svc := &erasure.Service{DB: pg, Cass: cass, Keys: userkeys.New(pg, testenv.MasterKeyring(t)), InboxTTL: 30 * 24 * time.Hour, Now: func() time.Time { return *clock.Load() },
		Log: slog.New(slog.DiscardHandler), Interval: time.Second}

	in := inbox.New(cass, 24*time.Hour)
	january := time.Date(2027, 1, 31, 23, 0, 0, 0, time.UTC)
	february := time.Date(2027, 2, 1, 0, 0, 30, 0, time.UTC)
	for i, at := range []time.Time{january, february} {
		if err := in.Write(ctx, inbox.Item{AppID: "a", UserID: "ada", NotificationID: []string{"jan", "feb"}[i], CreatedAt: at,
			Tier: "social", Category: "c", Title: "t", Body: "b"}); err != nil {
			t.Fatal(err)
		}
	}
	set(february.Add(time.Minute)) // the region kept running into February

	e, err := svc.Request(ctx, "a", "ada")
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.RunPending(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := svc.Get(ctx, "a", e.ID)
	if err != nil || got.State != "done" {
		t.Fatalf("erasure %+v (%v), want done", got, err)
	}
	for _, b := range []int{inbox.Bucket(january), inbox.Bucket(february)} {
		var n int
		if err := cass.Query(`SELECT count(*) FROM notification_log WHERE app_id = ? AND user_id = ? AND bucket = ?`, "a", "ada", b).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("bucket %d still holds %d inbox rows of the erased user", b, n)
		}
	}
}
