//go:build integration

package analytics

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/herald-notify/herald/analytics/kanon"
	"github.com/herald-notify/herald/analytics/wire"
)

func TestIngestWithoutTheRegionsTokenIs401AndStoresNothing(t *testing.T) {
	s := startService(t)
	b := batch("eu-west-1", window(1), 0, c("shop", "transactional", "order", "email", "delivered", "", 20, 20))
	for _, tok := range []string{"", "wrong-token-0123456789", euToken + "x"} {
		code, out := s.post(t, tok, b)
		if code != http.StatusUnauthorized || apiError(out).Code != "unauthorized" {
			t.Errorf("token %q: %d %v, want 401 unauthorized", tok, code, out)
		}
	}
	// A valid token of another region cannot post this region's batch.
	if code, out := s.post(t, usToken, b); code != http.StatusForbidden || apiError(out).Field != "region" {
		t.Errorf("us-east-1's token for an eu-west-1 batch: %d %v, want 403 naming region", code, out)
	}
	if n := s.count(t, "batches"); n != 0 {
		t.Errorf("%d batches stored", n)
	}
	if got := s.mustPost(t, euToken, b); got != Stored {
		t.Errorf("with the token: %s", got)
	}
}

func TestIngestRefusesAUserIDFieldAnUnknownCategoryAndACellBelowKStoringNothing(t *testing.T) {
	s := startService(t)
	good := batch("eu-west-1", window(2), 0,
		c("shop", "transactional", "order", "email", "delivered", "", 40, 38),
		c("shop", "social", "news", "push", "fanned_out", "", 15, 12))
	raw, _ := json.Marshal(good)
	var withUserID map[string]any
	_ = json.Unmarshal(raw, &withUserID)
	withUserID["cells"].([]any)[1].(map[string]any)["user_id"] = "user-4711"

	unknownCategory := good
	unknownCategory.Cells = []wire.Cell{good.Cells[0], c("shop", "social", "user-4711", "push", "fanned_out", "", 15, 12)}
	belowK := good
	belowK.Cells = []wire.Cell{good.Cells[0], c("shop", "social", "news", "push", "fanned_out", "", 9, 9)}

	tests := []struct {
		name  string
		body  any
		code  string
		field string
	}{
		{"a user_id field in a cell", withUserID, "unknown_field", "cells[1].user_id"},
		{"an unknown category", unknownCategory, "unknown_category", "cells[1].category"},
		{"a cell below k", belowK, "below_k", "cells[1].distinct_recipients"},
		{"an unknown stage", []byte(strings.Replace(string(raw), `"fanned_out"`, `"opened"`, 1)), "invalid_field", "cells[1].stage"},
		{"a user_id at the top", []byte(strings.Replace(string(raw), `"version":1`, `"version":1,"user_id":"user-4711"`, 1)), "unknown_field", "user_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := s.post(t, euToken, tt.body)
			e := apiError(out)
			if code != http.StatusBadRequest || e.Code != tt.code || e.Field != tt.field {
				t.Errorf("%d %+v, want 400 %s naming %s", code, e, tt.code, tt.field)
			}
		})
	}
	for _, table := range []string{"batches", "cells", "latency"} {
		if n := s.count(t, table); n != 0 {
			t.Errorf("%s holds %d rows after refused batches", table, n)
		}
	}
	if got := s.mustPost(t, euToken, good); got != Stored {
		t.Errorf("the same batch without the fault: %s", got)
	}
}

func TestTheSameBatchTwiceCountsOnceAndALaterBatchForTheWindowAdds(t *testing.T) {
	s := startService(t)
	ws := window(3)
	first := batch("eu-west-1", ws, 0, c("shop", "transactional", "order", "email", "delivered", "", 100, 90))
	first.Withheld = 4
	delivered := func() (int64, int64) {
		var f Funnel
		s.get(t, "/v1/funnel?region=eu-west-1", &f)
		for _, st := range f.Stages {
			if st.Stage == "delivered" {
				return st.Count, f.Withheld
			}
		}
		return -1, -1
	}
	steps := []struct {
		name                string
		b                   wire.Batch
		result              string
		delivered, withheld int64
	}{
		{"first post", first, Stored, 100, 4},
		{"the same batch again", first, Unchanged, 100, 4},
		{"the same key with recomputed counts replaces", func() wire.Batch {
			b := first
			b.Cells = []wire.Cell{c("shop", "transactional", "order", "email", "delivered", "", 110, 95)}
			return b
		}(), Replaced, 110, 4},
		{"a later batch of the window adds", func() wire.Batch {
			b := batch("eu-west-1", ws, 1, c("shop", "transactional", "order", "email", "delivered", "", 30, 30))
			b.Withheld = 2
			return b
		}(), Stored, 140, 6},
		{"the later batch again", func() wire.Batch {
			b := batch("eu-west-1", ws, 1, c("shop", "transactional", "order", "email", "delivered", "", 30, 30))
			b.Withheld = 2
			return b
		}(), Unchanged, 140, 6},
	}
	for _, st := range steps {
		if got := s.mustPost(t, euToken, st.b); got != st.result {
			t.Errorf("%s: result %s, want %s", st.name, got, st.result)
		}
		if d, w := delivered(); d != st.delivered || w != st.withheld {
			t.Errorf("%s: delivered %d withheld %d, want %d and %d", st.name, d, w, st.delivered, st.withheld)
		}
	}
	if n := s.count(t, "batches"); n != 2 {
		t.Errorf("%d batches stored, want 2 (seq 0 and 1)", n)
	}
}

// What leaves a region is built by kanon from per-user events; the central database must hold
// none of those users' ids, tokens, addresses or numbers, even after payloads that try to
// smuggle them in.
func TestCentralDatabaseHoldsNoneOfTheTestUsersIdentifiers(t *testing.T) {
	s := startService(t)
	var secrets []string
	var cells []kanon.Cell
	add := func(key wire.Key, user string) {
		cells = append(cells, kanon.Cell{Key: key, Count: 1, Recipients: map[string]struct{}{user: {}}})
	}
	for i := range 60 {
		user := fmt.Sprintf("test-user-%04d-%s", i, "9f3c")
		email := fmt.Sprintf("person%04d@example.org", i)
		phone := fmt.Sprintf("+4915100%05d", i)
		token := fmt.Sprintf("%064x", 0xabcdef00+i)
		secrets = append(secrets, user, email, phone, token)
		add(wire.Key{App: "shop", Tier: "transactional", Category: "order", Channel: wire.ChannelAll, Stage: "accepted"}, user)
		add(wire.Key{App: "shop", Tier: "transactional", Category: "order", Channel: "email", Stage: "delivered"}, user)
		if i%7 == 0 { // a small group: folded or withheld, never sent as is
			add(wire.Key{App: "shop", Tier: "transactional", Category: "security", Channel: "sms", Country: "DE", Stage: "failed", Reason: "permanent"}, user)
		}
	}
	folded := kanon.Fold(cells, s.cfg.K)
	b := batch("eu-west-1", window(4), 0, folded.Cells...)
	b.Withheld = folded.Withheld
	if folded.Withheld == 0 {
		t.Fatal("the small group was not withheld: the fixture does not exercise withholding")
	}
	s.mustPost(t, euToken, b)

	// Attempts to carry identifiers in every field are refused.
	raw, _ := json.Marshal(batch("eu-west-1", window(5), 0, c("shop", "transactional", "order", "email", "delivered", "", 20, 20)))
	for _, attempt := range []string{
		strings.Replace(string(raw), `"order"`, `"`+secrets[0]+`"`, 1),
		strings.Replace(string(raw), `"shop"`, `"`+secrets[2]+`"`, 1),
		strings.Replace(string(raw), `"stage"`, `"email":"`+secrets[1]+`","stage"`, 1),
		strings.Replace(string(raw), `"count"`, `"reason":"`+secrets[3]+`","count"`, 1),
		strings.Replace(string(raw), `"email","stage"`, `"email","country":"`+secrets[2]+`","stage"`, 1),
	} {
		if code, out := s.post(t, euToken, []byte(attempt)); code != http.StatusBadRequest {
			t.Errorf("smuggling attempt accepted: %d %v\n%s", code, out, attempt)
		}
	}

	// Scan every column of every table, as text.
	ctx := context.Background()
	rows, err := s.db.Query(ctx, `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	type col struct{ table, column string }
	var cols []col
	for rows.Next() {
		var c col
		if err := rows.Scan(&c.table, &c.column); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	rows.Close()
	found := func(value string) []string {
		var where []string
		for _, c := range cols {
			var n int64
			q := fmt.Sprintf(`SELECT count(*) FROM %q WHERE position($1 in %q::text) > 0`, c.table, c.column)
			if err := s.db.QueryRow(ctx, q, value).Scan(&n); err != nil {
				t.Fatalf("scanning %s.%s: %v", c.table, c.column, err)
			}
			if n > 0 {
				where = append(where, c.table+"."+c.column)
			}
		}
		return where
	}
	// The scan finds what is there (so an empty result means something).
	if where := found("order"); len(where) == 0 {
		t.Fatal("the scan does not find the stored category: it would miss identifiers too")
	}
	for _, v := range secrets {
		if where := found(v); len(where) > 0 {
			t.Errorf("%q found in %v", v, where)
		}
	}
	t.Logf("scanned %d columns for %d identifiers; %d cells stored, %d events withheld", len(cols), len(secrets), s.count(t, "cells"), folded.Withheld)
}

// The schema has only the columns it was designed with, so a new one is a reviewed decision.
func TestCentralSchemaHasNoColumnBeyondCountsAndClosedDimensions(t *testing.T) {
	s := startService(t)
	rows, err := s.db.Query(context.Background(), `SELECT table_name || '.' || column_name || ' ' || data_type FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'schema_migrations' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	want := []string{
		"batches.digest bytea", "batches.latency_withheld bigint", "batches.received_at timestamp with time zone",
		"batches.region text", "batches.seq integer", "batches.window_start timestamp with time zone", "batches.withheld bigint",
		"cells.app text", "cells.category text", "cells.channel text", "cells.count bigint", "cells.country text",
		"cells.distinct_recipients bigint", "cells.reason text", "cells.region text", "cells.seq integer", "cells.stage text",
		"cells.tier text", "cells.window_start timestamp with time zone",
		"cells_hourly.app text", "cells_hourly.category text", "cells_hourly.channel text", "cells_hourly.count bigint",
		"cells_hourly.country text", "cells_hourly.hour timestamp with time zone", "cells_hourly.reason text",
		"cells_hourly.region text", "cells_hourly.stage text", "cells_hourly.tier text",
		"latency.bounds_ms ARRAY", "latency.channel text", "latency.counts ARRAY", "latency.distinct_recipients bigint", "latency.region text", "latency.seq integer",
		"latency.tier text", "latency.window_start timestamp with time zone",
		"latency_hourly.channel text", "latency_hourly.counts ARRAY", "latency_hourly.hour timestamp with time zone",
		"latency_hourly.region text", "latency_hourly.tier text",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("columns:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// An exporter that times out and retries may race its own first post: the key lock makes one
// of them store and the others find it stored.
func TestConcurrentPostsOfOneBatchStoreItOnce(t *testing.T) {
	s := startService(t)
	b := batch("eu-west-1", window(6), 0, c("shop", "transactional", "order", "email", "delivered", "", 50, 50))
	const n = 8
	results := make(chan string, n)
	for range n {
		go func() {
			code, out := s.post(t, euToken, b)
			if code != http.StatusOK {
				results <- fmt.Sprintf("status %d %v", code, out)
				return
			}
			results <- out["result"].(string)
		}()
	}
	got := map[string]int{}
	for range n {
		got[<-results]++
	}
	if got[Stored] != 1 || got[Unchanged] != n-1 {
		t.Errorf("results %v, want 1 stored and %d unchanged", got, n-1)
	}
	var f Funnel
	s.get(t, "/v1/funnel", &f)
	if d := stageMap(f)["delivered"]; d != 50 {
		t.Errorf("delivered = %d, want 50", d)
	}
}

func TestIngestRefusesABodyOverTheLimitWith413(t *testing.T) {
	s := startService(t)
	big := make([]byte, 0, s.cfg.MaxBodyBytes+1024)
	big = append(big, `{"version":1,"region":"eu-west-1","window_start":"2026-11-25T04:00:00Z","seq":0,"withheld":0,"cells":[`...)
	one := `{"app":"shop","tier":"social","category":"news","channel":"push","stage":"read","count":10,"distinct_recipients":10},`
	for int64(len(big)) <= s.cfg.MaxBodyBytes {
		big = append(big, one...)
	}
	code, out := s.post(t, euToken, big)
	if code != http.StatusRequestEntityTooLarge || apiError(out).Code != "body_too_large" {
		t.Errorf("%d %v, want 413 body_too_large", code, out)
	}
}
