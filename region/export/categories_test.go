package export

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/analytics/kanon"
	"github.com/herald-notify/herald/analytics/wire"
)

// recipients returns a cell of n events to users prefix0..prefix(n-1).
func recipients(key wire.Key, prefix string, n int) kanon.Cell {
	c := kanon.Cell{Key: key, Count: int64(n), Recipients: map[string]struct{}{}}
	for i := range n {
		c.Recipients[fmt.Sprint(prefix, i)] = struct{}{}
	}
	return c
}

func TestCategoriesCentralDoesNotRegisterAreFoldedIntoOther(t *testing.T) {
	known := wire.Categories{Global: []string{"security"}, Apps: map[string][]string{"shop": {"order"}}}
	key := func(app, category string) wire.Key {
		return wire.Key{App: app, Tier: "transactional", Category: category, Channel: "email", Stage: "delivered"}
	}
	for _, tc := range []struct {
		name        string
		cells       []kanon.Cell
		wantCells   map[string]int64 // app/category -> count, after kanon.Fold with k=10
		wantUnknown map[string]int64
	}{
		{
			name:      "registered globally and for the app stay",
			cells:     []kanon.Cell{recipients(key("shop", "security"), "a", 10), recipients(key("shop", "order"), "b", 12)},
			wantCells: map[string]int64{"shop/security": 10, "shop/order": 12},
		},
		{
			name:        "registered for another app only is folded",
			cells:       []kanon.Cell{recipients(key("blog", "order"), "a", 10)},
			wantCells:   map[string]int64{"blog/other": 10},
			wantUnknown: map[string]int64{"order": 10},
		},
		{
			name:      "other is always accepted",
			cells:     []kanon.Cell{recipients(key("blog", wire.CategoryOther), "a", 10)},
			wantCells: map[string]int64{"blog/other": 10},
		},
		{
			// Two unknown categories of 6 recipients each, below k alone: folded into one
			// "other" cell with the union of their recipients, which passes k.
			name: "unknown categories merge into one other cell",
			cells: []kanon.Cell{
				recipients(key("shop", "flash-sale"), "a", 6), recipients(key("shop", "user-42@example.org"), "b", 6),
				recipients(key("shop", "order"), "c", 10),
			},
			wantCells:   map[string]int64{"shop/other": 12, "shop/order": 10},
			wantUnknown: map[string]int64{"flash-sale": 6, "user-42@example.org": 6},
		},
		{
			name: "an unknown category joins a real other cell",
			cells: []kanon.Cell{
				recipients(key("shop", "flash-sale"), "a", 3), recipients(key("shop", wire.CategoryOther), "a", 10),
			},
			wantCells:   map[string]int64{"shop/other": 13},
			wantUnknown: map[string]int64{"flash-sale": 3},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := slices.Clone(tc.cells)
			out, unknown := FoldUnregistered(tc.cells, known)
			if !maps.Equal(unknown, tc.wantUnknown) {
				t.Errorf("unknown %v, want %v", unknown, tc.wantUnknown)
			}
			for i := range before {
				if tc.cells[i].Key != before[i].Key {
					t.Errorf("the input cell %d was changed: %+v", i, tc.cells[i].Key)
				}
			}
			got := map[string]int64{}
			for _, b := range Batches("eu-west-1", time.Date(2026, 11, 25, 4, 0, 0, 0, time.UTC), out, nil, 10) {
				for _, c := range b.Cells {
					if !known.Allows(c.App, c.Category) {
						t.Errorf("shipped a category central refuses: %+v", c.Key)
					}
					got[c.App+"/"+c.Category] += c.Count
				}
			}
			if !maps.Equal(got, tc.wantCells) {
				t.Errorf("shipped %v, want %v", got, tc.wantCells)
			}
		})
	}
}

func TestCategoriesAreFetchedOnceAMinuteOrWhenRefreshed(t *testing.T) {
	fetches := 0
	fail := false
	c := categoryCache{fetch: func(context.Context) (wire.Categories, error) {
		fetches++
		if fail {
			return wire.Categories{}, errors.New("central is down")
		}
		return wire.Categories{Global: []string{fmt.Sprint("v", fetches)}}, nil
	}}
	t0 := time.Date(2026, 11, 25, 4, 0, 0, 0, time.UTC)
	for _, step := range []struct {
		name    string
		at      time.Duration
		fresh   bool
		fail    bool
		want    string // the global category returned, "" for an error
		fetches int
	}{
		{"first use fetches", 0, false, false, "v1", 1},
		{"within a minute uses the cache", 59 * time.Second, false, false, "v1", 1},
		{"a refresh fetches at once", 59 * time.Second, true, false, "v2", 2},
		{"a minute after the last fetch fetches", 119 * time.Second, false, false, "v3", 3},
		{"a failed fetch is an error", 4 * time.Minute, false, true, "", 4},
		{"and is tried again next time", 4 * time.Minute, false, false, "v5", 5},
	} {
		fail = step.fail
		cats, err := c.get(context.Background(), t0.Add(step.at), step.fresh)
		got := ""
		if err == nil {
			got = cats.Global[0]
		}
		if got != step.want || fetches != step.fetches {
			t.Errorf("%s: got %q (%v) after %d fetches, want %q after %d", step.name, got, err, fetches, step.want, step.fetches)
		}
	}
}

// fakeCentral answers GET /v1/categories with its current list and refuses a posted cell with
// a category outside it the way central does (400 unknown_category naming the cell), or every
// batch with refuse when set.
type fakeCentral struct {
	mu       sync.Mutex
	cats     []string
	refuse   string // an error code to refuse every batch with
	gets     int
	posted   []wire.Batch
	categErr int // status to answer GET /v1/categories with, when set
	// after is called after each request, to change the state between them.
	after func(f *fakeCentral)
}

func (f *fakeCentral) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.after != nil {
		defer f.after(f)
	}
	if r.Header.Get("Authorization") != "Bearer test-token-0123456789" {
		http.Error(w, `{"error":{"code":"unauthorized"}}`, http.StatusUnauthorized)
		return
	}
	refuse := func(code, field string) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":{"code":%q,"field":%q,"message":"refused"}}`, code, field)
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/categories":
		f.gets++
		if f.categErr != 0 {
			w.WriteHeader(f.categErr)
			return
		}
		_ = json.NewEncoder(w).Encode(wire.Categories{Global: f.cats, Apps: map[string][]string{}})
	case r.Method == http.MethodPost && r.URL.Path == "/v1/aggregates":
		var b wire.Batch
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
			refuse("invalid_json", "")
			return
		}
		f.posted = append(f.posted, b)
		if f.refuse != "" {
			refuse(f.refuse, "cells[0]")
			return
		}
		for i, c := range b.Cells {
			if !(wire.Categories{Global: f.cats}).Allows(c.App, c.Category) {
				refuse("unknown_category", fmt.Sprintf("cells[%d].category", i))
				return
			}
		}
		_ = json.NewEncoder(w).Encode(wire.Ack{Result: "stored", Cells: len(b.Cells)})
	default:
		http.NotFound(w, r)
	}
}

func TestAWindowWithACategoryCentralDroppedIsRefoldedAndShippedNotRefused(t *testing.T) {
	w := time.Date(2026, 11, 25, 4, 0, 0, 0, time.UTC)
	key := func(category string) wire.Key {
		return wire.Key{App: "shop", Tier: "marketing", Category: category, Channel: "push", Stage: "delivered"}
	}
	snap := snapshot{version: 1, cells: []kanon.Cell{recipients(key("order"), "a", 10), recipients(key("promo"), "b", 10)}}
	dropPromo := func(f *fakeCentral) { f.cats = []string{"order"} }
	for _, tc := range []struct {
		name        string
		central     *fakeCentral
		cached      []string // categories the exporter fetched earlier (nil: none yet)
		wantRefusal string
		wantErr     bool
		wantGets    int
		wantPosts   int
		wantShipped []string // categories of the last batch posted
	}{
		{name: "every category registered", central: &fakeCentral{cats: []string{"order", "promo"}},
			wantGets: 1, wantPosts: 1, wantShipped: []string{"order", "promo"}},
		{name: "an unregistered category is folded before the first post", central: &fakeCentral{cats: []string{"order"}},
			wantGets: 1, wantPosts: 1, wantShipped: []string{"order", "other"}},
		{name: "central dropped a category after the exporter fetched them: refresh and ship again",
			central: &fakeCentral{cats: []string{"order"}}, cached: []string{"order", "promo"},
			wantGets: 1, wantPosts: 2, wantShipped: []string{"order", "other"}},
		{name: "central dropped it between the fetch and the post",
			central: &fakeCentral{cats: []string{"order", "promo"}, after: func(f *fakeCentral) {
				if f.gets == 1 {
					dropPromo(f)
				}
			}},
			wantGets: 2, wantPosts: 2, wantShipped: []string{"order", "other"}},
		{name: "another refusal is not retried", central: &fakeCentral{cats: []string{"order", "promo"}, refuse: "below_k"},
			wantRefusal: "400 below_k cells[0]", wantGets: 1, wantPosts: 1, wantShipped: []string{"order", "promo"}},
		{name: "unknown_category again after a refresh is a refusal, not a loop",
			central:     &fakeCentral{cats: []string{"order", "promo"}, refuse: "unknown_category"},
			wantRefusal: "400 unknown_category cells[0]", wantGets: 2, wantPosts: 2, wantShipped: []string{"order", "promo"}},
		{name: "categories unavailable: shipped later", central: &fakeCentral{categErr: http.StatusServiceUnavailable},
			wantErr: true, wantGets: 1, wantPosts: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.central)
			defer srv.Close()
			client := &wire.Client{BaseURL: srv.URL, Token: "test-token-0123456789"}
			now := w.Add(5 * time.Minute)
			e := &Exporter{region: "eu-west-1", cfg: Config{K: 10}, client: client, categories: categoryCache{fetch: client.Categories},
				log: slog.New(slog.DiscardHandler), now: func() time.Time { return now }}
			if tc.cached != nil {
				e.categories.known, e.categories.fetched = wire.Categories{Global: tc.cached}, now.Add(-time.Second)
			}
			refusal, err := e.deliver(context.Background(), w, snap)
			if refusal != tc.wantRefusal || (err != nil) != tc.wantErr {
				t.Errorf("refusal %q, err %v; want %q, error %v", refusal, err, tc.wantRefusal, tc.wantErr)
			}
			f := tc.central
			if f.gets != tc.wantGets || len(f.posted) != tc.wantPosts {
				t.Errorf("%d category fetches and %d posts, want %d and %d", f.gets, len(f.posted), tc.wantGets, tc.wantPosts)
			}
			if len(f.posted) == 0 {
				return
			}
			last := f.posted[len(f.posted)-1]
			var cats []string
			var events int64
			for _, c := range last.Cells {
				cats = append(cats, c.Category)
				events += c.Count
			}
			if !slices.Equal(cats, tc.wantShipped) || events != 20 {
				t.Errorf("last batch had categories %v and %d events, want %v and 20", cats, events, tc.wantShipped)
			}
			if strings.Contains(fmt.Sprint(last), "promo") && !slices.Contains(tc.wantShipped, "promo") {
				t.Errorf("promo was shipped: %+v", last)
			}
		})
	}
}
