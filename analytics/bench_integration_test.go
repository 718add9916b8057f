//go:build integration

package analytics

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/analytics/wire"
)

// windowCells returns n distinct cells shaped like a busy region's minute: per app, tier and
// channel, the stages a delivery goes through.
func windowCells(n int) []wire.Cell {
	stages := []string{"fanned_out", "dispatched", "delivered", "read"}
	out := make([]wire.Cell, 0, n)
	for a := 0; ; a++ {
		for _, tier := range wire.Tiers {
			for _, ch := range wire.Channels {
				for _, st := range stages {
					if len(out) == n {
						return out
					}
					out = append(out, c(fmt.Sprintf("app%03d", a), tier, "news", ch, st, "", int64(20+len(out)%50), 20))
				}
			}
		}
	}
}

// BenchmarkIngestBatchOf500Cells posts distinct 500-cell batches over HTTP, one at a time.
func BenchmarkIngestBatchOf500Cells(b *testing.B) {
	s := startService(b)
	cells := windowCells(500)
	start := window(60 * 24 * 30)
	b.ResetTimer()
	for i := range b.N {
		s.mustPost(b, euToken, batch("eu-west-1", start.Add(time.Duration(i)*time.Minute), 0, cells...))
	}
	b.ReportMetric(float64(b.N*len(cells))/b.Elapsed().Seconds(), "cells/s")
}

// BenchmarkQueriesOverADayOfThreeRegions: a day of 1-minute windows from three regions, 200
// cells and 12 latency histograms each (864,000 cells), then the queries of the whole day.
func BenchmarkQueriesOverADayOfThreeRegions(b *testing.B) {
	s := startService(b)
	s.cfg.Regions["eu-central-1"] = RegionConfig{Token: "unused-in-this-benchmark"}
	store := NewStore(s.db)
	cells := windowCells(200)
	var hists []wire.Histogram
	for _, tier := range wire.Tiers {
		for _, ch := range wire.Channels {
			h := wire.NewHistogram(tier, ch)
			h.Counts[3], h.Counts[6], h.DistinctRecipients = 90, 10, 60
			hists = append(hists, h)
		}
	}
	day := window(60 * 24)
	ctx := context.Background()
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for _, region := range []string{"eu-west-1", "eu-central-1", "us-east-1"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range 24 * 60 {
				bt := batch(region, day.Add(time.Duration(m)*time.Minute), 0, cells...)
				bt.Latency = hists
				if _, err := store.Save(ctx, bt); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	b.Logf("stored 3 x 1440 windows x %d cells in %s", len(cells), time.Since(t0).Round(time.Millisecond))
	if _, err := s.db.Exec(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}
	q := &Queries{store: store, slo: s.cfg.SLO, prices: s.cfg.Prices}
	f := Filter{From: day, To: day.Add(24 * time.Hour)}
	for _, tt := range []struct {
		name string
		run  func() error
	}{
		{"funnel", func() error { _, err := q.Funnel(ctx, f); return err }},
		{"funnel_one_region_sms", func() error {
			g := f
			g.Region, g.Channel = "us-east-1", "sms"
			_, err := q.Funnel(ctx, g)
			return err
		}},
		{"cost", func() error { _, err := q.Cost(ctx, f); return err }},
		{"latency", func() error { _, err := q.Latency(ctx, f); return err }},
	} {
		b.Run(tt.name, func(b *testing.B) {
			for range b.N {
				if err := tt.run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
