package export

import (
	"context"
	"slices"
	"time"

	"github.com/herald-notify/herald/analytics/kanon"
	"github.com/herald-notify/herald/analytics/wire"
)

// categoriesMaxAge is how long the exporter trusts the categories it fetched from central: a
// category registered there is shipped under its name at most this long after. A refusal
// naming an unknown category refreshes them at once.
const categoriesMaxAge = time.Minute

// categoryCache holds central's registered categories. Only the closer uses it.
type categoryCache struct {
	fetch   func(context.Context) (wire.Categories, error)
	known   wire.Categories
	fetched time.Time // zero: never fetched
}

// get returns the categories, fetching them when stale, never fetched, or fresh is set.
func (c *categoryCache) get(ctx context.Context, now time.Time, fresh bool) (wire.Categories, error) {
	if !fresh && !c.fetched.IsZero() && now.Sub(c.fetched) < categoriesMaxAge {
		return c.known, nil
	}
	cats, err := c.fetch(ctx)
	if err != nil {
		return wire.Categories{}, err
	}
	c.known, c.fetched = cats, now
	return cats, nil
}

// FoldUnregistered returns cells with every category central does not accept for the cell's
// app replaced by wire.CategoryOther, and the unregistered categories with their event
// counts. Cells that end up with the same key are merged by kanon.Fold. Central keeps its
// closed vocabulary; the exporter makes sure one unexpected category (a new one an app started
// sending before it was registered) costs its detail, not the whole window.
func FoldUnregistered(cells []kanon.Cell, known wire.Categories) ([]kanon.Cell, map[string]int64) {
	var unknown map[string]int64
	out := slices.Clone(cells)
	for i, c := range out {
		if known.Allows(c.Key.App, c.Key.Category) {
			continue
		}
		if unknown == nil {
			unknown = map[string]int64{}
		}
		unknown[c.Key.Category] += c.Count
		out[i].Key.Category = wire.CategoryOther
	}
	return out, unknown
}
