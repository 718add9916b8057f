package analytics

import (
	"cmp"
	"context"
	"math"
	"slices"
	"time"

	"github.com/herald-notify/herald/analytics/wire"
)

// Queries answers the query API from the store with the configured SLOs and prices.
type Queries struct {
	store  *Store
	slo    SLOConfig
	prices PriceConfig
}

// FunnelStage is one funnel step. ChannelScoped is false for accepted, which has no channel
// and is therefore not narrowed by a channel filter.
type FunnelStage struct {
	Stage         string `json:"stage"`
	Count         int64  `json:"count"`
	ChannelScoped bool   `json:"channel_scoped"`
}

// Funnel is GET /v1/funnel.
type Funnel struct {
	Filter Filter        `json:"filter"`
	Stages []FunnelStage `json:"stages"`
	// Withheld is the total the regions withheld for k-anonymity in the range (and region):
	// it has no other dimension, so tier, app and channel filters do not narrow it.
	Withheld int64 `json:"withheld"`
}

// Funnel counts every stage, in funnel order, zero included.
func (q *Queries) Funnel(ctx context.Context, f Filter) (Funnel, error) {
	rows, err := q.store.stageCounts(ctx, f, false, wire.Stages)
	if err != nil {
		return Funnel{}, err
	}
	withheld, err := q.store.withheld(ctx, f)
	if err != nil {
		return Funnel{}, err
	}
	counts := map[string]int64{}
	for _, r := range rows {
		counts[r.Stage] = r.Count
	}
	out := Funnel{Filter: f, Withheld: withheld}
	for _, st := range wire.Stages {
		out.Stages = append(out.Stages, FunnelStage{Stage: st, Count: counts[st], ChannelScoped: st != wire.StageAccepted})
	}
	return out, nil
}

// dropStages are the stages where a delivery leaves the funnel (deferred ones come back).
var dropStages = []string{wire.StageSuppressed, wire.StageDeferred, wire.StageExpired, wire.StageFailed, wire.StageDeadLettered}

// DropRow is one (stage, reason) of the drop-off, with its share of fanned-out deliveries.
type DropRow struct {
	Stage  string  `json:"stage"`
	Reason string  `json:"reason"`
	Count  int64   `json:"count"`
	Share  float64 `json:"share_of_fanned_out"`
}

// Dropoff is GET /v1/dropoff.
type Dropoff struct {
	Filter    Filter    `json:"filter"`
	FannedOut int64     `json:"fanned_out"`
	Reasons   []DropRow `json:"reasons"`
}

// Dropoff lists where deliveries left the funnel, by stage and reason, largest first.
func (q *Queries) Dropoff(ctx context.Context, f Filter) (Dropoff, error) {
	rows, err := q.store.stageCounts(ctx, f, true, append([]string{wire.StageFannedOut}, dropStages...))
	if err != nil {
		return Dropoff{}, err
	}
	out := Dropoff{Filter: f, Reasons: []DropRow{}}
	for _, r := range rows {
		if r.Stage == wire.StageFannedOut {
			out.FannedOut += r.Count
		}
	}
	for _, r := range rows {
		if r.Stage == wire.StageFannedOut {
			continue
		}
		d := DropRow{Stage: r.Stage, Reason: r.Reason, Count: r.Count}
		if out.FannedOut > 0 {
			d.Share = math.Round(float64(r.Count)/float64(out.FannedOut)*1e4) / 1e4
		}
		out.Reasons = append(out.Reasons, d)
	}
	slices.SortFunc(out.Reasons, func(a, b DropRow) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Stage, b.Stage), cmp.Compare(a.Reason, b.Reason))
	})
	return out, nil
}

// TierLatency is one tier's accept-to-delivered percentiles against its SLO. A percentile is
// the upper bound of the bucket it falls in ("at most"), in milliseconds; null when there are
// no observations or when it lies above the last bound.
type TierLatency struct {
	Tier  string `json:"tier"`
	Count int64  `json:"count"`
	P50   *int64 `json:"p50_ms"`
	P90   *int64 `json:"p90_ms"`
	P99   *int64 `json:"p99_ms"`
	// SLOP99 is the tier's p99 target (null: none); SLOMet whether p99 is within it (null: no
	// target or no observations).
	SLOP99 *int64 `json:"slo_p99_ms"`
	SLOMet *bool  `json:"slo_met"`
}

// Latency is GET /v1/latency.
type Latency struct {
	Filter   Filter        `json:"filter"`
	BoundsMS []int64       `json:"bounds_ms"`
	Tiers    []TierLatency `json:"tiers"`
}

// Latency computes percentiles per tier from the summed histograms.
func (q *Queries) Latency(ctx context.Context, f Filter) (Latency, error) {
	hist, err := q.store.latencyByTier(ctx, f)
	if err != nil {
		return Latency{}, err
	}
	out := Latency{Filter: f, BoundsMS: wire.LatencyBoundsMS}
	for _, tier := range wire.Tiers {
		if f.Tier != "" && f.Tier != tier {
			continue
		}
		out.Tiers = append(out.Tiers, tierLatency(tier, hist[tier], q.slo.For(tier)))
	}
	return out, nil
}

func tierLatency(tier string, counts []int64, slo time.Duration) TierLatency {
	t := TierLatency{Tier: tier}
	for _, c := range counts {
		t.Count += c
	}
	t.P50 = percentile(counts, 0.50)
	t.P90 = percentile(counts, 0.90)
	t.P99 = percentile(counts, 0.99)
	if slo > 0 {
		ms := slo.Milliseconds()
		t.SLOP99 = &ms
		if t.Count > 0 {
			met := t.P99 != nil && *t.P99 <= ms
			t.SLOMet = &met
		}
	}
	return t
}

// percentile returns the upper bound of the bucket holding the p-quantile of counts (one per
// wire.LatencyBoundsMS bound, then the overflow), or nil if empty or in the overflow.
func percentile(counts []int64, p float64) *int64 {
	var total int64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return nil
	}
	rank := int64(math.Ceil(p * float64(total)))
	var cum int64
	for i, c := range counts {
		cum += c
		if cum >= rank {
			if i >= len(wire.LatencyBoundsMS) {
				return nil
			}
			v := wire.LatencyBoundsMS[i]
			return &v
		}
	}
	return nil
}

// ChannelCost is the delivered messages of one channel and what they cost.
type ChannelCost struct {
	Channel  string  `json:"channel"`
	Messages int64   `json:"messages"`
	Cost     float64 `json:"cost"`
}

// CountryCost is the SMS part of one country (empty: the country was folded away and the
// default price applies).
type CountryCost struct {
	Country   string  `json:"country"`
	Messages  int64   `json:"messages"`
	UnitPrice float64 `json:"unit_price"`
	Cost      float64 `json:"cost"`
}

// Cost is GET /v1/cost.
type Cost struct {
	Filter   Filter        `json:"filter"`
	Currency string        `json:"currency"`
	Channels []ChannelCost `json:"channels"`
	SMS      []CountryCost `json:"sms_by_country"`
	Total    float64       `json:"total"`
	// Unattributed is delivered messages folded to channel "all" for k-anonymity: their
	// channel, hence their price, is unknown, so they are not in Total.
	Unattributed int64 `json:"unattributed_messages"`
}

// Cost prices delivered messages: SMS per message by country (else the default), email per
// thousand, push and in-app free.
func (q *Queries) Cost(ctx context.Context, f Filter) (Cost, error) {
	rows, err := q.store.deliveredBy(ctx, f)
	if err != nil {
		return Cost{}, err
	}
	return priceDeliveries(rows, q.prices, f), nil
}

func priceDeliveries(rows []delivered, p PriceConfig, f Filter) Cost {
	out := Cost{Filter: f, Currency: p.Currency, SMS: []CountryCost{}}
	per := map[string]*ChannelCost{}
	for _, ch := range wire.Channels {
		if f.Channel == "" || f.Channel == ch {
			out.Channels = append(out.Channels, ChannelCost{Channel: ch})
		}
	}
	for i := range out.Channels {
		per[out.Channels[i].Channel] = &out.Channels[i]
	}
	for _, r := range rows {
		cc := per[r.channel]
		if cc == nil { // channel "all": folded, unpriceable
			out.Unattributed += r.count
			continue
		}
		cc.Messages += r.count
		switch r.channel {
		case "email":
			cc.Cost += float64(r.count) * p.EmailPerThousand / 1000
		case "sms":
			unit, ok := p.SMS.PerCountry[r.country]
			if !ok {
				unit = p.SMS.Default
			}
			c := float64(r.count) * unit
			cc.Cost += c
			out.SMS = append(out.SMS, CountryCost{Country: r.country, Messages: r.count, UnitPrice: unit, Cost: money(c)})
		}
	}
	for i := range out.Channels {
		out.Channels[i].Cost = money(out.Channels[i].Cost)
		out.Total += out.Channels[i].Cost
	}
	out.Total = money(out.Total)
	return out
}

// money rounds to a millionth, below any price's precision, so float noise never shows.
func money(v float64) float64 { return math.Round(v*1e6) / 1e6 }

// Bucket is one step of a series: the count of every stage in [Start, Start+step).
type Bucket struct {
	Start  time.Time        `json:"start"`
	Counts map[string]int64 `json:"counts"`
}

// Series is GET /v1/series.
type Series struct {
	Filter  Filter   `json:"filter"`
	Step    string   `json:"step"`
	Buckets []Bucket `json:"buckets"`
}

// seriesStep picks the step that keeps a range under about 200 points: minutes up to 3 hours,
// hours up to 8 days, days beyond.
func seriesStep(r time.Duration) time.Duration {
	switch {
	case r <= 3*time.Hour:
		return time.Minute
	case r <= 8*24*time.Hour:
		return time.Hour
	}
	return 24 * time.Hour
}

// Series counts every stage per time step over the range, every step listed (zero included).
// Buckets at the ends may be partial: they count only the part inside the range.
func (q *Queries) Series(ctx context.Context, f Filter) (Series, error) {
	step := seriesStep(f.To.Sub(f.From))
	counts, err := q.store.seriesCounts(ctx, f, step)
	if err != nil {
		return Series{}, err
	}
	out := Series{Filter: f, Step: step.String(), Buckets: []Bucket{}}
	for at := f.From.UTC().Truncate(step); at.Before(f.To); at = at.Add(step) {
		b := Bucket{Start: at, Counts: map[string]int64{}}
		for _, st := range wire.Stages {
			b.Counts[st] = counts[at][st]
		}
		out.Buckets = append(out.Buckets, b)
	}
	return out, nil
}
