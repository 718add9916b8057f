package erasure

import (
	"slices"
	"testing"
	"time"
)

func TestBucketsCoverEveryMonthARowCanLiveInAtThatInstant(t *testing.T) {
	for _, tc := range []struct {
		name string
		now  time.Time
		ttl  time.Duration
		want []int
	}{
		{"90 days mid-month", time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC), 90 * 24 * time.Hour, []int{202611, 202610, 202609, 202608, 202607}},
		{"first instant of a month", time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC), 30 * 24 * time.Hour, []int{202702, 202701, 202612}},
		{"last instant of a month", time.Date(2027, 1, 31, 23, 59, 59, 0, time.UTC), 30 * 24 * time.Hour, []int{202701, 202612, 202611}},
		{"across a year", time.Date(2027, 1, 3, 0, 0, 0, 0, time.UTC), 0, []int{202701, 202612}},
		{"another zone is read as UTC", time.Date(2027, 3, 1, 0, 30, 0, 0, time.FixedZone("", 2*3600)), 0, []int{202702, 202701}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Buckets(tc.now, tc.ttl); !slices.Equal(got, tc.want) {
				t.Fatalf("Buckets(%v, %v) = %v, want %v", tc.now, tc.ttl, got, tc.want)
			}
		})
	}
}
