//go:build integration

package dispatch

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	goredis "github.com/redis/go-redis/v9"

	"github.com/herald-notify/herald/platform/redis"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/notify"
)

func unavailableCount(region, provider string) float64 {
	var m dto.Metric
	if err := rateLimitUnavailable.WithLabelValues(region, provider).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func connectRedis(t *testing.T, c redis.Config) *goredis.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := redis.Connect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// Two limiters with their own Redis clients, as two dispatcher processes would have, share one
// bucket: over T seconds they take together no more than R*T + burst tokens, and (since they
// keep asking) not much less.
func TestRateLimitSharedAcrossTwoProcesses(t *testing.T) {
	rc := testenv.Redis(t)
	const (
		rate  = 40.0
		burst = 10
		T     = 3 * time.Second
	)
	cfg := RateLimitConfig{PerSecond: rate, Burst: burst}
	limiters := []*RateLimiter{
		NewRateLimiter(connectRedis(t, rc), rc.Prefix, "zz-test-1", "apns-app1", cfg, nil),
		NewRateLimiter(connectRedis(t, rc), rc.Prefix, "zz-test-1", "apns-app1", cfg, nil),
	}
	if want := rc.Prefix + "rl:apns-app1"; limiters[0].Key() != want {
		t.Fatalf("key %q, want %q", limiters[0].Key(), want)
	}
	unavailable := unavailableCount("zz-test-1", "apns-app1")
	start := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(T))
	defer cancel()
	var taken [2]atomic.Int64
	var wg sync.WaitGroup
	for i, l := range limiters {
		for range 4 { // a few concurrent sends per process
			wg.Add(1)
			go func() {
				defer wg.Done()
				for l.Wait(ctx) == nil {
					if time.Since(start) > T {
						return
					}
					taken[i].Add(1)
				}
			}()
		}
	}
	wg.Wait()
	total := taken[0].Load() + taken[1].Load()
	limit := int64(rate*T.Seconds()) + burst
	t.Logf("rate %.0f/s burst %d over %s: process A took %d, process B took %d, together %d (limit %d)",
		rate, burst, T, taken[0].Load(), taken[1].Load(), total, limit)
	if total > limit {
		t.Fatalf("took %d tokens, more than R*T+burst = %d", total, limit)
	}
	if total < int64(0.8*rate*T.Seconds()) {
		t.Fatalf("took only %d tokens; the bucket should give about %d", total, limit)
	}
	if taken[0].Load() == 0 || taken[1].Load() == 0 {
		t.Fatal("one process got no token")
	}
	if got := unavailableCount("zz-test-1", "apns-app1"); got != unavailable {
		t.Fatalf("limiter reported Redis unavailable %v times", got-unavailable)
	}
}

// The limit is applied to the provider calls of two dispatchers wired with Deps.Redis.
func TestRateLimitWiredIntoProviderSends(t *testing.T) {
	rc := testenv.Redis(t)
	cfg := DefaultConfig()
	cfg.SMS.Twilio = TwilioConfig{BaseURL: "https://sms.example", RateLimit: RateLimitConfig{PerSecond: 10, Burst: 2}}
	fake := &fakeProvider{name: "twilio"}
	var ds []*Dispatcher
	for range 2 {
		ds = append(ds, newDispatcher(cfg, "zz-test-1", Deps{Logger: slog.New(slog.DiscardHandler), Redis: connectRedis(t, rc),
			RedisPrefix: rc.Prefix}, map[string][2]Provider{KindSMS: {fake}}))
	}
	task := notify.Task{Channel: notify.SMS}
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := ds[i%2].routes[KindSMS].send(context.Background(), task, "+15550100"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// 12 sends with 2 in the bucket at 10/s need at least 1 s.
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Fatalf("12 sends took %s; the shared limit (10/s, burst 2) needs at least 1 s", el)
	}
}

// With Redis unreachable, the limiter fails open at once, counting it.
func TestRateLimitFailsOpenWhenRedisUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // a closed port
	cl := goredis.NewClient(&goredis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1})
	defer cl.Close()
	l := NewRateLimiter(cl, "test-closed:", "zz-test-1", "twilio-down", RateLimitConfig{PerSecond: 1, Burst: 1}, nil)
	before := unavailableCount("zz-test-1", "twilio-down")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	for i := range 20 { // far beyond 1/s with burst 1
		if err := l.Wait(ctx); err != nil {
			t.Fatalf("wait %d: %v", i, err)
		}
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("20 waits with Redis down took %s; fail open must not block", el)
	}
	if got := unavailableCount("zz-test-1", "twilio-down") - before; got != 20 {
		t.Fatalf("herald_dispatch_ratelimit_unavailable_total grew by %v, want 20", got)
	}
}

// A waiting send gives up when its context ends (shutdown).
func TestRateLimitWaitRespectsContext(t *testing.T) {
	rc := testenv.Redis(t)
	l := NewRateLimiter(connectRedis(t, rc), rc.Prefix, "zz-test-1", "slow", RateLimitConfig{PerSecond: 0.1, Burst: 1}, nil)
	if err := l.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := l.Wait(ctx); err == nil {
		t.Fatal("second token at 0.1/s was granted at once")
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("wait ignored its context for %s", el)
	}
}
