//go:build integration

package webhooks_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/region/webhooks"
)

// An endpoint that fails for ten minutes (by the deliverer's and the store's injected clock;
// the breaker opens and closes on its own, real, clock) receives every event once it answers
// again: each exactly once by webhook-id, each signature valid, signed at the time it was sent,
// and nothing given up. The schedule is the production one (5 s doubling, jitter 0.2).
func TestAnEndpointDownForTenMinutesReceivesEveryEventOnceWhenBack(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	pg := regiontest.Migrated(t, c)
	ctx := testenv.Context(t, 3*time.Minute)
	t0 := time.Now().Truncate(time.Second)
	clk := newClock(t0)
	outageEnd := t0.Add(10 * time.Minute)
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
	var (
		mu                     sync.Mutex
		got                    = map[string]int{} // accepted, by webhook-id
		refused, badSignatures int
		signedEarly            []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if clk.now().Before(outageEnd) {
			refused++
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		// The timestamp is the deliverer's clock, minutes ahead of the real one here; the
		// signature is checked in full, the timestamp against the injected clock below.
		if err := wh.VerifyIgnoringTimestamp(body, r.Header); err != nil {
			badSignatures++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if sec, err := strconv.ParseInt(r.Header.Get("webhook-timestamp"), 10, 64); err != nil || time.Unix(sec, 0).Before(outageEnd) {
			signedEarly = append(signedEarly, r.Header.Get("webhook-id"))
		}
		got[r.Header.Get("webhook-id")]++
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	if _, err := pg.Exec(ctx, `UPDATE webhook_endpoints SET url = $3 WHERE app_id = $1 AND endpoint_id = $2`, app, ep.ID, srv.URL); err != nil {
		t.Fatal(err)
	}

	// 400 events: four fan-out chunks of 50 users, each accepted and delivered in-app.
	cons := &webhooks.Consumer{Region: c.Name, Jurisdiction: "EU", Store: store, CacheTTL: time.Minute, Log: slog.New(slog.DiscardHandler), Now: clk.now}
	for i := range 4 {
		batch := notify.EventBatch{App: app, NotificationID: fmt.Sprintf("n-outage-%d", i), At: t0}
		for u := range 50 {
			user := fmt.Sprintf("u%d", u)
			batch.Outcomes = append(batch.Outcomes, notify.Outcome{User: user, Channel: notify.ChannelAll, Stage: notify.StageAccepted},
				notify.Outcome{User: user, Channel: notify.InApp, Stage: notify.StageDelivered})
		}
		raw, err := json.Marshal(batch)
		if err != nil {
			t.Fatal(err)
		}
		if err := cons.Handle(ctx, raw); err != nil {
			t.Fatal(err)
		}
	}
	var want int
	if err := pg.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries WHERE app_id = $1`, app).Scan(&want); err != nil || want != 400 {
		t.Fatalf("%d deliveries stored (%v), want 400", want, err)
	}

	cfg := webhooks.DefaultConfig()
	cfg.Breaker.OpenFor = time.Millisecond // real time: open after 5 failures, half-open at the next pass
	d := &webhooks.Deliverer{Region: c.Name, Store: store, Cfg: cfg, Client: webhooks.NewClient(5*time.Second, true),
		Log: slog.New(slog.DiscardHandler), Now: clk.now}
	delivered := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	// Fifteen seconds of the injected clock per step, each step delivering what is due, until
	// everything arrived or three hours passed (the schedule's attempt after ten minutes of
	// failures is due by about 21 minutes).
	for clk.now().Before(t0.Add(3*time.Hour)) && delivered() < want {
		for {
			n, err := d.Pass(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
		clk.set(clk.now().Add(15 * time.Second))
	}
	mu.Lock()
	defer mu.Unlock()
	var twice []string
	for id, n := range got {
		if n != 1 {
			twice = append(twice, id)
		}
	}
	if len(got) != want || len(twice) > 0 || badSignatures > 0 || len(signedEarly) > 0 {
		t.Fatalf("received %d of %d events; %d more than once (%v); %d bad signatures; %d signed before the outage ended",
			len(got), want, len(twice), twice, badSignatures, len(signedEarly))
	}
	// The breaker opened after its consecutive failures: the outage saw attempts, not one per
	// event per backoff step.
	if refused < int(cfg.Breaker.ConsecutiveFailures) || refused >= 8*want {
		t.Fatalf("the endpoint refused %d attempts during the outage, want at least %d (the breaker's threshold) and far fewer than 8 per event", refused, cfg.Breaker.ConsecutiveFailures)
	}
	var dead, pending int
	if err := pg.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'dead'), count(*) FILTER (WHERE status = 'pending')
		FROM webhook_deliveries WHERE app_id = $1`, app).Scan(&dead, &pending); err != nil || dead+pending > 0 {
		t.Fatalf("%d deliveries dead, %d pending (%v)", dead, pending, err)
	}
	t.Logf("all %d events received once, %s after the outage ended (injected clock); %d attempts refused during it",
		want, clk.now().Sub(outageEnd).Round(time.Second), refused)
}
