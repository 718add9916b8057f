package analytics

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/herald-notify/herald/analytics/wire"
)

func buckets(pairs map[int64]int64) []int64 {
	counts := make([]int64, len(wire.LatencyBoundsMS)+1)
	for bound, n := range pairs {
		i := len(wire.LatencyBoundsMS) // -1: the overflow
		for j, b := range wire.LatencyBoundsMS {
			if b == bound {
				i = j
			}
		}
		counts[i] += n
	}
	return counts
}

func TestPercentilesAreTheUpperBoundOfTheBucketHoldingTheRank(t *testing.T) {
	tests := []struct {
		name          string
		counts        []int64
		p50, p90, p99 int64 // -1: null
	}{
		{"empty", buckets(nil), -1, -1, -1},
		{"all in one bucket", buckets(map[int64]int64{250: 100}), 250, 250, 250},
		{"p99 on the 99th of 100", buckets(map[int64]int64{100: 98, 2000: 1, 10000: 1}), 100, 100, 2000},
		{"p99 past the 99th of 100", buckets(map[int64]int64{100: 98, 10000: 2}), 100, 100, 10000},
		{"the tail above the last bound", buckets(map[int64]int64{500: 50, -1: 50}), 500, -1, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				p    float64
				want int64
			}{{0.5, tt.p50}, {0.9, tt.p90}, {0.99, tt.p99}} {
				got := percentile(tt.counts, c.p)
				if (got == nil) != (c.want == -1) || (got != nil && *got != c.want) {
					t.Errorf("p%v = %v, want %d", c.p*100, deref(got), c.want)
				}
			}
		})
	}
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestSLOIsMetWhenP99IsWithinTheTarget(t *testing.T) {
	tests := []struct {
		name   string
		counts []int64
		slo    time.Duration
		met    any // nil: not judged
	}{
		{"p99 at exactly 5 s meets 5 s", buckets(map[int64]int64{1000: 99, 5000: 1}), 5 * time.Second, true},
		{"two of 100 above 5 s miss it", buckets(map[int64]int64{1000: 98, 10000: 2}), 5 * time.Second, false},
		{"a tail above every bound misses", buckets(map[int64]int64{1000: 50, -1: 50}), 30 * time.Second, false},
		{"no observations: not judged", buckets(nil), 5 * time.Second, nil},
		{"no target: not judged", buckets(map[int64]int64{1000: 10}), 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tierLatency("transactional", tt.counts, tt.slo)
			var met any
			if got.SLOMet != nil {
				met = *got.SLOMet
			}
			if met != tt.met {
				t.Errorf("slo_met = %v, want %v (p99 %v)", met, tt.met, deref(got.P99))
			}
		})
	}
}

func TestCostPricesSMSByCountryEmailPerThousandAndPushFree(t *testing.T) {
	prices := PriceConfig{Currency: "USD", EmailPerThousand: 0.10, SMS: SMSPrices{Default: 0.05, PerCountry: map[string]float64{"DE": 0.08, "US": 0.0079}}}
	rows := []delivered{
		{"email", "", 25_000},
		{"push", "", 1_000_000},
		{"in_app", "", 500},
		{"sms", "DE", 100},
		{"sms", "US", 1000},
		{"sms", "BR", 10}, // no price of its own: the default
		{"sms", "", 20},   // folded above country: the default
		{"all", "", 42},
	}
	got := priceDeliveries(rows, prices, Filter{})
	want := map[string]float64{"email": 2.5, "push": 0, "in_app": 0, "sms": 8 + 7.9 + 0.5 + 1}
	for _, c := range got.Channels {
		if c.Cost != want[c.Channel] {
			t.Errorf("%s cost = %v, want %v", c.Channel, c.Cost, want[c.Channel])
		}
	}
	if got.Total != 19.9 || got.Unattributed != 42 || len(got.SMS) != 4 {
		t.Errorf("total %v, unattributed %d, sms rows %d; want 19.9, 42, 4", got.Total, got.Unattributed, len(got.SMS))
	}
	if only := priceDeliveries(rows, prices, Filter{Channel: "email"}); len(only.Channels) != 1 || only.Channels[0].Channel != "email" {
		t.Errorf("channel filter: %+v", only.Channels)
	}
}

func TestParseFilterRefusesUnknownParametersAndBadValuesNamingThem(t *testing.T) {
	a := newAPI(validConfig(t), credentials{}, nil, nil)
	a.now = func() time.Time { return testNow }
	tests := []struct{ query, field string }{
		{"user_id=u1", "user_id"},
		{"region=mars-1", "region"},
		{"tier=urgent", "tier"},
		{"channel=all", "channel"},
		{"app=Shop!", "app"},
		{"from=yesterday", "from"},
		{"from=2026-11-25T05:00:00Z&to=2026-11-25T04:00:00Z", "from"},
		{"from=2025-01-01T00:00:00Z&to=2026-11-25T04:00:00Z", "from"},
	}
	for _, tt := range tests {
		_, fe := a.parseFilter(httptest.NewRequest("GET", "/v1/funnel?"+tt.query, nil))
		if fe == nil || fe.Field != tt.field || fe.Status != 400 {
			t.Errorf("%s: got %v, want a 400 naming %s", tt.query, fe, tt.field)
		}
	}
	f, fe := a.parseFilter(httptest.NewRequest("GET", "/v1/funnel?region=eu-west-1&channel=sms", nil))
	if fe != nil {
		t.Fatal(fe)
	}
	if want := testNow.Add(time.Minute); !f.To.Equal(want) || !f.From.Equal(want.Add(-time.Hour)) || f.Region != "eu-west-1" || f.Channel != "sms" {
		t.Errorf("default range and filters: %+v", f)
	}
}

func TestRangesPastTheMinuteRetentionAreWidenedToWholeHours(t *testing.T) {
	cfg := validConfig(t)
	cfg.MinuteRetention = 48 * time.Hour
	a := newAPI(cfg, credentials{}, nil, nil)
	a.now = func() time.Time { return testNow } // 04:30
	tests := []struct{ from, to, wantFrom, wantTo string }{
		// both ends past the horizon (testNow - 47h): widened outwards
		{"2026-11-22T01:10:00Z", "2026-11-22T03:20:00Z", "2026-11-22T01:00:00Z", "2026-11-22T04:00:00Z"},
		// already whole hours: unchanged
		{"2026-11-22T01:00:00Z", "2026-11-22T03:00:00Z", "2026-11-22T01:00:00Z", "2026-11-22T03:00:00Z"},
		// only the start is past it
		{"2026-11-22T01:10:00Z", "2026-11-25T04:20:00Z", "2026-11-22T01:00:00Z", "2026-11-25T04:20:00Z"},
		// inside the retention: minute precision kept
		{"2026-11-24T01:10:00Z", "2026-11-24T03:20:00Z", "2026-11-24T01:10:00Z", "2026-11-24T03:20:00Z"},
	}
	for _, tt := range tests {
		f, fe := a.parseFilter(httptest.NewRequest("GET", "/v1/funnel?from="+tt.from+"&to="+tt.to, nil))
		if fe != nil {
			t.Fatal(fe)
		}
		if f.From.Format(time.RFC3339) != tt.wantFrom || f.To.Format(time.RFC3339) != tt.wantTo {
			t.Errorf("[%s, %s) -> [%s, %s), want [%s, %s)", tt.from, tt.to, f.From.Format(time.RFC3339), f.To.Format(time.RFC3339), tt.wantFrom, tt.wantTo)
		}
	}
}
