//go:build integration

package webhooks_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/region/webhooks"
)

// TestRedeliveredRecordsMakeNoSecondDeliveryAndDeadLettersReplay runs the role's parts against
// the real Postgres: an events record handled twice (a Kafka redelivery) stores each delivery
// once; the deliverer sends each once; a disabled endpoint's pending deliveries become dead
// letters, which replay delivers with their original webhook-id.
func TestRedeliveredRecordsMakeNoSecondDeliveryAndDeadLettersReplay(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	pg := regiontest.Migrated(t, c)
	ctx := testenv.Context(t, 2*time.Minute)
	store := &webhooks.Store{DB: pg, Keys: testenv.MasterKeyring(t)}
	app := "app-" + testenv.Suffix()

	var got atomic.Int32
	var fail atomic.Bool
	var mu sync.Mutex // the deliverer posts several at once
	seen := map[string]int{}
	ids := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := make(map[string]int, len(seen))
		for k, v := range seen {
			out[k] = v
		}
		return out
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		got.Add(1)
		mu.Lock()
		seen[r.Header.Get("webhook-id")]++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	// http to a public host is the API's check; the store takes what the API accepted.
	ep, secret, err := store.Create(ctx, app, "EU", webhooks.Spec{URL: srv.URL})
	if err != nil || len(secret) < 30 {
		t.Fatalf("create: %v %q", err, secret)
	}
	if _, err := store.Get(ctx, app, "US", ep.ID); err != webhooks.ErrNotFound {
		t.Fatalf("the endpoint is the EU's only: %v", err)
	}
	_, rotated, err := store.Rotate(ctx, app, "EU", ep.ID, 24*time.Hour)
	if err != nil || rotated == secret {
		t.Fatalf("rotate: %v", err)
	}

	batch := notify.EventBatch{App: app, NotificationID: "n-1", At: time.Now(), Outcomes: []notify.Outcome{
		{User: "ada", Channel: notify.ChannelAll, Stage: notify.StageAccepted},
		{User: "ada", Channel: notify.InApp, Stage: notify.StageFannedOut},
		{User: "ada", Channel: notify.InApp, Stage: notify.StageDelivered},
	}}
	raw, _ := json.Marshal(batch)
	cons := &webhooks.Consumer{Region: c.Name, Jurisdiction: "EU", Store: store, Log: slog.New(slog.DiscardHandler)}
	for range 3 { // the record, then two redeliveries of it
		if err := cons.Handle(ctx, raw); err != nil {
			t.Fatal(err)
		}
	}
	var rows int
	if err := pg.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries WHERE app_id = $1`, app).Scan(&rows); err != nil || rows != 2 {
		t.Fatalf("%d deliveries stored (%v), want 2 (accepted, delivered)", rows, err)
	}
	cfg := webhooks.DefaultConfig()
	d := &webhooks.Deliverer{Region: c.Name, Store: store, Cfg: cfg, Client: webhooks.NewClient(time.Second, true), Log: slog.New(slog.DiscardHandler)}
	for range 3 {
		if _, err := d.Pass(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if first := ids(); got.Load() != 2 || len(first) != 2 {
		t.Fatalf("received %d, ids %v", got.Load(), first)
	}

	// A second send fails; disabling the endpoint makes its deliveries dead letters.
	fail.Store(true)
	batch.NotificationID = "n-2"
	raw, _ = json.Marshal(batch)
	if err := cons.Handle(ctx, raw); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := store.SetDisabled(ctx, app, "EU", ep.ID, true); err != nil {
		t.Fatal(err)
	}
	dead, err := store.DeadLetters(ctx, app, "EU", ep.ID, 100)
	if err != nil || len(dead) != 2 || dead[0].LastStatus != http.StatusBadGateway || dead[0].Attempts != 1 {
		t.Fatalf("dead letters %+v (%v)", dead, err)
	}
	// A delivery made while the endpoint is disabled (a consumer's stale list) is never sent.
	if _, err := pg.Exec(ctx, `INSERT INTO webhook_deliveries (app_id, endpoint_id, event_id, region, event_type, user_id, payload)
		VALUES ($1, $2, 'msg_stale', $3, 'notification.read', 'ada', '{}')`, app, ep.ID, c.Name); err != nil {
		t.Fatal(err)
	}
	if n, err := d.Pass(ctx); err != nil || n != 1 {
		t.Fatalf("claimed %d (%v)", n, err)
	}
	var status, lastErr string
	if err := pg.QueryRow(ctx, `SELECT status, last_error FROM webhook_deliveries WHERE app_id = $1 AND event_id = 'msg_stale'`, app).Scan(&status, &lastErr); err != nil || status != "dead" || lastErr != "endpoint disabled" {
		t.Fatalf("a disabled endpoint's delivery: %s %q (%v)", status, lastErr, err)
	}
	if _, err := pg.Exec(ctx, `DELETE FROM webhook_deliveries WHERE app_id = $1 AND event_id = 'msg_stale'`, app); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Replay(ctx, app, "EU", ep.ID, c.Name, nil); err != webhooks.ErrDisabled {
		t.Fatalf("replay while disabled: %v", err)
	}
	if _, err := store.SetDisabled(ctx, app, "EU", ep.ID, false); err != nil {
		t.Fatal(err)
	}
	fail.Store(false)
	n, err := store.Replay(ctx, app, "EU", ep.ID, c.Name, []string{dead[0].EventID})
	if err != nil || n != 1 {
		t.Fatalf("replayed %d (%v)", n, err)
	}
	if n, err := store.Replay(ctx, app, "EU", ep.ID, c.Name, nil); err != nil || n != 1 {
		t.Fatalf("replayed the rest: %d (%v)", n, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for got.Load() < 4 && time.Now().Before(deadline) {
		if _, err := d.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	seenNow := ids()
	if got.Load() != 4 || len(seenNow) != 4 {
		t.Fatalf("received %d, ids %v", got.Load(), seenNow)
	}
	for id, n := range seenNow {
		if n != 1 {
			t.Fatalf("%s received %d times", id, n)
		}
	}
	if dead, _ := store.DeadLetters(ctx, app, "EU", ep.ID, 100); len(dead) != 0 {
		t.Fatalf("dead letters left: %+v", dead)
	}

	// Another region of the jurisdiction made deliveries and went down: once they are overdue
	// by takeover_after, this region delivers them.
	down := &webhooks.Consumer{Region: "zz-down-2", Jurisdiction: "EU", Store: store, Log: slog.New(slog.DiscardHandler)}
	batch.NotificationID = "n-3"
	raw, _ = json.Marshal(batch)
	if err := down.Handle(ctx, raw); err != nil {
		t.Fatal(err)
	}
	d.Cfg.Timeout, d.Cfg.TakeoverAfter = time.Second, 30*time.Second
	if n, err := d.Pass(ctx); err != nil || n != 0 {
		t.Fatalf("took over %d deliveries not yet overdue (%v)", n, err)
	}
	if _, err := pg.Exec(ctx, `UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 minute' WHERE app_id = $1 AND region = 'zz-down-2'`, app); err != nil {
		t.Fatal(err)
	}
	if n, err := d.Pass(ctx); err != nil || n != 2 {
		t.Fatalf("took over %d overdue deliveries (%v), want 2", n, err)
	}
	var left int
	if err := pg.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries WHERE app_id = $1 AND (region = 'zz-down-2' OR status <> 'delivered')`, app).Scan(&left); err != nil || left != 0 || got.Load() != 6 {
		t.Fatalf("%d deliveries left to the down region or undelivered (%v); received %d", left, err, got.Load())
	}
}
