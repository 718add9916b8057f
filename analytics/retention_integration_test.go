//go:build integration

package analytics

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// Minute data past minute_retention is deleted while the hourly sums stay; a query reaching
// past the horizon is answered in whole hours, and ingest refuses windows that old.
func TestMinuteDataPastTheRetentionIsSweptAndOldRangesAreAnsweredInWholeHours(t *testing.T) {
	s := startServiceWith(t, func(c *Config) { c.MinuteRetention = 48 * time.Hour })
	ctx := context.Background()
	store := NewStore(s.db)
	hour := time.Now().UTC().Truncate(time.Hour).Add(-72 * time.Hour)
	for _, p := range []struct {
		min int
		n   int64
	}{{10, 30}, {50, 70}} {
		if _, err := store.Save(ctx, batch("eu-west-1", hour.Add(time.Duration(p.min)*time.Minute), 0, c("shop", "social", "news", "push", "delivered", "", p.n, 10))); err != nil {
			t.Fatal(err)
		}
	}
	s.mustPost(t, euToken, batch("eu-west-1", window(5), 0, c("shop", "social", "news", "push", "delivered", "", 11, 10)))

	n, err := store.DeleteMinutesBefore(ctx, time.Now().Add(-48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 || s.count(t, "cells") != 1 {
		t.Errorf("swept %d rows, %d cells left; want 2 swept and the recent cell kept", n, s.count(t, "cells"))
	}

	// [hour+20m, hour+40m) holds no window, but its minutes are gone: it is answered as the
	// whole hour, from the hourly sums, and says so.
	var f Funnel
	q := "/v1/funnel?from=" + hour.Add(20*time.Minute).Format(time.RFC3339) + "&to=" + hour.Add(40*time.Minute).Format(time.RFC3339)
	if code := s.get(t, q, &f); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if d := stageMap(f)["delivered"]; d != 100 || !f.Filter.From.Equal(hour) || !f.Filter.To.Equal(hour.Add(time.Hour)) {
		t.Errorf("delivered %d over [%s, %s); want 100 over the whole hour %s", d, f.Filter.From, f.Filter.To, hour)
	}
	// A range from the old hour to now: the hour from the sums, recent minutes from cells.
	s.get(t, "/v1/funnel?from="+hour.Format(time.RFC3339), &f)
	if d := stageMap(f)["delivered"]; d != 111 {
		t.Errorf("from the old hour to now: delivered %d, want 111", d)
	}

	code, out := s.post(t, euToken, batch("eu-west-1", hour.Add(30*time.Minute), 1, c("shop", "social", "news", "push", "delivered", "", 10, 10)))
	if e := apiError(out); code != http.StatusBadRequest || e.Code != "window_too_old" || e.Field != "window_start" {
		t.Errorf("an old window: %d %+v, want 400 window_too_old", code, e)
	}
}
