//go:build integration

package analytics

import (
	"context"
	"testing"
	"time"

	"github.com/herald-notify/herald/analytics/wire"
)

func TestSeriesCountsStagesPerStepAndAddsUpToTheFunnel(t *testing.T) {
	s := startService(t)
	t0 := time.Now().UTC().Truncate(time.Hour).Add(-5 * time.Hour)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	for _, p := range []struct {
		min int
		n   int64
	}{{-30, 10}, {10, 20}, {59, 40}, {65, 80}, {135, 160}} {
		s.mustPost(t, euToken, batch("eu-west-1", at(p.min), 0,
			c("shop", "social", "news", "push", "delivered", "", p.n, 10),
			c("shop", "social", "news", wire.ChannelAll, "accepted", "", p.n+5, 10)))
	}
	q := &Queries{store: NewStore(s.db), slo: s.cfg.SLO, prices: s.cfg.Prices}
	ctx := context.Background()
	tests := []struct {
		name     string
		from, to int
		step     string
		want     map[int]int64 // bucket start (minutes from t0) -> delivered; others 0
		buckets  int
	}{
		{"hours, with partial first and last", -45, 140, "1h0m0s", map[int]int64{-60: 10, 0: 60, 60: 80, 120: 160}, 4},
		{"minutes", 50, 70, "1m0s", map[int]int64{59: 40, 65: 80}, 20},
		{"days", -60 * 24 * 10, 180, "24h0m0s", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := Filter{From: at(tt.from), To: at(tt.to)}
			got, err := q.Series(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if got.Step != tt.step {
				t.Fatalf("step %s, want %s", got.Step, tt.step)
			}
			funnel, err := q.Funnel(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			var sum, accepted int64
			for _, b := range got.Buckets {
				sum += b.Counts["delivered"]
				accepted += b.Counts["accepted"]
				if tt.want != nil {
					m := int(b.Start.Sub(t0) / time.Minute)
					if b.Counts["delivered"] != tt.want[m] {
						t.Errorf("bucket %+d min: delivered %d, want %d", m, b.Counts["delivered"], tt.want[m])
					}
				}
			}
			if tt.buckets != 0 && len(got.Buckets) != tt.buckets {
				t.Errorf("%d buckets, want %d", len(got.Buckets), tt.buckets)
			}
			fm := stageMap(funnel)
			if sum != fm["delivered"] || accepted != fm["accepted"] {
				t.Errorf("series sums delivered %d accepted %d; the funnel %d and %d", sum, accepted, fm["delivered"], fm["accepted"])
			}
		})
	}
}
