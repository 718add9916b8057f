package webhooks

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRetentionConfigRefusesWhatWouldLetARedeliveredEventInAgain(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		key    string // "" when the config is valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"the shortest: the events topic's 24h plus 1h", func(c *Config) { c.DeliveredRetention, c.DeadLetterRetention = 25*time.Hour, 25*time.Hour }, ""},
		{"the longest: 90 days", func(c *Config) { c.DeliveredRetention, c.DeadLetterRetention = 2160*time.Hour, 2160*time.Hour }, ""},
		{"delivered zero", func(c *Config) { c.DeliveredRetention = 0 }, "delivered_retention"},
		{"delivered negative", func(c *Config) { c.DeliveredRetention = -72 * time.Hour }, "delivered_retention"},
		{"delivered within the events topic's retention", func(c *Config) { c.DeliveredRetention = 24 * time.Hour }, "delivered_retention"},
		{"delivered without the margin", func(c *Config) { c.DeliveredRetention = 25*time.Hour - time.Second }, "delivered_retention"},
		{"delivered within a longer horizon", func(c *Config) { c.Horizon, c.DeliveredRetention = 48*time.Hour, 48*time.Hour }, "delivered_retention"},
		{"delivered past a longer horizon and its margin", func(c *Config) { c.Horizon, c.DeliveredRetention = 48*time.Hour, 49*time.Hour }, ""},
		{"delivered absurd", func(c *Config) { c.DeliveredRetention = 1000 * 24 * time.Hour }, "delivered_retention"},
		{"dead letters zero", func(c *Config) { c.DeadLetterRetention = 0 }, "dead_letter_retention"},
		{"dead letters negative", func(c *Config) { c.DeadLetterRetention = -time.Hour }, "dead_letter_retention"},
		{"dead letters within the events topic's retention", func(c *Config) { c.DeadLetterRetention = 12 * time.Hour }, "dead_letter_retention"},
		{"dead letters within a longer horizon", func(c *Config) {
			c.Horizon, c.DeliveredRetention, c.DeadLetterRetention = 7*24*time.Hour, 8*24*time.Hour, 7*24*time.Hour
		}, "dead_letter_retention"},
		{"dead letters absurd", func(c *Config) { c.DeadLetterRetention = 91 * 24 * time.Hour }, "dead_letter_retention"},
		{"sweep interval zero", func(c *Config) { c.SweepInterval = 0 }, "sweep_interval"},
		{"sweep interval negative", func(c *Config) { c.SweepInterval = -time.Minute }, "sweep_interval"},
		{"sweep interval a day", func(c *Config) { c.SweepInterval = 24 * time.Hour }, "sweep_interval"},
		{"sweep batch zero", func(c *Config) { c.SweepBatch = 0 }, "sweep_batch"},
		{"sweep batch negative", func(c *Config) { c.SweepBatch = -1 }, "sweep_batch"},
		{"sweep batch absurd", func(c *Config) { c.SweepBatch = 1_000_000 }, "sweep_batch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.key == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), `"`+tt.key+`"`)
		})
	}
}

// fakeSweepStore holds the done_at of each kind's rows; it deletes as the store's deleteDone
// does, or fails with err (Postgres unreachable).
type fakeSweepStore struct {
	mu      sync.Mutex
	rows    map[string][]time.Time // status: done_at, sorted
	err     error
	batches []int64
	block   chan struct{} // when set, deleteDone waits for it to close
	started chan struct{} // deleteDone signals each call on it (when set)
	ctxErrs []error       // the ctx error each call saw when it went on
}

func (f *fakeSweepStore) deleteDone(ctx context.Context, status string, before, from time.Time, n int) (int64, time.Time, error) {
	if f.started != nil {
		f.started <- struct{}{}
	}
	if f.block != nil {
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ctxErrs = append(f.ctxErrs, ctx.Err())
	if f.err != nil {
		return 0, time.Time{}, f.err
	}
	var kept []time.Time
	var gone int64
	var last time.Time
	for _, at := range f.rows[status] {
		if gone < int64(n) && !at.Before(from) && at.Before(before) {
			gone, last = gone+1, at
			continue
		}
		kept = append(kept, at)
	}
	f.rows[status] = kept
	f.batches = append(f.batches, gone)
	return gone, last, nil
}

func (f *fakeSweepStore) oldestDone(_ context.Context, status string) (time.Time, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return time.Time{}, false, f.err
	}
	if len(f.rows[status]) == 0 {
		return time.Time{}, false, nil
	}
	return slices.MinFunc(f.rows[status], time.Time.Compare), true, nil
}

func TestSweepDeletesInBatchesUntilNoneIsLeftAndKeepsTheRecent(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	cfg.SweepBatch = 1000
	f := &fakeSweepStore{rows: map[string][]time.Time{}}
	for i := range 2500 { // 2,500 delivered past the 72h, 10 within it
		f.rows["delivered"] = append(f.rows["delivered"], now.Add(-cfg.DeliveredRetention-time.Hour-time.Duration(2500-i)*time.Second))
	}
	for i := range 10 {
		f.rows["delivered"] = append(f.rows["delivered"], now.Add(-cfg.DeliveredRetention+time.Duration(i+1)*time.Minute))
	}
	// Dead letters 4 days old: past the delivered retention, within their own.
	f.rows["dead"] = []time.Time{now.Add(-96 * time.Hour)}
	s := &Sweeper{Region: "zz-unit-1", Store: f, Cfg: cfg, Log: discard(), Now: func() time.Time { return now }}
	before := testutil.ToFloat64(deletedRows.WithLabelValues("zz-unit-1", "delivered"))

	res, err := s.Sweep(t.Context())
	require.NoError(t, err)
	require.Equal(t, SweepResult{Delivered: 2500}, res)
	require.Equal(t, []int64{1000, 1000, 500, 0}, f.batches, "three batches for the delivered, one finding no dead letter")
	require.Len(t, f.rows["delivered"], 10)
	require.Len(t, f.rows["dead"], 1)
	require.Equal(t, 2500.0, testutil.ToFloat64(deletedRows.WithLabelValues("zz-unit-1", "delivered"))-before)
	// The oldest left is 72h - 1m old: within the retention.
	require.Equal(t, (cfg.DeliveredRetention - time.Minute).Seconds(), testutil.ToFloat64(oldestAge.WithLabelValues("zz-unit-1", "delivered")))
	require.Equal(t, (96 * time.Hour).Seconds(), testutil.ToFloat64(oldestAge.WithLabelValues("zz-unit-1", "dead_letter")))
}

// TestOldestAgeGrowsPastTheRetentionWhileSweepsFail is the failure the age exists for: while
// the sweep cannot delete (Postgres refuses, then cannot be reached at all), the oldest
// delivered row's age climbs past the retention, one sweep after another, where a sweep that
// works keeps it within.
func TestOldestAgeGrowsPastTheRetentionWhileSweepsFail(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	f := &fakeSweepStore{rows: map[string][]time.Time{}}
	for i := range 100 { // a delivery a minute for 100 minutes
		f.rows["delivered"] = append(f.rows["delivered"], now.Add(time.Duration(i)*time.Minute))
	}
	clock := now
	s := &Sweeper{Region: "zz-fail-1", Store: f, Cfg: cfg, Log: discard(), Now: func() time.Time { return clock }}
	age := func() time.Duration {
		return time.Duration(testutil.ToFloat64(oldestAge.WithLabelValues("zz-fail-1", "delivered")) * float64(time.Second))
	}
	errsBefore := testutil.ToFloat64(sweepErrors.WithLabelValues("zz-fail-1"))

	// Working: 4 days on, the rows older than 72h are gone, the oldest left within the retention.
	clock = now.Add(72*time.Hour + 30*time.Minute)
	_, err := s.Sweep(t.Context())
	require.NoError(t, err)
	require.LessOrEqual(t, age(), cfg.DeliveredRetention)
	require.True(t, age() > 0, "rows are left")

	// Postgres refuses the deletes, then cannot be read either: each sweep fails, the age grows.
	f.mu.Lock()
	f.err = errors.New("connection refused")
	f.mu.Unlock()
	last := age()
	for range 4 {
		clock = clock.Add(20 * time.Minute)
		_, err := s.Sweep(t.Context())
		require.Error(t, err)
		require.True(t, age() > last, "age %s after %s", age(), last)
		last = age()
	}
	require.True(t, age() > cfg.DeliveredRetention, "age %s within the retention %s while nothing is deleted", age(), cfg.DeliveredRetention)
	require.Equal(t, 8.0, testutil.ToFloat64(sweepErrors.WithLabelValues("zz-fail-1"))-errsBefore, "4 sweeps x 2 kinds")

	// Back: the next sweep catches up.
	f.mu.Lock()
	f.err = nil
	f.mu.Unlock()
	_, err = s.Sweep(t.Context())
	require.NoError(t, err)
	require.LessOrEqual(t, age(), cfg.DeliveredRetention)
}

// TestRunFinishesTheBatchUnderWayWhenStopping stops the sweeper while a batch's delete is in
// Postgres: the batch goes on with a live context (it is not rolled back half done), no other
// batch starts, and Run returns.
func TestRunFinishesTheBatchUnderWayWhenStopping(t *testing.T) {
	now := time.Now()
	cfg := DefaultConfig()
	cfg.SweepBatch = 10
	f := &fakeSweepStore{rows: map[string][]time.Time{}, block: make(chan struct{}), started: make(chan struct{}, 10)}
	for range 100 {
		f.rows["delivered"] = append(f.rows["delivered"], now.Add(-100*time.Hour))
	}
	s := &Sweeper{Region: "zz-stop-1", Store: f, Cfg: cfg, Log: discard()}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-f.started // the first batch is in Postgres
	cancel()
	close(f.block)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	require.Equal(t, []error{nil}, f.ctxErrs, "one batch, not cancelled")
	require.Equal(t, []int64{10}, f.batches)
	require.Len(t, f.rows["delivered"], 90)
}

func TestDeleteDoneRefusesAStatusThatIsNotDone(t *testing.T) {
	s := &Store{}
	for _, status := range []string{"pending", "", "delivered' OR true --"} {
		_, _, err := s.deleteDone(t.Context(), status, time.Now(), time.Time{}, 10)
		require.Error(t, err, status)
		require.True(t, strings.Contains(err.Error(), "is not done"), status)
		_, _, err = s.oldestDone(t.Context(), status)
		require.Error(t, err, status)
	}
}

func TestCheckTopicRetentionRefusesRetentionsTheEventsTopicOutlasts(t *testing.T) {
	tests := []struct {
		name      string
		retention time.Duration
		forever   bool
		mutate    func(*Config)
		key       string
	}{
		{"the brokers' 24h", 24 * time.Hour, false, func(*Config) {}, ""},
		{"3 days less the margin", 71 * time.Hour, false, func(*Config) {}, ""},
		{"3 days: no margin left for 72h", 72 * time.Hour, false, func(*Config) {}, "delivered_retention"},
		{"a week", 7 * 24 * time.Hour, false, func(*Config) {}, "delivered_retention"},
		{"a week, delivered raised, dead letters kept 14 days", 7 * 24 * time.Hour, false, func(c *Config) { c.DeliveredRetention = 8 * 24 * time.Hour }, ""},
		{"20 days, delivered raised", 20 * 24 * time.Hour, false, func(c *Config) { c.DeliveredRetention = 21 * 24 * time.Hour }, "dead_letter_retention"},
		{"for ever", 0, true, func(*Config) {}, "delivered_retention"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(&c)
			err := c.CheckTopicRetention("zz-unit-1.events", tt.retention, tt.forever)
			if tt.key == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), `"`+tt.key+`"`)
			require.Contains(t, err.Error(), "zz-unit-1.events")
		})
	}
}
