// Package kanon makes a window's counts k-anonymous before they leave a region: a cell with
// fewer than k distinct recipients is folded into a coarser cell (category → "other", then an
// SMS cell's country → "", then channel → "all"); what is still below k is withheld and only
// its total reported. The region's exporter uses it; it depends on the wire types only.
package kanon

import (
	"cmp"
	"slices"

	"github.com/herald-notify/herald/analytics/wire"
)

// Cell is a region-side cell: its count and the set of its recipients, as opaque keys (the
// exporter may hash them; they never leave the region). The set is what makes a fold exact:
// two cells' distinct recipients are the size of their union, not the sum of their sizes.
type Cell struct {
	Key        wire.Key
	Count      int64
	Recipients map[string]struct{}
}

// Result is what may leave the region for one window.
type Result struct {
	Cells []wire.Cell
	// Withheld is the number of events in cells that stayed below k.
	Withheld int64
}

// levels are the coarsening steps, in order. Each maps a key to its coarser key.
var levels = []func(wire.Key) wire.Key{
	func(k wire.Key) wire.Key { k.Category = wire.CategoryOther; return k },
	func(k wire.Key) wire.Key { k.Country = ""; return k },
	func(k wire.Key) wire.Key { k.Channel = wire.ChannelAll; k.Country = ""; return k },
}

type acc struct {
	count int64
	recip map[string]struct{}
}

func (a *acc) add(count int64, r map[string]struct{}) {
	a.count += count
	for id := range r {
		a.recip[id] = struct{}{}
	}
}

// Fold returns the k-anonymous cells of one window. Cells with the same key are merged first.
// Every returned cell has at least k distinct recipients, and the returned counts plus Withheld
// equal the input counts. k below 1 is treated as 1.
func Fold(cells []Cell, k int) Result {
	k = max(k, 1)
	merged := map[wire.Key]*acc{}
	for _, c := range cells {
		a := merged[c.Key]
		if a == nil {
			a = &acc{recip: map[string]struct{}{}}
			merged[c.Key] = a
		}
		a.add(c.Count, c.Recipients)
	}
	out := map[wire.Key]*acc{}
	pending := map[wire.Key]*acc{}
	for key, a := range merged {
		if a.count == 0 {
			continue
		}
		if len(a.recip) >= k {
			out[key] = a
		} else {
			pending[key] = a
		}
	}
	for _, coarser := range levels {
		next := map[wire.Key]*acc{}
		for key, a := range pending {
			ck := coarser(key)
			// A coarse cell that already passed (a real "other" category, say) takes the small
			// one in: the union is only larger, so it stays at or above k.
			if o := out[ck]; o != nil {
				o.add(a.count, a.recip)
				continue
			}
			n := next[ck]
			if n == nil {
				n = &acc{recip: map[string]struct{}{}}
				next[ck] = n
			}
			n.add(a.count, a.recip)
		}
		pending = map[wire.Key]*acc{}
		for key, a := range next {
			if len(a.recip) >= k {
				out[key] = a
			} else {
				pending[key] = a
			}
		}
	}
	res := Result{Cells: make([]wire.Cell, 0, len(out))}
	for key, a := range out {
		res.Cells = append(res.Cells, wire.Cell{Key: key, Count: a.count, DistinctRecipients: int64(len(a.recip))})
	}
	for _, a := range pending {
		res.Withheld += a.count
	}
	slices.SortFunc(res.Cells, func(a, b wire.Cell) int { return CompareKeys(a.Key, b.Key) })
	return res
}

// CompareKeys orders keys field by field, so a batch's cells come out in a stable order.
func CompareKeys(a, b wire.Key) int {
	return cmp.Or(
		cmp.Compare(a.App, b.App), cmp.Compare(a.Tier, b.Tier), cmp.Compare(a.Category, b.Category),
		cmp.Compare(a.Channel, b.Channel), cmp.Compare(a.Country, b.Country),
		cmp.Compare(a.Stage, b.Stage), cmp.Compare(a.Reason, b.Reason),
	)
}

// Latency is a region-side latency histogram of one tier and channel with the set of
// recipients its observations concern (opaque keys that never leave the region), so that a
// histogram is judged on distinct recipients like a cell, not on observations: one user with
// a thousand deliveries is one recipient.
type Latency struct {
	Hist       wire.Histogram
	Recipients map[string]struct{}
}

// FoldLatency applies the rule of Fold to latency histograms, whose dimensions are tier and
// channel: histograms with the same tier and channel are merged; one with fewer than k distinct
// recipients is merged into its tier's channel "all" histogram (the union of the recipients);
// one still below k is dropped and its observations are returned as withheld. Every returned
// histogram carries its distinct recipients, at least k, and the returned observations plus
// the withheld total equal the input's. k below 1 is treated as 1.
func FoldLatency(hs []Latency, k int) ([]wire.Histogram, int64) {
	k = max(k, 1)
	type hk struct{ tier, channel string }
	type lacc struct {
		h     wire.Histogram
		recip map[string]struct{}
	}
	merged := map[hk]*lacc{}
	get := func(key hk) *lacc {
		a := merged[key]
		if a == nil {
			a = &lacc{h: wire.NewHistogram(key.tier, key.channel), recip: map[string]struct{}{}}
			merged[key] = a
		}
		return a
	}
	add := func(dst *lacc, counts []int64, recip map[string]struct{}) {
		for i := range min(len(counts), len(dst.h.Counts)) {
			dst.h.Counts[i] += counts[i]
		}
		for id := range recip {
			dst.recip[id] = struct{}{}
		}
	}
	for _, l := range hs {
		add(get(hk{l.Hist.Tier, l.Hist.Channel}), l.Hist.Counts, l.Recipients)
	}
	for key, a := range merged {
		if key.channel == wire.ChannelAll || len(a.recip) >= k {
			continue
		}
		add(get(hk{key.tier, wire.ChannelAll}), a.h.Counts, a.recip)
		delete(merged, key)
	}
	var out []wire.Histogram
	var withheld int64
	for _, a := range merged {
		if len(a.recip) < k {
			withheld += a.h.Total()
			continue
		}
		if a.h.Total() == 0 {
			continue // recipients without an observation cannot happen; nothing to publish
		}
		h := a.h
		h.DistinctRecipients = int64(len(a.recip))
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b wire.Histogram) int {
		return cmp.Or(cmp.Compare(a.Tier, b.Tier), cmp.Compare(a.Channel, b.Channel))
	})
	return out, withheld
}
