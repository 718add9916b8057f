//go:build integration

package analytics

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/herald-notify/herald/analytics/wire"
)

// Queries read whole hours from cells_hourly and the minutes at the ends of the range from
// cells; both must give what the minute cells alone give, also after a batch is replaced.
func TestQueriesOverWholeHoursAgreeWithTheMinuteCellsAfterReplacements(t *testing.T) {
	s := startService(t)
	t0 := time.Now().UTC().Truncate(time.Hour).Add(-5 * time.Hour)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	delivered := func(n int64) wire.Cell { return c("shop", "social", "news", "push", "delivered", "", n, 10) }
	for _, p := range []struct {
		min int
		n   int64
	}{{-30, 10}, {10, 20}, {59, 40}, {65, 80}, {135, 160}} {
		b := batch("eu-west-1", at(p.min), 0, delivered(p.n), c("shop", "social", "news", "email", "fanned_out", "", 10, 10))
		fast := wire.NewHistogram("social", "push")
		fast.Counts[2], fast.DistinctRecipients = p.n, 10 // <= 250 ms
		b.Latency = []wire.Histogram{fast}
		s.mustPost(t, euToken, b)
	}
	// Replace the batch at minute 59 (now with a slow histogram), then add a second batch to
	// its window.
	replacement := batch("eu-west-1", at(59), 0, delivered(400))
	slow := wire.NewHistogram("social", "push")
	slow.Counts[9], slow.DistinctRecipients = 30, 10 // <= 60 s
	replacement.Latency = []wire.Histogram{slow}
	if got := s.mustPost(t, euToken, replacement); got != Replaced {
		t.Fatalf("replacement: %s", got)
	}
	s.mustPost(t, euToken, batch("eu-west-1", at(59), 1, delivered(15)))

	store := NewStore(s.db)
	q := &Queries{store: store, slo: s.cfg.SLO, prices: s.cfg.Prices}
	ctx := context.Background()
	naive := func(from, to time.Time) int64 {
		var n int64
		if err := s.db.QueryRow(ctx, `SELECT coalesce(sum(count), 0)::bigint FROM cells WHERE stage = 'delivered' AND window_start >= $1 AND window_start < $2`, from, to).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	viaQueries := func(from, to time.Time) int64 {
		f, err := q.Funnel(ctx, Filter{From: from, To: to})
		if err != nil {
			t.Fatal(err)
		}
		return stageMap(f)["delivered"]
	}
	tests := []struct {
		name     string
		from, to int
		want     int64
	}{
		{"ragged ends around two whole hours", -45, 140, 10 + 20 + 400 + 15 + 80 + 160},
		{"exactly two whole hours", 0, 120, 20 + 400 + 15 + 80},
		{"no whole hour inside", 5, 70, 20 + 400 + 15 + 80},
		{"minutes then whole hours", 30, 180, 400 + 15 + 80 + 160},
		{"whole hours then minutes", 0, 136, 20 + 400 + 15 + 80 + 160},
		{"one minute", 59, 60, 415},
	}
	for _, tt := range tests {
		from, to := at(tt.from), at(tt.to)
		if got := viaQueries(from, to); got != tt.want || naive(from, to) != tt.want {
			t.Errorf("%s: queries %d, minute cells %d, want %d", tt.name, got, naive(from, to), tt.want)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 40 {
		a, b := rng.IntN(300)-60, rng.IntN(300)-60
		if a == b {
			continue
		}
		from, to := at(min(a, b)), at(max(a, b))
		if got, want := viaQueries(from, to), naive(from, to); got != want {
			t.Errorf("[%d, %d) minutes: queries %d, minute cells %d", min(a, b), max(a, b), got, want)
		}
	}
	var hourly int64
	if err := s.db.QueryRow(ctx, `SELECT count FROM cells_hourly WHERE hour = $1 AND stage = 'delivered'`, t0).Scan(&hourly); err != nil {
		t.Fatal(err)
	}
	if hourly != 20+400+15 {
		t.Errorf("hourly sum of the replaced hour = %d, want %d", hourly, 20+400+15)
	}
	// Latency over [0, 120): 20 + 80 fast (minutes 10 and 65; minute 59's fast histogram was
	// replaced by 30 slow ones): p50 250 ms, p99 60 s.
	l, err := q.Latency(ctx, Filter{From: at(0), To: at(120), Tier: "social"})
	if err != nil {
		t.Fatal(err)
	}
	if tl := l.Tiers[0]; tl.Count != 130 || ptr(tl.P50) != "250" || ptr(tl.P99) != "60000" {
		t.Errorf("latency over two whole hours: count %d p50 %s p99 %s; want 130, 250, 60000", tl.Count, ptr(tl.P50), ptr(tl.P99))
	}
	for range 20 {
		a, b := rng.IntN(300)-60, rng.IntN(300)-60
		if a == b {
			continue
		}
		from, to := at(min(a, b)), at(max(a, b))
		l, err := q.Latency(ctx, Filter{From: from, To: to, Tier: "social"})
		if err != nil {
			t.Fatal(err)
		}
		var want int64
		if err := s.db.QueryRow(ctx, `SELECT coalesce(sum(n), 0)::bigint FROM latency, unnest(counts) AS n WHERE window_start >= $1 AND window_start < $2`, from, to).Scan(&want); err != nil {
			t.Fatal(err)
		}
		if l.Tiers[0].Count != want {
			t.Errorf("latency [%d, %d): %d observations, minute histograms %d", min(a, b), max(a, b), l.Tiers[0].Count, want)
		}
	}
	var cost Cost
	s.get(t, "/v1/cost?from="+at(-60).Format(time.RFC3339)+"&to="+at(180).Format(time.RFC3339), &cost)
	for _, ch := range cost.Channels {
		if ch.Channel == "push" && ch.Messages != 685 {
			t.Errorf("cost counts %d delivered push messages, want 685", ch.Messages)
		}
	}
}
