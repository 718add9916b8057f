//go:build integration

package webhooks_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/region/webhooks"
)

// TestSettleRecordsABatchOfMixedOutcomes settles one batch on the real Postgres that holds a
// delivery delivered, one to retry, one given up on, one postponed by an open breaker (its last
// answer stays), and one that became a dead letter after it was claimed (the endpoint was
// disabled): each row gets its own outcome, and the dead letter stays dead.
func TestSettleRecordsABatchOfMixedOutcomes(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	pg := regiontest.Migrated(t, c)
	ctx := testenv.Context(t, time.Minute)
	store := &webhooks.Store{DB: pg, Keys: testenv.MasterKeyring(t)}
	app := "app-" + testenv.Suffix()
	ep, _, err := store.Create(ctx, app, "EU", webhooks.Spec{URL: "http://127.0.0.1:1/unused"})
	if err != nil {
		t.Fatal(err)
	}
	events := []string{"msg_delivered", "msg_retry", "msg_dead", "msg_postponed", "msg_disabled"}
	for _, e := range events {
		pendingDelivery(t, ctx, pg, app, ep.ID, c.Name, e)
	}
	// The postponed one was attempted before: a 502.
	if _, err := pg.Exec(ctx, `UPDATE webhook_deliveries SET attempts = 2, last_status = 502, last_error = 'endpoint answered 502'
		WHERE app_id = $1 AND event_id = 'msg_postponed'`, app); err != nil {
		t.Fatal(err)
	}
	ps, err := store.Claim(ctx, c.Name, 10, time.Minute, 0)
	if err != nil || len(ps) != len(events) {
		t.Fatalf("claimed %d (%v), want %d", len(ps), err, len(events))
	}
	if again, err := store.Claim(ctx, c.Name, 10, time.Minute, 0); err != nil || len(again) != 0 {
		t.Fatalf("claimed %d leased deliveries again (%v)", len(again), err)
	}
	if _, err := pg.Exec(ctx, `UPDATE webhook_deliveries SET status = 'dead', done_at = now(), last_error = 'endpoint disabled'
		WHERE app_id = $1 AND event_id = 'msg_disabled'`, app); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	retryAt, breakerAt := now.Add(5*time.Second), now.Add(30*time.Second)
	want := map[string]webhooks.Outcome{
		"msg_delivered": {Status: "delivered", Attempts: 1, HTTP: 204},
		"msg_retry":     {Status: "pending", Attempts: 1, Next: retryAt, HTTP: 503, Error: "endpoint answered 503"},
		"msg_dead":      {Status: "dead", Attempts: 3, HTTP: 500, Error: "endpoint answered 500"},
		"msg_postponed": {Status: "pending", Attempts: 2, Next: breakerAt, Postponed: true, NotAttempted: true},
		"msg_disabled":  {Status: "delivered", Attempts: 1, HTTP: 204},
	}
	outs := make([]webhooks.Outcome, len(ps))
	for i, p := range ps {
		outs[i] = want[p.EventID]
	}
	if err := store.Settle(ctx, ps, outs); err != nil {
		t.Fatal(err)
	}

	type row struct {
		status    string
		attempts  int
		code      int
		lastError string
		next      time.Time
		done      bool
	}
	got := map[string]row{}
	rows, err := pg.Query(ctx, `SELECT event_id, status, attempts, last_status, last_error, next_attempt_at, done_at IS NOT NULL FROM webhook_deliveries WHERE app_id = $1`, app)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var r row
		if err := rows.Scan(&id, &r.status, &r.attempts, &r.code, &r.lastError, &r.next, &r.done); err != nil {
			t.Fatal(err)
		}
		got[id] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	near := func(a, b time.Time) bool { return a.Sub(b).Abs() < time.Millisecond }
	for id, check := range map[string]func(r row) bool{
		"msg_delivered": func(r row) bool {
			return r.status == "delivered" && r.attempts == 1 && r.code == 204 && r.lastError == "" && r.done
		},
		"msg_retry": func(r row) bool {
			return r.status == "pending" && r.attempts == 1 && r.code == 503 && r.lastError == "endpoint answered 503" && near(r.next, retryAt) && !r.done
		},
		"msg_dead": func(r row) bool { return r.status == "dead" && r.attempts == 3 && r.code == 500 && r.done },
		"msg_postponed": func(r row) bool {
			return r.status == "pending" && r.attempts == 2 && r.code == 502 && r.lastError == "endpoint answered 502" && near(r.next, breakerAt) && !r.done
		},
		"msg_disabled": func(r row) bool { return r.status == "dead" && r.attempts == 0 && r.lastError == "endpoint disabled" },
	} {
		if !check(got[id]) {
			t.Errorf("%s after the settle: %+v", id, got[id])
		}
	}
}

// TestALeaseExpiredAfterACrashIsDeliveredAgain: a deliverer claims deliveries and dies before
// it sends them. While their lease lasts, another deliverer leaves them alone; once it has
// passed, it delivers each of them once, signed.
func TestALeaseExpiredAfterACrashIsDeliveredAgain(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	pg := regiontest.Migrated(t, c)
	ctx := testenv.Context(t, time.Minute)
	clk := newClock(time.Now())
	store := &webhooks.Store{DB: pg, Keys: testenv.MasterKeyring(t), Now: clk.now}
	app := "app-" + testenv.Suffix()
	ep, secret, err := store.Create(ctx, app, "EU", webhooks.Spec{URL: "http://127.0.0.1:1/unused"})
	if err != nil {
		t.Fatal(err)
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var refused int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if err := wh.Verify(body, r.Header); err != nil {
			refused++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		seen[r.Header.Get("webhook-id")]++
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	if _, err := pg.Exec(ctx, `UPDATE webhook_endpoints SET url = $3 WHERE app_id = $1 AND endpoint_id = $2`, app, ep.ID, srv.URL); err != nil {
		t.Fatal(err)
	}
	events := []string{"msg_crash_a", "msg_crash_b", "msg_crash_c"}
	for _, e := range events {
		pendingDelivery(t, ctx, pg, app, ep.ID, c.Name, e)
	}

	d := &webhooks.Deliverer{Region: c.Name, Store: store, Cfg: webhooks.DefaultConfig(), Client: webhooks.NewClient(time.Second, true),
		Log: slog.New(slog.DiscardHandler), Now: clk.now}
	crashed, err := store.Claim(ctx, c.Name, 10, d.Lease(), 0)
	if err != nil || len(crashed) != len(events) {
		t.Fatalf("the crashed deliverer claimed %d (%v)", len(crashed), err)
	}
	clk.set(clk.now().Add(d.Lease() - time.Second))
	if n, err := d.Pass(ctx); err != nil || n != 0 {
		t.Fatalf("claimed %d deliveries under another's lease (%v)", n, err)
	}
	clk.set(clk.now().Add(2 * time.Second))
	if n, err := d.Pass(ctx); err != nil || n != len(events) {
		t.Fatalf("claimed %d deliveries past their lease (%v), want %d", n, err, len(events))
	}
	if n, err := d.Pass(ctx); err != nil || n != 0 {
		t.Fatalf("claimed %d delivered deliveries (%v)", n, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if refused != 0 || len(seen) != len(events) {
		t.Fatalf("received %v, %d refused", seen, refused)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s received %d times", id, n)
		}
	}
	for _, e := range events {
		if st, code := status(t, ctx, pg, app, e); st != "delivered" || code != http.StatusNoContent {
			t.Errorf("%s: %s %d", e, st, code)
		}
	}
}
