//go:build integration

package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/region/webhooks"
)

// BenchmarkWebhookThroughput measures the role's two halves on the real Postgres: storing the
// deliveries of events records (a fan-out chunk of 100 recipients x 2 outcomes each, one
// endpoint) and delivering them to a local endpoint that answers at once. It reports events/s:
// stored/s (the consumer), delivered/s (until the endpoint has received every event) and
// settled/s (until every delivery is recorded as delivered in Postgres). It fails if the
// endpoint receives a webhook-id twice.
//
//	go test -tags integration -run XXX -bench WebhookThroughput -benchtime 20000x ./region/webhooks/
//
// WEBHOOK_BENCH_CONCURRENCY overrides webhooks.concurrency (32); WEBHOOK_BENCH_BACKLOG (a
// duration, such as 10m) makes the deliveries that much older before the deliverer starts: a
// backlog overdue by more than webhooks.takeover_after, as after the deliverer was down.
func BenchmarkWebhookThroughput(b *testing.B) {
	c := regiontest.Config(b, "zz-"+regiontest.Letters()+"-1", "EU", b.TempDir())
	pg := regiontest.Migrated(b, c)
	ctx := testenv.Context(b, 10*time.Minute)
	store := &webhooks.Store{DB: pg, Keys: testenv.MasterKeyring(b)}
	app := "app-" + testenv.Suffix()
	var got, dups atomic.Int64
	var seen sync.Map // webhook-id: received
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, again := seen.LoadOrStore(r.Header.Get("webhook-id"), true); again {
			dups.Add(1)
		}
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	if _, _, err := store.Create(ctx, app, "EU", webhooks.Spec{URL: srv.URL}); err != nil {
		b.Fatal(err)
	}
	cons := &webhooks.Consumer{Region: c.Name, Jurisdiction: "EU", Store: store, CacheTTL: time.Minute, Log: slog.New(slog.DiscardHandler)}
	const perRecord = 200
	records := (b.N + perRecord - 1) / perRecord
	raws := make([][]byte, records)
	for i := range raws {
		batch := notify.EventBatch{App: app, NotificationID: fmt.Sprintf("n-%d", i), At: time.Now()}
		for u := range perRecord / 2 {
			user := fmt.Sprintf("u%d", u)
			batch.Outcomes = append(batch.Outcomes, notify.Outcome{User: user, Channel: notify.ChannelAll, Stage: notify.StageAccepted},
				notify.Outcome{User: user, Channel: notify.InApp, Stage: notify.StageDelivered})
		}
		raws[i], _ = json.Marshal(batch)
	}
	b.ResetTimer()
	start := time.Now()
	for _, raw := range raws {
		if err := cons.Handle(ctx, raw); err != nil {
			b.Fatal(err)
		}
	}
	stored := time.Since(start)
	if v := os.Getenv("WEBHOOK_BENCH_BACKLOG"); v != "" {
		age, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := pg.Exec(ctx, `UPDATE webhook_deliveries SET first_at = first_at - $2::interval, next_attempt_at = next_attempt_at - $2::interval
			WHERE app_id = $1`, app, age); err != nil {
			b.Fatal(err)
		}
		if _, err := pg.Exec(ctx, `VACUUM ANALYZE webhook_deliveries`); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	cfg := webhooks.DefaultConfig()
	if v := os.Getenv("WEBHOOK_BENCH_CONCURRENCY"); v != "" {
		cfg.Concurrency, _ = strconv.Atoi(v)
	}
	d := &webhooks.Deliverer{Region: c.Name, Store: store, Cfg: cfg, Client: webhooks.NewClient(cfg.Timeout, true), Log: slog.New(slog.DiscardHandler)}
	start = time.Now()
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(rctx) }()
	for got.Load() < int64(records*perRecord) {
		time.Sleep(5 * time.Millisecond)
	}
	delivered := time.Since(start)
	for {
		var left int
		if err := pg.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries WHERE app_id = $1 AND status <> 'delivered'`, app).Scan(&left); err != nil {
			b.Fatal(err)
		}
		if left == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	settled := time.Since(start)
	stop()
	if err := <-done; err != nil {
		b.Logf("deliverer stopped with an error: %v", err)
	}
	b.StopTimer()
	if dups.Load() != 0 {
		b.Fatalf("%d webhook-ids received twice", dups.Load())
	}
	n := float64(records * perRecord)
	b.ReportMetric(n/stored.Seconds(), "stored/s")
	b.ReportMetric(n/delivered.Seconds(), "delivered/s")
	b.ReportMetric(n/settled.Seconds(), "settled/s")
}
