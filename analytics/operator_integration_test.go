//go:build integration

package analytics

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/herald-notify/herald/analytics/wire"
)

// Every query endpoint answers the operator token only: 401 without a token, with a wrong one
// or with a region's (which posts batches but reads nothing), 200 with the operator's.
func TestQueryAPIAnswersTheOperatorOnly(t *testing.T) {
	s := startService(t)
	seedKnown(t, s)
	for _, path := range []string{"/v1/meta", "/v1/funnel", "/v1/dropoff", "/v1/latency", "/v1/cost", "/v1/series", "/v1/funnel?region=us-east-1"} {
		for _, tc := range []struct {
			name, token string
			want        int
		}{
			{"no token", "", http.StatusUnauthorized},
			{"a wrong token", "wrong-operator-token-0123456789abcdef", http.StatusUnauthorized},
			{"a region's token", usToken, http.StatusUnauthorized},
			{"the operator token", testOperatorToken, http.StatusOK},
		} {
			var out map[string]any
			if got := s.getAs(t, tc.token, path, &out); got != tc.want {
				t.Errorf("GET %s with %s: %d, want %d (%v)", path, tc.name, got, tc.want, out)
				continue
			}
			if tc.want == http.StatusUnauthorized {
				if e := apiError(out); e.Code != "unauthorized" || len(out) != 1 {
					t.Errorf("GET %s with %s: %v", path, tc.name, out)
				}
			}
		}
	}
	var f Funnel
	s.get(t, "/v1/funnel", &f)
	if f.Stages[0].Stage != "accepted" || f.Stages[0].Count != 1400 {
		t.Errorf("the operator's funnel: %+v", f.Stages)
	}
}

// Defence in depth: a region that sends a histogram of thousands of deliveries to fewer than k
// recipients (an exporter that folds on observations, or a hostile one) has its batch refused,
// and nothing of it is stored or shown; the same histogram with k recipients is.
func TestHistogramBelowKRecipientsFromARegionIsRefusedWhateverItsObservations(t *testing.T) {
	s := startService(t)
	ws := window(3)
	h := wire.NewHistogram("transactional", "email")
	h.Counts[2], h.DistinctRecipients = 5000, 3
	b := batch("eu-west-1", ws, 0, c("shop", "transactional", "order", "email", "delivered", "", 40, 20))
	b.Latency = []wire.Histogram{h}
	code, out := s.post(t, euToken, b)
	if e := apiError(out); code != http.StatusBadRequest || e.Code != "below_k" || e.Field != "latency[0].distinct_recipients" {
		t.Fatalf("a histogram of 3 recipients: %d %v, want 400 below_k", code, out)
	}
	for _, table := range []string{"batches", "cells", "latency", "latency_hourly"} {
		if n := s.count(t, table); n != 0 {
			t.Errorf("the refused batch left %d rows in %s", n, table)
		}
	}
	var lat Latency
	s.get(t, "/v1/latency?tier=transactional", &lat)
	if len(lat.Tiers) != 1 || lat.Tiers[0].Count != 0 {
		t.Errorf("the latency panel shows %+v after the refusal", lat.Tiers)
	}
	// A missing distinct_recipients is refused too (an exporter from before the field).
	b.Latency[0].DistinctRecipients = 0
	raw := map[string]any{"version": 1, "region": "eu-west-1", "window_start": ws, "seq": 0, "withheld": 0,
		"cells": b.Cells, "latency": []any{map[string]any{"tier": h.Tier, "channel": h.Channel, "bounds_ms": h.BoundsMS, "counts": h.Counts}}}
	if code, out := s.post(t, euToken, raw); code != http.StatusBadRequest || apiError(out).Code != "missing_field" {
		t.Errorf("a histogram without distinct_recipients: %d %v", code, out)
	}

	b.Latency[0].DistinctRecipients = 10
	s.mustPost(t, euToken, b)
	s.get(t, "/v1/latency?tier=transactional", &lat)
	if len(lat.Tiers) != 1 || lat.Tiers[0].Count != 5000 {
		t.Errorf("the latency panel shows %+v, want the 5000 deliveries to 10 recipients", lat.Tiers)
	}
}

// herald audit analytics re-checks what central keeps: clean after ingest (which refuses
// anything below k), and it finds a cell and a histogram below k written past ingest (an older
// central, a hand-edited database) and a column added to the schema.
func TestAuditFindsCellsAndHistogramsBelowKThatGotPastIngest(t *testing.T) {
	s := startService(t)
	seedKnown(t, s)
	ctx := context.Background()
	rep, err := Audit(ctx, s.db, s.cfg.K)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean() || rep.Cells == 0 || rep.Latency == 0 {
		t.Fatalf("after ingest: %+v, want clean with cells and histograms checked", rep)
	}
	ws := window(20)
	h := wire.NewHistogram("social", "push")
	h.Counts[1] = 2000
	mustExec(t, s.db.Exec, `INSERT INTO batches (region, window_start, seq, digest, withheld, latency_withheld) VALUES ('eu-west-1', $1, 0, $2, 0, 0)`, ws, make([]byte, 32))
	mustExec(t, s.db.Exec, `INSERT INTO cells VALUES ('eu-west-1', $1, 0, 'shop', 'social', 'news', 'push', '', 'delivered', '', 2000, 3)`, ws)
	mustExec(t, s.db.Exec, `INSERT INTO latency VALUES ('eu-west-1', $1, 0, 'social', 'push', $2, $3, 3)`, ws, h.BoundsMS, h.Counts)
	mustExec(t, s.db.Exec, `ALTER TABLE cells ADD COLUMN note text`)
	rep, err = Audit(ctx, s.db, s.cfg.K)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"cell eu-west-1 " + ws.Format(time.RFC3339) + " 3 recipients", "histogram eu-west-1 " + ws.Format(time.RFC3339) + " 3 recipients"}
	if rep.Clean() || rep.CellsBelowK != 1 || rep.HistogramsBelowK != 1 || !slices.Equal(rep.BelowK, want) ||
		!slices.Equal(rep.UnexpectedColumns, []string{"cells.note text"}) {
		t.Errorf("after writes past ingest: %+v", rep)
	}
}
