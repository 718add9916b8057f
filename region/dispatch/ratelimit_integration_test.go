//go:build integration

package dispatch

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	goredis "github.com/redis/go-redis/v9"

	"github.com/herald-notify/herald/platform/poll"
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
				for l.Wait(ctx, notify.Transactional) == nil {
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
			if _, _, _, err := ds[i%2].routes[KindSMS].send(context.Background(), task, "+15550100", ""); err != nil {
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
		if err := l.Wait(ctx, notify.Transactional); err != nil {
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
	if err := l.Wait(context.Background(), notify.Transactional); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := l.Wait(ctx, notify.Transactional); err == nil {
		t.Fatal("second token at 0.1/s was granted at once")
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("wait ignored its context for %s", el)
	}
}

// One script call serves a round of requests: a request whose sent key holds an accepted send
// gets its message id and takes no token; the others take the tokens in order, and those left
// without one are told to wait, the later ones longer.
func TestTokenBucketRoundChecksSentKeysAndTakesTokensInOrder(t *testing.T) {
	rc := testenv.Redis(t)
	rdb := connectRedis(t, rc)
	ctx := testenv.Context(t, 10*time.Second)
	l := NewRateLimiter(rdb, rc.Prefix, "zz-test-1", "apns-round", RateLimitConfig{PerSecond: 10, Burst: 2}, nil)
	sent := newSentKeys(rdb, rc.Prefix)
	done, fresh := sent.key("n1", "ada", "push", "aa"), sent.key("n1", "bob", "push", "bb")
	if err := rdb.Set(ctx, done, "apns-id-1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := l.round(ctx, []takeReq{{sentKey: done}, {}, {sentKey: fresh}, {}, {}})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		sent   bool
		id     string
		waitMS [2]int64 // bounds of the wait in ms; 0, 0: the token was taken
	}{
		{true, "apns-id-1", [2]int64{0, 0}},
		{false, "", [2]int64{0, 0}},
		{false, "", [2]int64{0, 0}},
		{false, "", [2]int64{1, 100}},   // one token short at 10/s
		{false, "", [2]int64{101, 200}}, // two tokens short
	}
	if len(got) != len(want) {
		t.Fatalf("%d results for 5 requests: %+v", len(got), got)
	}
	for i, w := range want {
		g := got[i]
		if g.sent != w.sent || g.sentID != w.id || g.wait.Milliseconds() < w.waitMS[0] || g.wait.Milliseconds() > w.waitMS[1] {
			t.Errorf("request %d: got %+v, want sent=%v id=%q wait in %v ms", i, g, w.sent, w.id, w.waitMS)
		}
	}
	// The already-sent request took no token: the bucket is empty after exactly two.
	tokens, err := rdb.HGet(ctx, l.Key(), "tokens").Float64()
	if err != nil {
		t.Fatal(err)
	}
	if tokens < 0 || tokens >= 0.5 {
		t.Fatalf("bucket holds %.2f tokens after two of two were taken", tokens)
	}
}

// A task consumed again skips the send its provider already accepted, with or without a rate
// limit, and takes no token for it: with a bucket that has no second token for an hour, the
// second handling would otherwise block.
func TestDispatcherSkipsAnAcceptedSendOnRedelivery(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit RateLimitConfig
	}{
		{"rate limited (sent key checked in the token script)", RateLimitConfig{PerSecond: 1.0 / 3600, Burst: 1}},
		{"unlimited (sent key checked alone)", RateLimitConfig{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := testenv.Redis(t)
			cfg := DefaultConfig()
			cfg.SMS.Twilio = TwilioConfig{BaseURL: "https://sms.example", RateLimit: tc.limit}
			fake := &fakeProvider{name: "twilio"}
			log := &fakeLog{}
			d := newDispatcher(cfg, "zz-test-1", Deps{Deliveries: log, Devices: &fakeDevices{}, Producer: &fakeProducer{},
				Logger: slog.New(slog.DiscardHandler), Redis: connectRedis(t, rc), RedisPrefix: rc.Prefix}, map[string][2]Provider{KindSMS: {fake}})
			task := sampleTask(notify.SMS)
			task.NotificationID = "n-" + testenv.Suffix()
			task.Target.Phone = "+447700900123"
			ctx := testenv.Context(t, 5*time.Second)
			for i := range 2 {
				if err := d.process(ctx, task, nil); err != nil {
					t.Fatalf("handling %d: %v", i+1, err)
				}
			}
			if len(fake.sent) != 1 {
				t.Fatalf("provider called %d times for one task handled twice", len(fake.sent))
			}
			if len(log.attempts) != 1 || len(log.states) != 2 || log.states[1].State != notify.StateDelivered {
				t.Fatalf("attempts %+v states %+v: want one attempt, delivered twice", log.attempts, log.states)
			}
		})
	}
}

// Concurrent sends of one dispatcher share Redis round trips: many tasks at once take far fewer
// script calls than tasks, and each send is marked.
func TestConcurrentSendsShareRedisRoundTrips(t *testing.T) {
	rc := testenv.Redis(t)
	rdb := connectRedis(t, rc)
	var calls atomic.Int64
	rdb.AddHook(countHook{&calls})
	cfg := DefaultConfig()
	cfg.SMS.Twilio = TwilioConfig{BaseURL: "https://sms.example", RateLimit: RateLimitConfig{PerSecond: 100_000, Burst: 10_000}}
	fake := &fakeProvider{name: "twilio"}
	d := newDispatcher(cfg, "zz-test-1", Deps{Deliveries: &fakeLog{}, Devices: &fakeDevices{}, Producer: &fakeProducer{},
		Logger: slog.New(slog.DiscardHandler), Redis: rdb, RedisPrefix: rc.Prefix}, map[string][2]Provider{KindSMS: {fake}})
	ctx := testenv.Context(t, 20*time.Second)
	const n = 400
	nid := "n-" + testenv.Suffix()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			task := sampleTask(notify.SMS)
			task.NotificationID, task.UserID, task.Target.Phone = nid, fmt.Sprintf("u%03d", i), fmt.Sprintf("+4477009%05d", i)
			if err := d.process(ctx, task, nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	marked, err := rdb.Keys(ctx, rc.Prefix+"sent:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	got := calls.Load()
	t.Logf("%d concurrent sends: %d Redis round trips (before batching: %d)", n, got, 3*n)
	if len(fake.sent) != n || len(marked) != n {
		t.Fatalf("%d sent, %d marked; want %d each", len(fake.sent), len(marked), n)
	}
	// One token call and one mark per send would be 2n; rounds share them.
	if got >= n {
		t.Fatalf("%d Redis round trips for %d concurrent sends: not batched", got, n)
	}
}

// countHook counts Redis round trips: single commands and pipelines alike.
type countHook struct{ n *atomic.Int64 }

func (h countHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h countHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h countHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// A marketing backlog saturating a provider's shared bucket from two processes does not starve
// transactional sends: marketing never takes the bucket below its reserve, so a transactional
// send takes a token at once, and the reserve refills before marketing gets another token.
// Without the reserve, each transactional send would queue with the 32 marketing sends for a
// bucket of 10 tokens a second: about 3 s each.
func TestRateLimitKeepsAReserveForTransactionalSendsUnderAMarketingBacklog(t *testing.T) {
	rc := testenv.Redis(t)
	const (
		rate  = 10.0
		burst = 4
	)
	cfg := RateLimitConfig{PerSecond: rate, Burst: burst} // reserve: a quarter of the burst, 1
	provider := "apns-tiers-" + testenv.Suffix()
	limiters := []*RateLimiter{
		NewRateLimiter(connectRedis(t, rc), rc.Prefix, "zz-test-1", provider, cfg, nil),
		NewRateLimiter(connectRedis(t, rc), rc.Prefix, "zz-test-1", provider, cfg, nil),
	}
	ctx, cancel := context.WithCancel(testenv.Context(t, time.Minute))
	defer cancel()
	var marketing atomic.Int64
	var wg sync.WaitGroup
	for _, l := range limiters {
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for l.Wait(ctx, notify.Marketing) == nil {
					marketing.Add(1)
				}
			}()
		}
	}
	// Let the backlog drain the bucket down to the reserve.
	poll.True(t, 5*time.Second, "the condition", func() bool { return marketing.Load() >= burst })
	start := time.Now()
	var waits []time.Duration
	for range 8 {
		time.Sleep(300 * time.Millisecond) // the reserve refills in 100 ms at 10/s
		t0 := time.Now()
		if err := limiters[0].Wait(ctx, notify.Transactional); err != nil {
			t.Fatal(err)
		}
		waits = append(waits, time.Since(t0))
	}
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	slices.Sort(waits)
	t.Logf("transactional waits under a marketing backlog: %v; marketing took %d tokens", waits, marketing.Load())
	if median := waits[len(waits)/2]; median > 250*time.Millisecond {
		t.Errorf("median transactional wait %s: the marketing backlog took its tokens", median)
	}
	if waits[len(waits)-1] > time.Second {
		t.Errorf("slowest transactional wait %s, want under 1 s", waits[len(waits)-1])
	}
	// The bucket's bound still holds for everyone together, and marketing still got the rest.
	if got, most := marketing.Load()+int64(len(waits)), int64(rate*(elapsed+2*time.Second).Seconds())+2*burst; got > most {
		t.Errorf("%d tokens taken in %s, more than the bucket allows (%d)", got, elapsed, most)
	}
	if marketing.Load() < int64(rate*elapsed.Seconds()/2) {
		t.Errorf("marketing took only %d tokens in %s: the reserve must not stop it", marketing.Load(), elapsed)
	}
}

// The floors of a round: marketing stops at the reserve, social at half of it, transactional
// takes the last token.
func TestTokenBucketRoundLeavesEachTiersFloor(t *testing.T) {
	rc := testenv.Redis(t)
	rdb := connectRedis(t, rc)
	ctx := testenv.Context(t, 10*time.Second)
	cfg := RateLimitConfig{PerSecond: 0.001, Burst: 8, Reserve: 4}
	l := NewRateLimiter(rdb, rc.Prefix, "zz-test-1", "apns-floors-"+testenv.Suffix(), cfg, nil)
	m, s, tr := takeReq{floor: cfg.floor(notify.Marketing)}, takeReq{floor: cfg.floor(notify.Social)}, takeReq{floor: cfg.floor(notify.Transactional)}
	if m.floor != 4 || s.floor != 2 || tr.floor != 0 || (RateLimitConfig{PerSecond: 1, Burst: 1}).floor(notify.Marketing) != 0 {
		t.Fatalf("floors %d %d %d", m.floor, s.floor, tr.floor)
	}
	got, err := l.round(ctx, []takeReq{m, m, m, m, m, s, s, s, tr, tr, tr})
	if err != nil {
		t.Fatal(err)
	}
	var taken []bool
	for _, r := range got {
		taken = append(taken, r.wait == 0)
	}
	want := []bool{true, true, true, true, false, true, true, false, true, true, false}
	if !slices.Equal(taken, want) {
		t.Fatalf("tokens taken %v, want %v", taken, want)
	}
}

// gatedProvider accepts every send, each once its gate is open.
type gatedProvider struct {
	gate  chan struct{}
	calls atomic.Int64
}

func (g *gatedProvider) Name() string { return "twilio" }
func (g *gatedProvider) Send(ctx context.Context, _ notify.Task, to string) (Receipt, error) {
	g.calls.Add(1)
	select {
	case <-g.gate:
	case <-ctx.Done():
		return Receipt{}, ctx.Err()
	}
	return Receipt{MessageID: "sm-" + to, Status: "201"}, nil
}

// Two copies of one task handled at once (a task written twice while a Kafka broker failed
// over, both in one consumer's window) reach the provider once: the second waits for the
// first's send and mark, then finds the mark. Without the wait both pass the sent-key check
// before either is marked (a broker kill repeated 5 % of sends so, milliseconds apart).
func TestConcurrentCopiesOfATaskAreSentOnce(t *testing.T) {
	rc := testenv.Redis(t)
	cfg := DefaultConfig()
	cfg.SMS.Twilio = TwilioConfig{BaseURL: "https://sms.example"}
	prov := &gatedProvider{gate: make(chan struct{})}
	log := &fakeLog{}
	const region = "zz-held-1"
	d := newDispatcher(cfg, region, Deps{Deliveries: log, Devices: &fakeDevices{}, Producer: &fakeProducer{},
		Logger: slog.New(slog.DiscardHandler), Redis: connectRedis(t, rc), RedisPrefix: rc.Prefix}, map[string][2]Provider{KindSMS: {prov}})
	task := sampleTask(notify.SMS)
	task.NotificationID = "n-" + testenv.Suffix()
	task.Target.Phone = "+447700900123"
	ctx := testenv.Context(t, 10*time.Second)
	held := func() float64 { return testutil.ToFloat64(sendsHeld.WithLabelValues(region, notify.SMS)) }
	before := held()
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- d.process(ctx, task, nil) }()
	}
	// The first copy is at the provider; the second must be waiting for it, not there too.
	for held() == before && prov.calls.Load() < 2 {
		if ctx.Err() != nil {
			t.Fatal("neither copy waited for the other")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(prov.gate)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := prov.calls.Load(); n != 1 {
		t.Fatalf("provider called %d times for two copies of one task", n)
	}
	if got := held() - before; got != 1 {
		t.Fatalf("herald_dispatch_sends_held_total rose by %v, want 1", got)
	}
	if len(log.attempts) != 1 {
		t.Fatalf("attempts %+v: want the one send recorded once", log.attempts)
	}
}
