package webhooks

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/notify"
)

func TestSignVerifiesWithTheStandardWebhooksLibrary(t *testing.T) {
	key := []byte("0123456789abcdefghijklmn")
	secret := FormatSecret(key)
	require.True(t, strings.HasPrefix(secret, "whsec_"))
	at := time.Now()
	body := []byte(`{"type":"notification.delivered"}`)
	tests := []struct {
		name    string
		mutate  func(h http.Header, body []byte) []byte
		wantErr error
	}{
		{"as signed", func(http.Header, []byte) []byte { return body }, nil},
		{"body changed", func(_ http.Header, b []byte) []byte { return []byte(`{"type":"notification.failed"}`) }, standardwebhooks.ErrNoMatchingSignature},
		{"id changed", func(h http.Header, b []byte) []byte { h.Set("webhook-id", "msg_other"); return b }, standardwebhooks.ErrNoMatchingSignature},
		{"timestamp changed", func(h http.Header, b []byte) []byte {
			h.Set("webhook-timestamp", strconv.FormatInt(at.Add(-time.Hour).Unix(), 10))
			return b
		}, standardwebhooks.ErrMessageTooOld},
		{"signature missing", func(h http.Header, b []byte) []byte { h.Del("webhook-signature"); return b }, standardwebhooks.ErrRequiredHeaders},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := Sign([][]byte{key}, "msg_1", at, body)
			require.NoError(t, err)
			require.Equal(t, "msg_1", h.Get("webhook-id"))
			require.True(t, strings.HasPrefix(h.Get("webhook-signature"), "v1,"))
			got := tt.mutate(h, body)
			wh, err := standardwebhooks.NewWebhook(secret)
			require.NoError(t, err)
			err = wh.Verify(got, h)
			if tt.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tt.wantErr)
			}
		})
	}
	// Another secret does not verify it.
	h, _ := Sign([][]byte{key}, "msg_1", at, body)
	other, _ := standardwebhooks.NewWebhook(FormatSecret([]byte("another key of 24 bytes!")))
	require.ErrorIs(t, other.Verify(body, h), standardwebhooks.ErrNoMatchingSignature)
}

func TestFormatSecretIsBase64OfTheKey(t *testing.T) {
	key := []byte{0, 1, 2, 255}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(FormatSecret(key), "whsec_"))
	require.NoError(t, err)
	require.Equal(t, key, raw)
}

func TestEventsMapStagesToTypes(t *testing.T) {
	at := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	b := notify.EventBatch{App: "a", Tier: "transactional", Category: "otp", NotificationID: "n1", At: at, Outcomes: []notify.Outcome{
		{User: "ada", Channel: notify.ChannelAll, Stage: notify.StageAccepted},
		{User: "ada", Channel: notify.Email, Stage: notify.StageSuppressed, Reason: "bounced"},
		{User: "ada", Channel: notify.ChannelAll, Stage: notify.StageDeferred, Reason: "quiet_hours"},
		{User: "ada", Channel: notify.Push, Stage: notify.StageFannedOut},
		{User: "ada", Channel: notify.Push, Stage: notify.StageDispatched},
		{User: "ada", Channel: notify.Push, Stage: notify.StageDelivered},
		{User: "ada", Channel: notify.SMS, Stage: notify.StageFailed, Reason: "permanent"},
		{User: "ada", Channel: notify.SMS, Stage: notify.StageDeadLettered, Reason: "transient"},
		{User: "ada", Channel: notify.Push, Stage: notify.StageExpired},
		{User: "ada", Channel: notify.InApp, Stage: notify.StageRead},
		{User: "ada", Channel: notify.Email, Stage: notify.StageComplained},
		{User: "ada", Channel: notify.Email, Stage: notify.StageUnsubscribed},
		{User: "", Channel: notify.InApp, Stage: notify.StageRead}, // no user: nothing to tell
	}}
	tests := []struct{ typ, channel, reason string }{
		{TypeAccepted, "all", ""},
		{TypeSuppressed, "email", "bounced"},
		{TypeDeferred, "all", "quiet_hours"},
		{TypeSent, "push", ""},
		{TypeDelivered, "push", ""},
		{TypeFailed, "sms", "permanent"},
		{TypeFailed, "sms", "dead_lettered"},
		{TypeExpired, "push", ""},
		{TypeRead, "in_app", ""},
		{TypeComplained, "email", ""},
		{TypeUnsubscribed, "email", ""},
	}
	got := Events(b)
	require.Len(t, got, len(tests))
	ids := map[string]bool{}
	for i, tt := range tests {
		e := got[i]
		require.Equal(t, tt.typ, e.Type, "event %d", i)
		require.Equal(t, tt.channel, e.Data.Channel, "event %d", i)
		require.Equal(t, tt.reason, e.Data.Reason, "event %d", i)
		require.Equal(t, "n1", e.Data.NotificationID)
		require.Equal(t, "ada", e.Data.UserID)
		require.False(t, ids[e.ID], "event ids are unique per outcome")
		ids[e.ID] = true
		var p map[string]any
		require.NoError(t, json.Unmarshal(e.Payload(), &p))
		require.Equal(t, tt.typ, p["type"])
		require.Equal(t, "2026-12-07T02:00:00Z", p["timestamp"])
		require.NotContains(t, string(e.Payload()), "body", "no message content in a payload")
	}
	// The same outcome read again (a redelivered record, later) has the same id.
	b.At = at.Add(time.Hour)
	require.Equal(t, got[4].ID, Events(b)[4].ID)
	// Every type is in the public vocabulary.
	for _, e := range got {
		require.Contains(t, wire.WebhookEventTypes, e.Type)
	}
	require.Equal(t, wire.WebhookEventTypes, Types)
}

func TestEventIDSeparatesItsParts(t *testing.T) {
	require.NotEqual(t, EventID("a", "n", "u1", "push", "sent"), EventID("a", "n", "u", "1push", "sent"))
	require.NotEqual(t, EventID("a", "n", "u", "push", "sent"), EventID("b", "n", "u", "push", "sent"))
	require.True(t, wire.ValidID(EventID("a", "n", "u", "push", "sent")))
}

func TestDeliveriesMatchFiltersAndRegistrationTime(t *testing.T) {
	at := time.Now()
	b := notify.EventBatch{App: "a", NotificationID: "n1", At: at, Outcomes: []notify.Outcome{
		{User: "ada", Channel: notify.ChannelAll, Stage: notify.StageAccepted},
		{User: "ada", Channel: notify.Push, Stage: notify.StageDelivered},
	}}
	tests := []struct {
		name    string
		targets []target
		want    []string // endpoint/type
	}{
		{"no endpoint", nil, nil},
		{"every type", []target{{ID: "e1", CreatedAt: at.Add(-time.Hour)}}, []string{"e1/" + TypeAccepted, "e1/" + TypeDelivered}},
		{"filtered", []target{{ID: "e1", EventTypes: []string{TypeDelivered}, CreatedAt: at}}, []string{"e1/" + TypeDelivered}},
		{"two endpoints", []target{{ID: "e1", EventTypes: []string{TypeAccepted}}, {ID: "e2"}}, []string{"e1/" + TypeAccepted, "e2/" + TypeAccepted, "e2/" + TypeDelivered}},
		{"registered after the event", []target{{ID: "e1", CreatedAt: at.Add(time.Minute)}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, d := range Deliveries(b, tt.targets) {
				got = append(got, d.Endpoint+"/"+d.Type)
				require.Equal(t, "ada", d.User)
				require.NotEmpty(t, d.Payload)
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func TestScheduleBacksOffExponentiallyUntilTheHorizon(t *testing.T) {
	s := Schedule{Initial: 5 * time.Second, Multiplier: 2, Max: time.Hour, Horizon: 24 * time.Hour}
	tests := []struct {
		attempts int
		want     time.Duration
	}{{1, 5 * time.Second}, {2, 10 * time.Second}, {3, 20 * time.Second}, {10, 2560 * time.Second}, {11, time.Hour}, {30, time.Hour}}
	for _, tt := range tests {
		require.Equal(t, tt.want, s.Wait(tt.attempts), "attempt %d", tt.attempts)
	}
	first := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	// An injected clock walks the whole schedule: attempts until the horizon, one at it, then dead.
	now, attempts := first, 0
	var times []time.Time
	for {
		attempts++
		next, ok := s.Next(attempts, first, now)
		if !ok {
			break
		}
		require.True(t, next.After(now))
		times = append(times, next)
		now = next
	}
	require.Equal(t, first.Add(24*time.Hour), times[len(times)-1], "the last attempt is at the horizon")
	require.Less(t, len(times), 40)
	require.Greater(t, len(times), 20)
	// Jitter stays within its share.
	j := Schedule{Initial: time.Second, Multiplier: 2, Max: time.Minute, Jitter: 0.2, Horizon: time.Hour}
	for range 100 {
		w := j.Wait(3)
		require.GreaterOrEqual(t, w, 3200*time.Millisecond)
		require.LessOrEqual(t, w, 4800*time.Millisecond+time.Millisecond)
	}
}

func TestConfigValidateNamesTheKey(t *testing.T) {
	require.NoError(t, DefaultConfig().Validate())
	tests := []struct {
		key    string
		mutate func(*Config)
	}{
		{"horizon", func(c *Config) { c.Horizon = 0 }},
		{"initial_interval", func(c *Config) { c.InitialInterval = 0 }},
		{"multiplier", func(c *Config) { c.Multiplier = 0.5 }},
		{"max_interval", func(c *Config) { c.MaxInterval = time.Millisecond }},
		{"jitter", func(c *Config) { c.Jitter = 1 }},
		{"timeout", func(c *Config) { c.Timeout = time.Hour }},
		{"poll_interval", func(c *Config) { c.PollInterval = 0 }},
		{"batch", func(c *Config) { c.Batch = 0 }},
		{"concurrency", func(c *Config) { c.Concurrency = 0 }},
		{"breaker.consecutive_failures", func(c *Config) { c.Breaker.ConsecutiveFailures = 0 }},
		{"breaker.open_for", func(c *Config) { c.Breaker.OpenFor = 0 }},
		{"takeover_after", func(c *Config) { c.TakeoverAfter = time.Second }},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.mutate(&c)
		err := c.Validate()
		require.Error(t, err, tt.key)
		require.Contains(t, err.Error(), `"`+tt.key+`"`)
	}
}

// fakeStore is an in-memory deliveryStore: what the deliverer claimed and how each ended.
type fakeStore struct {
	mu      sync.Mutex
	now     func() time.Time
	rows    map[string]*pending
	results map[string]outcome
	due     map[string]time.Time
	claims  []time.Duration // the takeover of each claim
}

func newFakeStore(now func() time.Time, ps ...pending) *fakeStore {
	f := &fakeStore{now: now, rows: map[string]*pending{}, results: map[string]outcome{}, due: map[string]time.Time{}}
	for i := range ps {
		f.rows[ps[i].EventID] = &ps[i]
		f.due[ps[i].EventID] = now()
	}
	return f
}

func (f *fakeStore) claim(_ context.Context, _ string, n int, lease, takeover time.Duration) ([]pending, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.claims = append(f.claims, takeover)
	var out []pending
	for id, p := range f.rows {
		if r, ok := f.results[id]; ok && r.Status != "pending" {
			continue
		}
		if f.due[id].After(f.now()) || len(out) == n {
			continue
		}
		f.due[id] = f.now().Add(lease)
		out = append(out, *p)
	}
	return out, nil
}

func (f *fakeStore) settle(_ context.Context, rs []settled) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range rs {
		f.results[r.p.EventID] = r.o
		f.rows[r.p.EventID].Attempts = r.o.Attempts
		f.due[r.p.EventID] = r.o.Next
	}
	return nil
}

func TestDelivererRetriesThenDeliversSigned(t *testing.T) {
	key := []byte("0123456789abcdefghijklmn")
	wh, _ := standardwebhooks.NewWebhook(FormatSecret(key))
	var calls atomic.Int32
	var failFor atomic.Int32
	failFor.Store(2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		body := make([]byte, r.ContentLength)
		_, _ = r.Body.Read(body)
		if err := wh.Verify(body, r.Header); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if failFor.Add(-1) >= 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	clock := time.Now() // the receiver checks the timestamp against its own clock (5 min tolerance)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	p := pending{delivery: delivery{App: "a", Endpoint: "e1", EventID: "msg_1", Type: TypeDelivered, Payload: []byte(`{"type":"notification.delivered"}`)},
		URL: srv.URL, Key: key, FirstAt: now()}
	store := newFakeStore(now, p)
	cfg := DefaultConfig()
	cfg.Jitter = 0
	d := &Deliverer{Region: "r", Store: store, Cfg: cfg, Client: NewClient(time.Second, true), Log: discard(), Now: now}
	ctx := context.Background()

	_, err := d.Pass(ctx)
	require.NoError(t, err)
	require.Equal(t, "pending", store.results["msg_1"].Status)
	require.Equal(t, 1, store.results["msg_1"].Attempts)
	require.Equal(t, http.StatusServiceUnavailable, store.results["msg_1"].HTTP)

	// Not due yet: nothing claimed.
	require.Equal(t, now().Add(5*time.Second), store.results["msg_1"].Next, "the first wait is initial_interval")
	n, _ := d.Pass(ctx)
	require.Zero(t, n)
	advance(5 * time.Second)
	_, _ = d.Pass(ctx)
	require.Equal(t, 2, store.results["msg_1"].Attempts)
	require.Equal(t, now().Add(10*time.Second), store.results["msg_1"].Next, "the second wait doubles")
	advance(10 * time.Second)
	_, _ = d.Pass(ctx)
	require.Equal(t, "delivered", store.results["msg_1"].Status)
	require.Equal(t, int32(3), calls.Load())
}

func TestDelivererDeadLettersPastTheHorizon(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) }))
	defer srv.Close()
	start := time.Now()
	p := pending{delivery: delivery{App: "a", Endpoint: "e1", EventID: "msg_1", Payload: []byte(`{}`)}, URL: srv.URL, Key: []byte("k"),
		FirstAt: start.Add(-25 * time.Hour), Attempts: 30}
	store := newFakeStore(time.Now, p)
	d := &Deliverer{Region: "r", Store: store, Cfg: DefaultConfig(), Client: NewClient(time.Second, true), Log: discard()}
	_, err := d.Pass(context.Background())
	require.NoError(t, err)
	require.Equal(t, "dead", store.results["msg_1"].Status)
	require.Equal(t, 31, store.results["msg_1"].Attempts)
	require.Contains(t, store.results["msg_1"].Error, "500")
}

func TestDelivererDeadLettersADisabledEndpointsDeliveryWithoutSending(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls.Add(1) }))
	defer srv.Close()
	p := pending{delivery: delivery{App: "a", Endpoint: "e1", EventID: "msg_1", Payload: []byte(`{}`)}, URL: srv.URL, Key: []byte("k"), FirstAt: time.Now(), Disabled: true}
	store := newFakeStore(time.Now, p)
	d := &Deliverer{Region: "r", Store: store, Cfg: DefaultConfig(), Client: NewClient(time.Second, true), Log: discard()}
	_, err := d.Pass(context.Background())
	require.NoError(t, err)
	require.Equal(t, "dead", store.results["msg_1"].Status)
	require.Equal(t, "endpoint disabled", store.results["msg_1"].Error)
	require.Equal(t, int32(0), calls.Load())
}

func TestBreakerOpensPerEndpointAndPostponesWithoutAnAttempt(t *testing.T) {
	var badCalls, goodCalls atomic.Int32
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		badCalls.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer bad.Close()
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { goodCalls.Add(1) }))
	defer good.Close()
	cfg := DefaultConfig()
	cfg.Breaker = BreakerConfig{ConsecutiveFailures: 3, OpenFor: 200 * time.Millisecond}
	cfg.Concurrency = 1
	var ps []pending
	for i := range 6 {
		ps = append(ps, pending{delivery: delivery{App: "a", Endpoint: "bad", EventID: "bad-" + string(rune('a'+i)), Payload: []byte(`{}`)}, URL: bad.URL, Key: []byte("k"), FirstAt: time.Now()})
	}
	ps = append(ps, pending{delivery: delivery{App: "a", Endpoint: "good", EventID: "good-a", Payload: []byte(`{}`)}, URL: good.URL, Key: []byte("k"), FirstAt: time.Now()})
	store := newFakeStore(time.Now, ps...)
	d := &Deliverer{Region: "r", Store: store, Cfg: cfg, Client: NewClient(time.Second, true), Log: discard()}
	_, err := d.Pass(context.Background())
	require.NoError(t, err)
	require.Equal(t, int32(3), badCalls.Load(), "the breaker opened after 3 failures: the other 3 were not sent")
	postponed := 0
	for id, o := range store.results {
		if strings.HasPrefix(id, "bad-") && o.Postponed {
			postponed++
			require.Equal(t, 0, o.Attempts, "a postponed delivery counts no attempt")
			require.Equal(t, "pending", o.Status)
		}
	}
	require.Equal(t, 3, postponed)
	require.Equal(t, "delivered", store.results["good-a"].Status, "another endpoint's breaker is its own")
	require.Equal(t, int32(1), goodCalls.Load())

	// After open_for, one probe goes out (half-open); its failure opens the breaker again.
	time.Sleep(250 * time.Millisecond)
	cb := d.breakers.get("bad")
	_, err = cb.Execute(func() (int, error) { return 0, errors.New("probe failed") })
	require.Error(t, err)
	require.Equal(t, "open", cb.State().String())
}

func TestCheckWebhookURL(t *testing.T) {
	tests := []struct {
		url      string
		loopback bool
		ok       bool
	}{
		{"https://example.com/hook", false, true},
		{"https://example.com:8443/a/b?x=1", false, true},
		{"http://example.com/hook", false, false},
		{"http://example.com/hook", true, false},
		{"http://127.0.0.1:8447/hooks/eu", true, true},
		{"http://127.0.0.1:8447/hooks/eu", false, false},
		{"http://[::1]:80/", true, true},
		{"http://localhost/", true, true},
		{"https://user:pass@example.com/", false, false},
		{"https://example.com/#frag", false, false},
		{"ftp://example.com/", false, false},
		{"/relative", false, false},
		{"https://", false, false},
		{"https://exa mple.com/", false, false},
		{"https://example.com/" + strings.Repeat("a", 2100), false, false},
	}
	for _, tt := range tests {
		e := wire.CheckWebhookURL(tt.url, tt.loopback)
		require.Equal(t, tt.ok, e == nil, "%q loopback=%v: %v", tt.url, tt.loopback, e)
		if e != nil {
			require.Equal(t, "url", e.Field)
		}
	}
}

func TestDeliveriesReachOnlyPublicAddresses(t *testing.T) {
	tests := []struct {
		addr     string
		loopback bool
		ok       bool
	}{
		{"93.184.216.34:443", false, true},
		{"[2606:2800:220:1::]:443", false, true},
		{"127.0.0.1:8447", false, false},
		{"127.0.0.1:8447", true, true},
		{"[::1]:80", true, true},
		{"10.0.0.5:443", true, false},
		{"172.16.1.1:443", false, false},
		{"192.168.1.1:443", false, false},
		{"169.254.169.254:80", true, false}, // cloud metadata
		{"[fe80::1]:443", false, false},
		{"[fd00::1]:443", false, false},
		{"0.0.0.0:443", true, false},
		{"100.64.0.1:443", false, false},
		{"[::ffff:10.0.0.1]:443", false, false},
		{"224.0.0.1:443", false, false},
		{"nonsense", true, false},
	}
	for _, tt := range tests {
		err := checkDestination(tt.addr, tt.loopback)
		if (err == nil) != tt.ok {
			t.Errorf("%s (loopback %v): %v", tt.addr, tt.loopback, err)
		}
		if err != nil && !errors.Is(err, errForbiddenDestination) {
			t.Errorf("%s: %v is not errForbiddenDestination", tt.addr, err)
		}
	}
	// The client refuses before connecting: a loopback server is not reached without the flag.
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls.Add(1) }))
	defer srv.Close()
	resp, err := NewClient(time.Second, false).Post(srv.URL, "application/json", strings.NewReader(`{}`))
	if err == nil {
		resp.Body.Close()
	}
	require.ErrorIs(t, err, errForbiddenDestination)
	require.Equal(t, int32(0), calls.Load())
}

func TestRunDeliversEachOnceAndASlowEndpointHoldsOnlyItsOwn(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("webhook-id")]++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer fast.Close()
	var ps []pending
	for i := range 4 {
		ps = append(ps, pending{delivery: delivery{App: "a", Endpoint: "slow", EventID: "slow-" + strconv.Itoa(i), Payload: []byte(`{}`)}, URL: slow.URL, Key: []byte("k"), FirstAt: time.Now()})
	}
	for i := range 300 {
		ps = append(ps, pending{delivery: delivery{App: "a", Endpoint: "fast", EventID: "fast-" + strconv.Itoa(i), Payload: []byte(`{}`)}, URL: fast.URL, Key: []byte("k"), FirstAt: time.Now()})
	}
	store := newFakeStore(time.Now, ps...)
	cfg := DefaultConfig()
	cfg.Concurrency, cfg.Batch, cfg.PollInterval, cfg.Timeout = 8, 50, 10*time.Millisecond, 30*time.Second
	d := &Deliverer{Region: "r", Store: store, Cfg: cfg, Client: NewClient(cfg.Timeout, true), Log: discard()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		store.mu.Lock()
		n := 0
		for id, o := range store.results {
			if strings.HasPrefix(id, "fast-") && o.Status == "delivered" {
				n++
			}
		}
		store.mu.Unlock()
		if n == 300 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 300 delivered while 4 slow deliveries hang", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	require.NoError(t, <-done)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, 300)
	for id, n := range seen {
		require.Equal(t, 1, n, id)
	}
	// The hanging attempts ended with the run and were recorded as failed attempts.
	for i := range 4 {
		o := store.results["slow-"+strconv.Itoa(i)]
		require.Equal(t, "pending", o.Status)
		require.Equal(t, 1, o.Attempts)
	}
}

// TestRunLooksForAnotherRegionsOverdueDeliveriesNowAndThen: Run's first claim takes over
// another region's overdue deliveries, and then one claim every TakeoverAfter/8; the others
// take this region's only (looking for the others scans this region's overdue backlog too).
func TestRunLooksForAnotherRegionsOverdueDeliveriesNowAndThen(t *testing.T) {
	store := newFakeStore(time.Now)
	cfg := DefaultConfig()
	cfg.PollInterval, cfg.TakeoverAfter = 10*time.Millisecond, 800*time.Millisecond // every 100 ms
	d := &Deliverer{Region: "r", Store: store, Cfg: cfg, Client: NewClient(time.Second, true), Log: discard()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- d.Run(ctx) }()
	time.Sleep(450 * time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	elapsed := time.Since(start)
	store.mu.Lock()
	defer store.mu.Unlock()
	require.NotEmpty(t, store.claims)
	require.Equal(t, cfg.TakeoverAfter, store.claims[0], "the first claim")
	takeovers := 0
	for _, tk := range store.claims {
		if tk != 0 {
			require.Equal(t, cfg.TakeoverAfter, tk)
			takeovers++
		}
	}
	require.Less(t, takeovers, 2+int(elapsed/(100*time.Millisecond)), "claims taking over, of %d", len(store.claims))
	require.Greater(t, len(store.claims)-takeovers, takeovers, "claims of this region's only")
}
