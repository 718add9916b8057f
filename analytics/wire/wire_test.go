package wire

import (
	"testing"
	"time"
)

func TestHistogramObserveUsesInclusiveUpperBounds(t *testing.T) {
	h := NewHistogram("social", "push")
	for _, ms := range []int64{0, 50, 51, 5000, 5001, 1 << 40} {
		h.Observe(time.Duration(ms) * time.Millisecond)
	}
	want := map[int]int64{0: 2, 1: 1, 6: 1, 7: 1, len(LatencyBoundsMS): 1}
	for i, c := range h.Counts {
		if c != want[i] {
			t.Errorf("bucket %d = %d, want %d", i, c, want[i])
		}
	}
	if h.Total() != 6 {
		t.Errorf("total = %d, want 6", h.Total())
	}
}

func TestReasonsAreRequiredForAndOnlyForTheStagesThatHaveThem(t *testing.T) {
	tests := []struct {
		stage, reason string
		ok            bool
	}{
		{StageSuppressed, "hard_stop", true},
		{StageSuppressed, "", false},
		{StageSuppressed, "quiet_hours", false},
		{StageDeferred, "quiet_hours", true},
		{StageFailed, "gone", true},
		{StageDeadLettered, "transient", true},
		{StageDelivered, "", true},
		{StageDelivered, "permanent", false},
		{StageExpired, "", true},
		{StageAccepted, "anything", false},
	}
	for _, tt := range tests {
		if got := ValidReason(tt.stage, tt.reason); got != tt.ok {
			t.Errorf("ValidReason(%q, %q) = %v, want %v", tt.stage, tt.reason, got, tt.ok)
		}
	}
}

func TestBoundsAreIncreasingAndHoldTheSLOs(t *testing.T) {
	has := map[int64]bool{}
	for i, b := range LatencyBoundsMS {
		if i > 0 && b <= LatencyBoundsMS[i-1] {
			t.Fatalf("bounds not increasing at %d", i)
		}
		has[b] = true
	}
	if !has[5000] || !has[30000] {
		t.Error("5 s and 30 s must be bucket bounds, so the SLOs are judged exactly")
	}
}
