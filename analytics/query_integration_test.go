//go:build integration

package analytics

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/herald-notify/herald/analytics/wire"
)

// seedKnown posts a fixed set of batches to two regions and returns the window of the recent
// ones; one more batch lies two hours back, outside the default range.
func seedKnown(t *testing.T, s *service) time.Time {
	t.Helper()
	ws := window(10)
	hist := func(tier, channel string, at map[int]int64) wire.Histogram {
		h := wire.NewHistogram(tier, channel)
		for i, n := range at {
			h.Counts[i] = n
		}
		h.DistinctRecipients = h.Total() / 2
		return h
	}
	eu := batch("eu-west-1", ws, 0,
		c("shop", "transactional", "order", wire.ChannelAll, "accepted", "", 1000, 900),
		c("shop", "transactional", "order", "email", "fanned_out", "", 600, 550),
		c("shop", "transactional", "order", "sms", "fanned_out", "", 300, 280),
		c("shop", "transactional", "order", "email", "delivered", "", 500, 480),
		c("shop", "transactional", "order", "email", "suppressed", "no_address", 60, 60),
		c("shop", "transactional", "order", "email", "failed", "permanent", 40, 40),
		c("shop", "transactional", "order", "sms", "dispatched", "", 250, 240),
		c("shop", "social", "news", "push", "fanned_out", "", 2000, 1500),
		c("shop", "social", "news", "push", "delivered", "", 1900, 1450),
		c("shop", "social", "news", "push", "suppressed", "hard_stop", 100, 100),
		c("shop", "social", "news", "in_app", "read", "", 700, 650),
	)
	eu.Cells = append(eu.Cells, wire.Cell{Key: wire.Key{App: "shop", Tier: "transactional", Category: "order", Channel: "sms", Country: "DE", Stage: "delivered"}, Count: 200, DistinctRecipients: 190})
	eu.Cells = append(eu.Cells, wire.Cell{Key: wire.Key{App: "shop", Tier: "transactional", Category: "other", Channel: wire.ChannelAll, Stage: "delivered"}, Count: 15, DistinctRecipients: 12})
	eu.Withheld = 7
	// transactional email: 95 under 1 s, 4 under 5 s, 1 under 10 s -> p99 5 s, SLO met.
	eu.Latency = []wire.Histogram{hist("transactional", "email", map[int]int64{4: 95, 6: 4, 7: 1})}
	us := batch("us-east-1", ws, 0,
		c("shop", "transactional", "order", wire.ChannelAll, "accepted", "", 400, 380),
		c("shop", "transactional", "order", "sms", "fanned_out", "", 400, 380),
		c("shop", "transactional", "order", "sms", "suppressed", "no_address", 20, 20),
	)
	us.Cells = append(us.Cells, wire.Cell{Key: wire.Key{App: "shop", Tier: "transactional", Category: "order", Channel: "sms", Country: "US", Stage: "delivered"}, Count: 1000, DistinctRecipients: 370})
	us.Withheld = 3
	// transactional sms: 90 under 2 s, 10 under 30 s -> p99 30 s, SLO missed; social push: p99 10 s.
	us.Latency = []wire.Histogram{
		hist("transactional", "sms", map[int]int64{5: 90, 8: 10}),
		hist("social", "push", map[int]int64{3: 50, 7: 50}),
	}
	old := batch("eu-west-1", window(120), 0, c("shop", "transactional", "order", "email", "delivered", "", 5000, 4000))
	s.mustPost(t, euToken, eu)
	s.mustPost(t, usToken, us)
	s.mustPost(t, euToken, old)
	return ws
}

func stageMap(f Funnel) map[string]int64 {
	m := map[string]int64{}
	for _, st := range f.Stages {
		m[st.Stage] = st.Count
	}
	return m
}

func TestFunnelSumsStagesByRegionTierChannelAndRange(t *testing.T) {
	s := startService(t)
	ws := seedKnown(t, s)
	tests := []struct {
		query    string
		want     map[string]int64
		withheld int64
	}{
		{"", map[string]int64{"accepted": 1400, "fanned_out": 3300, "delivered": 500 + 1900 + 200 + 15 + 1000, "suppressed": 180, "failed": 40, "dispatched": 250, "read": 700}, 10},
		{"region=eu-west-1", map[string]int64{"accepted": 1000, "fanned_out": 2900, "delivered": 2615, "suppressed": 160, "failed": 40, "dispatched": 250, "read": 700}, 7},
		{"region=eu-west-1&tier=social", map[string]int64{"fanned_out": 2000, "delivered": 1900, "suppressed": 100, "read": 700}, 7},
		// accepted has no channel: a channel filter leaves it whole; the folded "all" cell drops out.
		{"channel=sms", map[string]int64{"accepted": 1400, "fanned_out": 700, "delivered": 1200, "suppressed": 20, "dispatched": 250}, 10},
		{"region=us-east-1&tier=marketing", map[string]int64{}, 3},
		// only the batch two hours back
		{fmt.Sprintf("from=%s&to=%s", window(121).Format(time.RFC3339), window(119).Format(time.RFC3339)), map[string]int64{"delivered": 5000}, 0},
		{fmt.Sprintf("from=%s&to=%s", ws.Format(time.RFC3339), ws.Add(time.Minute).Format(time.RFC3339)), map[string]int64{"accepted": 1400, "fanned_out": 3300, "delivered": 3615, "suppressed": 180, "failed": 40, "dispatched": 250, "read": 700}, 10},
		{"app=blog", map[string]int64{}, 10},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			var f Funnel
			if code := s.get(t, "/v1/funnel?"+tt.query, &f); code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			got := stageMap(f)
			if len(f.Stages) != len(wire.Stages) {
				t.Errorf("%d stages, want all %d", len(f.Stages), len(wire.Stages))
			}
			for _, st := range wire.Stages {
				if got[st] != tt.want[st] {
					t.Errorf("%s = %d, want %d", st, got[st], tt.want[st])
				}
			}
			if f.Withheld != tt.withheld {
				t.Errorf("withheld = %d, want %d", f.Withheld, tt.withheld)
			}
		})
	}
	var bad map[string]any
	if code := s.get(t, "/v1/funnel?tier=urgent", &bad); code != http.StatusBadRequest || apiError(bad).Field != "tier" {
		t.Errorf("bad tier: %d %v", code, bad)
	}
}

func TestDropoffListsReasonsLargestFirstWithTheirShare(t *testing.T) {
	s := startService(t)
	seedKnown(t, s)
	var d Dropoff
	s.get(t, "/v1/dropoff", &d)
	want := []DropRow{
		{"suppressed", "hard_stop", 100, 0.0303},
		{"suppressed", "no_address", 80, 0.0242},
		{"failed", "permanent", 40, 0.0121},
	}
	if d.FannedOut != 3300 || fmt.Sprint(d.Reasons) != fmt.Sprint(want) {
		t.Errorf("fanned out %d, reasons %v; want 3300, %v", d.FannedOut, d.Reasons, want)
	}
	s.get(t, "/v1/dropoff?region=us-east-1", &d)
	if want := []DropRow{{"suppressed", "no_address", 20, 0.05}}; fmt.Sprint(d.Reasons) != fmt.Sprint(want) {
		t.Errorf("us-east-1: %v, want %v", d.Reasons, want)
	}
}

func TestLatencyPercentilesPerTierAgainstTheSLOs(t *testing.T) {
	s := startService(t)
	seedKnown(t, s)
	tests := []struct {
		query string
		want  string // tier:count:p50:p99:met per tier
	}{
		// eu transactional email (95@1s, 4@5s, 1@10s) + us transactional sms (90@2s, 10@30s):
		// 200 observations, p99 = 30 s against 5 s.
		{"", "transactional:200:2000:30000:false social:100:500:10000:true marketing:0:nil:nil:nil"},
		{"region=eu-west-1", "transactional:100:1000:5000:true social:0:nil:nil:nil marketing:0:nil:nil:nil"},
		{"channel=sms&tier=transactional", "transactional:100:2000:30000:false"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			var l Latency
			s.get(t, "/v1/latency?"+tt.query, &l)
			got := ""
			for i, tier := range l.Tiers {
				if i > 0 {
					got += " "
				}
				met := "nil"
				if tier.SLOMet != nil {
					met = fmt.Sprint(*tier.SLOMet)
				}
				got += fmt.Sprintf("%s:%d:%v:%v:%s", tier.Tier, tier.Count, ptr(tier.P50), ptr(tier.P99), met)
			}
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func ptr(p *int64) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

func TestCostPricesDeliveredMessagesFromThePriceTable(t *testing.T) {
	s := startService(t)
	seedKnown(t, s)
	var cost Cost
	s.get(t, "/v1/cost", &cost)
	// email 500 x 0.10/1000 = 0.05; sms DE 200 x 0.08 = 16, US 1000 x 0.0079 = 7.9; push free.
	want := map[string]float64{"email": 0.05, "sms": 23.9, "push": 0, "in_app": 0}
	for _, ch := range cost.Channels {
		if ch.Cost != want[ch.Channel] {
			t.Errorf("%s = %v, want %v", ch.Channel, ch.Cost, want[ch.Channel])
		}
	}
	if cost.Total != 23.95 || cost.Unattributed != 15 || cost.Currency != "USD" {
		t.Errorf("total %v unattributed %d currency %s; want 23.95, 15, USD", cost.Total, cost.Unattributed, cost.Currency)
	}
	s.get(t, "/v1/cost?region=eu-west-1&channel=sms", &cost)
	if cost.Total != 16 || len(cost.Channels) != 1 || len(cost.SMS) != 1 || cost.SMS[0].Country != "DE" {
		t.Errorf("eu-west-1 sms: %+v", cost)
	}
}
