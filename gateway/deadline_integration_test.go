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
	"github.com/herald-notify/herald/platform/testenv"
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
// region does not finish in time is answered by the region, relayed, before the gateway's
// deadline: at the budget the gateway gave it (X-Herald-Timeout-Ms, what was left of its
// deadline less a fifth; eu1: the region's own deadline is longer), or at the region's own
// deadline (us1: shorter); both are 503 deadline_exceeded with Retry-After, nothing is
// accepted, and the retry with the same key is accepted once the region answers again.
func TestRequestsThatOutliveTheDeadlineAnswer503WithRetryAfterAndTheRetryIsAcceptedOnce(t *testing.T) {
	const gatewayDeadline, usDeadline = 2 * time.Second, time.Second
	w := newWorldWith(t, func(c *gateway.Config) { c.RequestTimeout = gatewayDeadline }, func(i int, c *region.Config) {
		if i == 2 {
			c.RequestTimeout, c.KafkaWait = usDeadline, usDeadline/2
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
		// The gateway's own deadline less its reserve (a tenth: 200 ms), then a fifth of what
		// is left for the way back.
		{"the gateway's budget (region slower)", de, w.eu1, (gatewayDeadline - gatewayDeadline/10) * 4 / 5},
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
			if took < tc.within-100*time.Millisecond || took >= gatewayDeadline {
				t.Fatalf("answered after %s, want about %s and before the gateway's deadline %s", took, tc.within, gatewayDeadline)
			}
			if msg, _ := errBody["message"].(string); !strings.Contains(msg, "region's deadline") {
				t.Fatalf("answered by the gateway (%q), not by the region within its budget", msg)
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

// TestSendsThroughTheGatewayWhileKafkaIsPausedAnswerInTimeAndEveryKeyGetsOneDeliveredSend: the
// EU regions' Kafka (a private broker) is frozen with SIGSTOP for 10 s while a client sends through
// the gateway with idempotency keys, then resumed. Every answer during the pause comes within the
// gateway's deadline: 202 while the regions still pass their readiness (what Kafka did not
// acknowledge within kafka_wait is kept in the region's outbox), 503 with Retry-After once
// their Kafka check fails; after SIGCONT sends are accepted again, each key retried gets one
// send id, and every send id answered is delivered.
func TestSendsThroughTheGatewayWhileKafkaIsPausedAnswerInTimeAndEveryKeyGetsOneDeliveredSend(t *testing.T) {
	k := testenv.StartPrivateKafka(t) // never the shared broker: this test freezes it
	w := newWorldWith(t, nil, func(i int, c *region.Config) {
		if i < 2 { // eu1 and eu2: the EU user's region and its failover
			c.Kafka.Brokers = k.Config.Brokers
		}
	})
	de := "de-" + w.app
	w.register(map[string]string{de: "DE"})
	type answer struct {
		key  string
		code int
		id   string
		err  string
		took time.Duration
		hdr  http.Header
	}
	n := 0
	send := func() answer {
		n++
		key := fmt.Sprintf("pause-%d", n)
		body := map[string]any{"type": "transactional", "category": "otp", "title": "Code", "body": fmt.Sprint(n),
			"recipients": []string{de}, "channels": []string{"in_app"}, "idempotency_key": key}
		start := time.Now()
		code, out, hdr := w.call(w.key, "POST", "/v1/notifications", body)
		a := answer{key: key, code: code, took: time.Since(start), hdr: hdr}
		a.id, _ = out["notification_id"].(string)
		if e, ok := out["error"].(map[string]any); ok {
			a.err, _ = e["code"].(string)
		}
		return a
	}
	if a := send(); a.code != http.StatusAccepted {
		t.Fatalf("before the pause: %+v", a)
	}
	k.Pause(t)
	var during []answer
	for start := time.Now(); time.Since(start) < 10*time.Second; {
		during = append(during, send())
		time.Sleep(300 * time.Millisecond) // a client, not a flood: the rate limit stays out of it
	}
	k.Resume(t)
	var worst time.Duration
	codes := map[string]int{}
	for _, a := range during {
		worst = max(worst, a.took)
		codes[fmt.Sprintf("%d %s", a.code, a.err)]++
		if a.code != http.StatusAccepted && (a.code != http.StatusServiceUnavailable || a.hdr.Get("Retry-After") == "") {
			t.Errorf("during the pause: %d %s without Retry-After %q after %s", a.code, a.err, a.hdr.Get("Retry-After"), a.took)
		}
	}
	t.Logf("%d sends during the pause: %v; worst latency %s (gateway deadline %s)", len(during), codes, worst, w.cfg.RequestTimeout)
	if worst > w.cfg.RequestTimeout+500*time.Millisecond {
		t.Fatalf("worst latency %s, over the gateway's deadline %s", worst, w.cfg.RequestTimeout)
	}

	resumed := time.Now()
	var back answer
	var refused []answer // every 503, during the pause and after it
	for _, a := range during {
		if a.code != http.StatusAccepted {
			refused = append(refused, a)
		}
	}
	for back = send(); back.code != http.StatusAccepted; back = send() {
		refused = append(refused, back)
		if time.Since(resumed) > 90*time.Second {
			t.Fatalf("no send accepted within 90 s of SIGCONT: %+v", back)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("first 202 %s after SIGCONT", time.Since(resumed).Round(time.Millisecond))

	// The client retries every 503 with its key: one send id each, delivered; the sends
	// accepted during the pause are delivered too.
	ids := []string{back.id}
	for _, a := range during {
		if a.code == http.StatusAccepted {
			ids = append(ids, a.id)
		}
	}
	for _, a := range refused {
		code, out, _ := w.call(w.key, "POST", "/v1/notifications", map[string]any{"type": "transactional", "category": "otp", "title": "Code",
			"body": "retry", "recipients": []string{de}, "channels": []string{"in_app"}, "idempotency_key": a.key})
		if code != http.StatusAccepted && code != http.StatusConflict {
			t.Fatalf("retry of %s: %d %v", a.key, code, out)
		}
		code2, again, _ := w.call(w.key, "POST", "/v1/notifications", map[string]any{"type": "transactional", "category": "otp", "title": "Code",
			"body": "retry", "recipients": []string{de}, "channels": []string{"in_app"}, "idempotency_key": a.key})
		if code2 != http.StatusConflict || again["notification_id"] != out["notification_id"] {
			t.Fatalf("key %s answered %v then %d %v", a.key, out["notification_id"], code2, again)
		}
		ids = append(ids, out["notification_id"].(string))
	}
	for _, id := range ids {
		deadline := time.Now().Add(60 * time.Second)
		for {
			st := w.must(http.StatusOK, "GET", "/v1/notifications/"+id+"/status", nil)
			if strings.Contains(fmt.Sprint(st), "state:delivered") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("send %s never delivered: %v", id, st)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// One inbox item per key: no retry was accepted twice.
	items := w.must(http.StatusOK, "GET", "/v1/users/"+de+"/notifications?limit=100", nil)
	list, _ := items["items"].([]any)
	if want := n; len(list) != want {
		t.Fatalf("%d inbox items, want %d (one per key)", len(list), want)
	}
}
