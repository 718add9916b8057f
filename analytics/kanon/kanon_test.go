package kanon

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/herald-notify/herald/analytics/wire"
)

func recipients(prefix string, n int) map[string]struct{} {
	m := make(map[string]struct{}, n)
	for i := range n {
		m[fmt.Sprintf("%s%d", prefix, i)] = struct{}{}
	}
	return m
}

func key(category, channel, country, stage, reason string) wire.Key {
	return wire.Key{App: "shop", Tier: "transactional", Category: category, Channel: channel, Country: country, Stage: stage, Reason: reason}
}

func TestFoldKeepsCellsAtKFoldsSmallOnesCoarserAndWithholdsTheRest(t *testing.T) {
	tests := []struct {
		name     string
		in       []Cell
		want     []wire.Cell
		withheld int64
	}{
		{
			name: "a cell with exactly k recipients leaves as is",
			in:   []Cell{{Key: key("orders", "email", "", "delivered", ""), Count: 12, Recipients: recipients("u", 10)}},
			want: []wire.Cell{{Key: key("orders", "email", "", "delivered", ""), Count: 12, DistinctRecipients: 10}},
		},
		{
			name: "two small categories fold into other when their union reaches k",
			in: []Cell{
				{Key: key("orders", "email", "", "delivered", ""), Count: 6, Recipients: recipients("a", 6)},
				{Key: key("returns", "email", "", "delivered", ""), Count: 5, Recipients: recipients("b", 5)},
			},
			want: []wire.Cell{{Key: key("other", "email", "", "delivered", ""), Count: 11, DistinctRecipients: 11}},
		},
		{
			name: "the union counts a recipient once, so overlapping small cells may stay below k",
			in: []Cell{
				{Key: key("orders", "email", "", "delivered", ""), Count: 6, Recipients: recipients("a", 6)},
				{Key: key("returns", "email", "", "delivered", ""), Count: 6, Recipients: recipients("a", 6)},
			},
			withheld: 12,
		},
		{
			name: "small category cells of two channels fold to channel all",
			in: []Cell{
				{Key: key("orders", "email", "", "failed", "permanent"), Count: 4, Recipients: recipients("a", 4)},
				{Key: key("orders", "push", "", "failed", "permanent"), Count: 7, Recipients: recipients("b", 7)},
			},
			want: []wire.Cell{{Key: key("other", "all", "", "failed", "permanent"), Count: 11, DistinctRecipients: 11}},
		},
		{
			name: "small SMS countries fold to no country before leaving the channel",
			in: []Cell{
				{Key: key("otp", "sms", "DE", "delivered", ""), Count: 5, Recipients: recipients("de", 5)},
				{Key: key("otp", "sms", "FR", "delivered", ""), Count: 5, Recipients: recipients("fr", 5)},
				{Key: key("otp", "sms", "US", "delivered", ""), Count: 30, Recipients: recipients("us", 30)},
			},
			want: []wire.Cell{
				{Key: key("other", "sms", "", "delivered", ""), Count: 10, DistinctRecipients: 10},
				{Key: key("otp", "sms", "US", "delivered", ""), Count: 30, DistinctRecipients: 30},
			},
		},
		{
			name: "a small cell joins a coarse cell that already passed",
			in: []Cell{
				{Key: key("other", "email", "", "delivered", ""), Count: 20, Recipients: recipients("o", 20)},
				{Key: key("orders", "email", "", "delivered", ""), Count: 3, Recipients: recipients("a", 3)},
			},
			want: []wire.Cell{{Key: key("other", "email", "", "delivered", ""), Count: 23, DistinctRecipients: 23}},
		},
		{
			name: "different reasons never merge, so small ones are withheld",
			in: []Cell{
				{Key: key("orders", "email", "", "suppressed", "no_address"), Count: 3, Recipients: recipients("a", 3)},
				{Key: key("orders", "email", "", "suppressed", "hard_stop"), Count: 8, Recipients: recipients("b", 8)},
				{Key: key("orders", "email", "", "delivered", ""), Count: 50, Recipients: recipients("c", 50)},
			},
			want:     []wire.Cell{{Key: key("orders", "email", "", "delivered", ""), Count: 50, DistinctRecipients: 50}},
			withheld: 11,
		},
		{
			name: "duplicate input keys merge before the threshold",
			in: []Cell{
				{Key: key("orders", "push", "", "read", ""), Count: 5, Recipients: recipients("a", 5)},
				{Key: key("orders", "push", "", "read", ""), Count: 5, Recipients: recipients("b", 5)},
			},
			want: []wire.Cell{{Key: key("orders", "push", "", "read", ""), Count: 10, DistinctRecipients: 10}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Fold(tt.in, 10)
			if fmt.Sprint(got.Cells) != fmt.Sprint(tt.want) && !(len(got.Cells) == 0 && len(tt.want) == 0) {
				t.Errorf("cells:\n got  %v\n want %v", got.Cells, tt.want)
			}
			if got.Withheld != tt.withheld {
				t.Errorf("withheld = %d, want %d", got.Withheld, tt.withheld)
			}
		})
	}
}

// Property: whatever the input, no output cell has fewer than k distinct recipients, no two
// output cells share a key, and the output counts plus the withheld total equal the input.
func TestFoldNeverEmitsACellBelowKAndLosesNoCount(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	for round := range 500 {
		k := 1 + rng.IntN(20)
		var in []Cell
		var total int64
		for range rng.IntN(40) {
			ch := pick("email", "push", "sms", "in_app", "all")
			country := ""
			if ch == "sms" {
				country = pick("DE", "FR", "US")
			}
			n := rng.IntN(25)
			r := map[string]struct{}{}
			for range n {
				r[fmt.Sprintf("u%d", rng.IntN(60))] = struct{}{} // shared pool: overlaps on purpose
			}
			count := int64(len(r) + rng.IntN(5))
			total += count
			in = append(in, Cell{
				Key:   wire.Key{App: pick("a", "b"), Tier: pick(wire.Tiers...), Category: pick("x", "y", "z", "other"), Channel: ch, Country: country, Stage: pick("delivered", "read")},
				Count: count, Recipients: r,
			})
		}
		got := Fold(in, k)
		sum := got.Withheld
		seen := map[wire.Key]bool{}
		for _, c := range got.Cells {
			if c.DistinctRecipients < int64(k) {
				t.Fatalf("round %d, k=%d: cell %+v has %d distinct recipients", round, k, c.Key, c.DistinctRecipients)
			}
			if seen[c.Key] {
				t.Fatalf("round %d: key %+v emitted twice", round, c.Key)
			}
			seen[c.Key] = true
			sum += c.Count
		}
		if sum != total {
			t.Fatalf("round %d: output %d + withheld = %d, input %d", round, sum-got.Withheld, sum, total)
		}
	}
}

// lat is a histogram of n observations in bucket 3 from the recipients prefix0..prefix(r-1).
func lat(tier, ch string, n int64, prefix string, r int) Latency {
	x := wire.NewHistogram(tier, ch)
	x.Counts[3] = n
	return Latency{Hist: x, Recipients: recipients(prefix, r)}
}

func TestFoldLatencyMergesSmallChannelsIntoAllAndWithholdsTheRest(t *testing.T) {
	out, withheld := FoldLatency([]Latency{
		lat("transactional", "email", 25, "e", 20), // stays
		lat("transactional", "push", 4, "p", 4),    // with sms: 10 recipients in all
		lat("transactional", "sms", 6, "s", 6),
		lat("social", "push", 3, "q", 3), // alone: withheld
	}, 10)
	if withheld != 3 {
		t.Errorf("withheld = %d, want 3", withheld)
	}
	var got []string
	for _, x := range out {
		got = append(got, fmt.Sprintf("%s/%s=%d/%d", x.Tier, x.Channel, x.Total(), x.DistinctRecipients))
	}
	if want := "[transactional/all=10/10 transactional/email=25/20]"; fmt.Sprint(got) != want {
		t.Errorf("histograms (observations/recipients) = %v, want %s", got, want)
	}
}

// The case: thousands of deliveries to fewer than k users passed a threshold on
// observations, so the latency panel showed what the funnel withheld.
func TestFoldLatencyThresholdsOnDistinctRecipientsNotObservations(t *testing.T) {
	tests := []struct {
		name     string
		in       []Latency
		want     string
		withheld int64
	}{
		{
			name:     "5000 deliveries to 3 users are withheld",
			in:       []Latency{lat("transactional", "email", 5000, "u", 3)},
			want:     "[]",
			withheld: 5000,
		},
		{
			name:     "one user's 2000 deliveries on each channel stay withheld in all: the union is one user",
			in:       []Latency{lat("social", "push", 2000, "u", 1), lat("social", "email", 2000, "u", 1), lat("social", "sms", 2000, "u", 1)},
			want:     "[]",
			withheld: 6000,
		},
		{
			name: "channels of 9 recipients each merge into all when their union reaches k",
			in:   []Latency{lat("social", "push", 900, "a", 9), lat("social", "email", 900, "b", 1)},
			want: "[social/all=1800/10]",
		},
		{
			name: "the same histogram twice is merged, its recipients counted once",
			in:   []Latency{lat("marketing", "email", 10, "u", 10), lat("marketing", "email", 10, "u", 10)},
			want: "[marketing/email=20/10]",
		},
		{
			name: "no recipients at all",
			in:   []Latency{{Hist: wire.NewHistogram("social", "push")}},
			want: "[]",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, withheld := FoldLatency(tc.in, 10)
			got := []string{}
			for _, x := range out {
				got = append(got, fmt.Sprintf("%s/%s=%d/%d", x.Tier, x.Channel, x.Total(), x.DistinctRecipients))
			}
			if fmt.Sprint(got) != tc.want || withheld != tc.withheld {
				t.Errorf("got %v withheld %d, want %s withheld %d", got, withheld, tc.want, tc.withheld)
			}
		})
	}
}

func TestFoldLatencyNeverEmitsAHistogramBelowKAndLosesNoObservation(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for round := range 2000 {
		k := 2 + rng.IntN(15)
		var in []Latency
		var total int64
		for range rng.IntN(20) {
			x := wire.NewHistogram(wire.Tiers[rng.IntN(3)], []string{"email", "push", "sms", "in_app", "all"}[rng.IntN(5)])
			r := map[string]struct{}{}
			for range 1 + rng.IntN(12) {
				r[fmt.Sprintf("u%d", rng.IntN(30))] = struct{}{} // shared pool: overlaps on purpose
			}
			for range len(r) + rng.IntN(200) { // many observations per recipient, on purpose
				x.Counts[rng.IntN(len(x.Counts))]++
			}
			total += x.Total()
			in = append(in, Latency{Hist: x, Recipients: r})
		}
		out, withheld := FoldLatency(in, k)
		sum := withheld
		seen := map[[2]string]bool{}
		for _, h := range out {
			if h.DistinctRecipients < int64(k) || h.DistinctRecipients > h.Total() {
				t.Fatalf("round %d, k=%d: histogram %s/%s has %d recipients for %d observations", round, k, h.Tier, h.Channel, h.DistinctRecipients, h.Total())
			}
			if seen[[2]string{h.Tier, h.Channel}] {
				t.Fatalf("round %d: histogram %s/%s emitted twice", round, h.Tier, h.Channel)
			}
			seen[[2]string{h.Tier, h.Channel}] = true
			sum += h.Total()
		}
		if sum != total {
			t.Fatalf("round %d: output + withheld = %d, input %d", round, sum, total)
		}
	}
}
