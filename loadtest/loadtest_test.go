package loadtest

import (
	"testing"
	"time"
)

func TestRowPassesOnlyWithinItsThresholds(t *testing.T) {
	cases := []struct {
		name string
		row  Row
		want bool
	}{
		{"fast and clean", Row{Count: 100, P99: time.Second, Threshold: 5 * time.Second}, true},
		{"p99 at the threshold fails", Row{Count: 100, P99: 5 * time.Second, Threshold: 5 * time.Second}, false},
		{"too many errors", Row{Count: 100, Errors: 2, MaxErrRate: 0.01}, false},
		{"errors within the budget", Row{Count: 100, Errors: 1, MaxErrRate: 0.01}, true},
		{"nothing measured is not a pass", Row{}, false},
	}
	for _, c := range cases {
		if got := c.row.Pass(); got != c.want {
			t.Errorf("%s: Pass() = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestOnlyLoopbackTargetsAreAccepted(t *testing.T) {
	for url, ok := range map[string]bool{
		"http://127.0.0.1:8080": true, "http://localhost:8080": true, "http://[::1]:8080": true,
		"https://api.example.com": false, "http://10.0.0.1:8080": false,
	} {
		if err := CheckLoopback(url); (err == nil) != ok {
			t.Errorf("%s: err %v, want ok=%v", url, err, ok)
		}
	}
}

func TestSamplesGiveOrderedPercentiles(t *testing.T) {
	var s samples
	for i := 100; i >= 1; i-- {
		s.ok(time.Duration(i) * time.Millisecond)
	}
	r := s.row("x", time.Second, 0)
	if r.P50 != 51*time.Millisecond || r.P99 != 100*time.Millisecond || r.Count != 100 {
		t.Fatalf("row %+v", r)
	}
}
