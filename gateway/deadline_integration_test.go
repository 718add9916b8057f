//go:build integration

package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/herald-notify/herald/gateway"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/regiontest"
)

// holdKey blocks every claim of app's idempotency key in a region's Postgres: the test inserts
// the key in a transaction it leaves open, so the region's own insert waits on it (a real row
// lock, the way a stuck transaction or a store that stopped answering holds a request). release
// rolls the transaction back; nothing of it stays.
func holdKey(t *testing.T, r *regiontest.Running, app, key string) (release func()) {
	t.Helper()
	ctx := t.Context()
	pool, err := postgres.Connect(ctx, r.Cfg.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO idempotency_keys (app_id, idempotency_key, notification_id) VALUES ($1, $2, 'held-by-the-test')`, app, key); err != nil {
		t.Fatal(err)
	}
	done := false
	release = func() {
		if done {
			return
		}
		done = true
		if err := tx.Rollback(context.Background()); err != nil && err != pgx.ErrTxClosed {
			t.Error(err)
		}
		pool.Close()
	}
	t.Cleanup(release)
	return release
}

// TestRequestsThatOutliveTheDeadlineAnswer503WithRetryAfterAndTheRetryIsAcceptedOnce: a send whose
// region does not answer in time is answered by the gateway at its own deadline (eu1: the region's
// deadline is longer), or by the region at its deadline, relayed (us1: shorter); both are 503
// deadline_exceeded with Retry-After, nothing is accepted, and the retry with the same key is
// accepted once the region answers again.
func TestRequestsThatOutliveTheDeadlineAnswer503WithRetryAfterAndTheRetryIsAcceptedOnce(t *testing.T) {
	const gatewayDeadline, usDeadline = 2 * time.Second, time.Second
	w := newWorldWith(t, func(c *gateway.Config) { c.RequestTimeout = gatewayDeadline }, func(i int, c *region.Config) {
		if i == 2 {
			c.RequestTimeout = usDeadline
		}
	})
	de, us := "de-"+w.app, "us-"+w.app
	w.register(map[string]string{de: "DE", us: "US"})
	for _, tc := range []struct {
		name   string
		user   string
		region *regiontest.Running
		within time.Duration
	}{
		{"the gateway's deadline (region slower)", de, w.eu1, gatewayDeadline},
		{"the region's deadline, relayed", us, w.us1, usDeadline},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "held-" + tc.user
			body := map[string]any{"type": "transactional", "category": "otp", "title": "Code", "body": "1",
				"recipients": []string{tc.user}, "channels": []string{"in_app"}, "idempotency_key": key}
			release := holdKey(t, tc.region, w.app, key)
			start := time.Now()
			code, out, hdr := w.call(w.key, "POST", "/v1/notifications", body)
			took := time.Since(start)
			t.Logf("answered %d %v after %s (deadline %s)", code, out["error"], took, tc.within)
			errBody, _ := out["error"].(map[string]any)
			if code != http.StatusServiceUnavailable || errBody["code"] != "deadline_exceeded" || hdr.Get("Retry-After") == "" {
				t.Fatalf("held send: %d %v, Retry-After %q; want 503 deadline_exceeded with Retry-After", code, out, hdr.Get("Retry-After"))
			}
			if took < tc.within-100*time.Millisecond || took > tc.within+time.Second {
				t.Fatalf("answered after %s, want about %s", took, tc.within)
			}
			release()
			// The retry is accepted, or answers 409 when the first request's claim landed after
			// all (its statement went on in Postgres once the lock was gone): either way one id,
			// whose event reaches the inbox.
			code, first, _ := w.call(w.key, "POST", "/v1/notifications", body)
			if code != http.StatusAccepted && code != http.StatusConflict {
				t.Fatalf("retry after release: %d %v", code, first)
			}
			code, again, _ := w.call(w.key, "POST", "/v1/notifications", body)
			if code != http.StatusConflict || again["notification_id"] != first["notification_id"] || fmt.Sprint(again["parts"]) != fmt.Sprint(first["parts"]) {
				t.Fatalf("second retry: %d %v, want 409 naming %v", code, again, first)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				st := w.must(http.StatusOK, "GET", fmt.Sprintf("/v1/notifications/%v/status", first["notification_id"]), nil)
				if strings.Contains(fmt.Sprint(st), "state:delivered") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the send's event never reached the inbox: %v", st)
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
	// The event stream has no deadline: one opened before it passes still carries an item sent
	// after.
	req, _ := http.NewRequest("GET", w.gw+"/v1/users/"+de+"/notifications/stream", nil)
	req.Header.Set("Authorization", "Bearer "+w.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	got := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"Late"`) {
				close(got)
				return
			}
		}
	}()
	time.Sleep(gatewayDeadline + time.Second) // not synchronisation: the stream must outlive the deadline
	w.must(http.StatusAccepted, "POST", "/v1/notifications", map[string]any{
		"type": "transactional", "category": "otp", "title": "Late", "body": "2", "recipients": []string{de}, "channels": []string{"in_app"}})
	select {
	case <-got:
	case <-time.After(15 * time.Second):
		t.Fatal("the stream closed at the deadline: an item sent after it did not arrive")
	}
}
