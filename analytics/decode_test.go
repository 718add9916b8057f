package analytics

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/analytics/wire"
)

var testNow = time.Date(2026, 11, 25, 4, 30, 0, 0, time.UTC)

func testRules() rules {
	return rules{k: 10, categories: CategoriesConfig{Global: []string{"security", "news"}, Apps: map[string][]string{"shop": {"order"}}}, now: func() time.Time { return testNow }}
}

// validBatch is a well-formed batch as JSON-ready maps, so each case can break one thing.
func validBatch() map[string]any {
	h := wire.NewHistogram("transactional", "email")
	h.Counts[2] = 40
	return map[string]any{
		"version": 1, "region": "eu-west-1", "window_start": "2026-11-25T04:00:00Z", "seq": 0,
		"cells": []any{
			map[string]any{"app": "shop", "tier": "transactional", "category": "order", "channel": "email", "stage": "delivered", "count": 40, "distinct_recipients": 38},
			map[string]any{"app": "shop", "tier": "transactional", "category": "security", "channel": "sms", "country": "DE", "stage": "suppressed", "reason": "no_address", "count": 12, "distinct_recipients": 12},
		},
		"latency":  []any{map[string]any{"tier": h.Tier, "channel": h.Channel, "bounds_ms": h.BoundsMS, "counts": h.Counts, "distinct_recipients": 30}},
		"withheld": 3,
	}
}

func cell(b map[string]any, i int) map[string]any { return b["cells"].([]any)[i].(map[string]any) }

func encode(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func TestDecodeAndCheckAcceptAWellFormedBatch(t *testing.T) {
	b, err := DecodeBatch(strings.NewReader(encode(t, validBatch())))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if fe := testRules().check(b, "eu-west-1"); fe != nil {
		t.Fatalf("check: %v", fe)
	}
	if len(b.Cells) != 2 || b.Cells[1].Country != "DE" || b.Cells[1].Reason != "no_address" || b.Withheld != 3 || b.Latency[0].Total() != 40 {
		t.Errorf("decoded %+v", b)
	}
}

func TestDecodeRefusesAnythingOutsideTheClosedSchemaNamingTheField(t *testing.T) {
	tests := []struct {
		name      string
		body      func() string
		code      string
		field     string
		wantInMsg string
	}{
		{"a user_id beside the batch fields", func() string { b := validBatch(); b["user_id"] = "u-123"; return encode(t, b) }, "unknown_field", "user_id", ""},
		{"a user_id inside a cell", func() string { b := validBatch(); cell(b, 1)["user_id"] = "u-123"; return encode(t, b) }, "unknown_field", "cells[1].user_id", ""},
		{"an extra field inside a histogram", func() string {
			b := validBatch()
			b["latency"].([]any)[0].(map[string]any)["email"] = "a@b.c"
			return encode(t, b)
		}, "unknown_field", "latency[0].email", ""},
		{"a missing count", func() string { b := validBatch(); delete(cell(b, 0), "count"); return encode(t, b) }, "missing_field", "cells[0].count", ""},
		{"a missing region", func() string { b := validBatch(); delete(b, "region"); return encode(t, b) }, "missing_field", "region", ""},
		{"a histogram without its distinct recipients", func() string {
			b := validBatch()
			delete(b["latency"].([]any)[0].(map[string]any), "distinct_recipients")
			return encode(t, b)
		}, "missing_field", "latency[0].distinct_recipients", ""},
		{"a string where a count goes", func() string { b := validBatch(); cell(b, 0)["count"] = "40"; return encode(t, b) }, "invalid_field", "cells[0].count", ""},
		{"a fractional count", func() string { b := validBatch(); cell(b, 0)["count"] = 40.5; return encode(t, b) }, "invalid_field", "cells[0].count", ""},
		{"a negative withheld", func() string { b := validBatch(); b["withheld"] = -1; return encode(t, b) }, "invalid_field", "withheld", ""},
		{"an object where a category goes", func() string {
			b := validBatch()
			cell(b, 0)["category"] = map[string]any{"id": "u-1"}
			return encode(t, b)
		}, "invalid_field", "cells[0].category", ""},
		{"a null app", func() string { b := validBatch(); cell(b, 0)["app"] = nil; return encode(t, b) }, "invalid_field", "cells[0].app", ""},
		{"a field given twice", func() string {
			return strings.Replace(encode(t, validBatch()), `"withheld":3`, `"withheld":3,"withheld":0`, 1)
		}, "duplicate_field", "withheld", ""},
		{"a bad window time", func() string { b := validBatch(); b["window_start"] = "yesterday"; return encode(t, b) }, "invalid_field", "window_start", ""},
		{"truncated JSON", func() string { return encode(t, validBatch())[:40] }, "invalid_json", "", ""},
		{"a second object after the first", func() string { return encode(t, validBatch()) + "{}" }, "invalid_json", "", ""},
		{"an array body", func() string { return "[]" }, "invalid_field", "body", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeBatch(strings.NewReader(tt.body()))
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a FieldError", err)
			}
			if errorCodes[fe.Code] != fe.Status {
				t.Errorf("code %s with status %d is not in the catalogue (errors.go)", fe.Code, fe.Status)
			}
			if fe.Code != tt.code || (tt.field != "" && fe.Field != tt.field) || fe.Status != 400 {
				t.Errorf("got %d %s %q (%s), want 400 %s %q", fe.Status, fe.Code, fe.Field, fe.Message, tt.code, tt.field)
			}
		})
	}
}

func TestCheckRefusesValuesOutsideTheVocabulariesBelowKOrUnregistered(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(b map[string]any)
		region string
		status int
		code   string
		field  string
	}{
		{"an unknown category", func(b map[string]any) { cell(b, 0)["category"] = "alice-smith" }, "", 400, "unknown_category", "cells[0].category"},
		{"another app's category", func(b map[string]any) { cell(b, 0)["app"] = "blog" }, "", 400, "unknown_category", "cells[0].category"},
		{"a cell below k", func(b map[string]any) { cell(b, 1)["distinct_recipients"] = 9 }, "", 400, "below_k", "cells[1].distinct_recipients"},
		{"more recipients than events", func(b map[string]any) { cell(b, 0)["distinct_recipients"] = 41 }, "", 400, "invalid_field", "cells[0].distinct_recipients"},
		{"an unknown stage", func(b map[string]any) { cell(b, 0)["stage"] = "opened" }, "", 400, "invalid_field", "cells[0].stage"},
		{"an unknown tier", func(b map[string]any) { cell(b, 0)["tier"] = "urgent" }, "", 400, "invalid_field", "cells[0].tier"},
		{"an unknown channel", func(b map[string]any) { cell(b, 0)["channel"] = "fax" }, "", 400, "invalid_field", "cells[0].channel"},
		{"a reason the stage does not have", func(b map[string]any) { cell(b, 0)["reason"] = "no_address" }, "", 400, "invalid_field", "cells[0].reason"},
		{"a free-text reason", func(b map[string]any) { cell(b, 1)["reason"] = "bob@example.com bounced" }, "", 400, "invalid_field", "cells[1].reason"},
		{"a country on an email cell", func(b map[string]any) { cell(b, 0)["country"] = "DE" }, "", 400, "invalid_field", "cells[0].country"},
		{"an app id that is not one", func(b map[string]any) { cell(b, 0)["app"] = "+4915112345678" }, "", 400, "invalid_field", "cells[0].app"},
		{"two cells with one key", func(b map[string]any) { b["cells"] = append(b["cells"].([]any), cell(b, 0)) }, "", 400, "duplicate_cell", "cells[2]"},
		{"a window not on the minute", func(b map[string]any) { b["window_start"] = "2026-11-25T04:00:30Z" }, "", 400, "invalid_field", "window_start"},
		{"a window in the future", func(b map[string]any) { b["window_start"] = "2026-11-25T05:00:00Z" }, "", 400, "invalid_field", "window_start"},
		{"another version", func(b map[string]any) { b["version"] = 2 }, "", 400, "unsupported_version", "version"},
		{"a window past the retention", func(b map[string]any) { b["window_start"] = "2026-10-01T00:00:00Z" }, "", 400, "window_too_old", "window_start"},
		{"other latency bounds", func(b map[string]any) { b["latency"].([]any)[0].(map[string]any)["bounds_ms"] = []int{1, 2} }, "", 400, "invalid_field", "latency[0].bounds_ms"},
		{"a histogram below k", func(b map[string]any) {
			h := wire.NewHistogram("social", "push")
			h.Counts[0], h.DistinctRecipients = 3, 3
			b["latency"] = []any{h}
		}, "", 400, "below_k", "latency[0].distinct_recipients"},
		// The case: thousands of observations, fewer than k users. Central judged
		// histograms on observations and stored this one.
		{"a histogram of thousands of deliveries to fewer than k recipients", func(b map[string]any) {
			h := wire.NewHistogram("transactional", "email")
			h.Counts[2], h.DistinctRecipients = 5000, 3
			b["latency"] = []any{h}
		}, "", 400, "below_k", "latency[0].distinct_recipients"},
		{"a histogram with more recipients than observations", func(b map[string]any) {
			b["latency"].([]any)[0].(map[string]any)["distinct_recipients"] = 41
		}, "", 400, "invalid_field", "latency[0].distinct_recipients"},
		{"another region's batch", func(b map[string]any) {}, "us-east-1", 403, "region_mismatch", "region"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := validBatch()
			tt.edit(raw)
			b, err := DecodeBatch(strings.NewReader(encode(t, raw)))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			region := tt.region
			if region == "" {
				region = "eu-west-1"
			}
			r := testRules()
			r.horizon = testNow.Add(-35 * 24 * time.Hour)
			fe := r.check(b, region)
			if fe == nil {
				t.Fatal("accepted")
			}
			if errorCodes[fe.Code] != fe.Status {
				t.Errorf("code %s with status %d is not in the catalogue (errors.go)", fe.Code, fe.Status)
			}
			if fe.Status != tt.status || fe.Code != tt.code || fe.Field != tt.field {
				t.Errorf("got %d %s %q (%s), want %d %s %q", fe.Status, fe.Code, fe.Field, fe.Message, tt.status, tt.code, tt.field)
			}
		})
	}
}

// FuzzDecodeBatch: the decoder never panics, and whatever it accepts and the rules pass
// survives a round trip and holds no cell below k nor an unregistered category.
func FuzzDecodeBatch(f *testing.F) {
	f.Add(mustJSON(validBatch()))
	f.Add([]byte(`{"version":1,"region":"eu-west-1","window_start":"2026-11-25T04:00:00Z","seq":0,"cells":[],"withheld":0}`))
	f.Add([]byte(`{"cells":[{"user_id":"x"}]}`))
	f.Add([]byte(`{"version":1,"version":1}`))
	f.Add([]byte(`[{"a":[1,2,{"b":null}]}]`))
	r := testRules()
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBatch(strings.NewReader(string(data)))
		if err != nil {
			var fe *FieldError
			if errors.As(err, &fe) && fe.Status != 400 {
				t.Fatalf("decode error with status %d", fe.Status)
			}
			return
		}
		if r.check(b, "eu-west-1") != nil {
			return
		}
		for _, c := range b.Cells {
			if c.DistinctRecipients < int64(r.k) || !r.categories.Allowed(c.App, c.Category) {
				t.Fatalf("accepted cell %+v", c)
			}
		}
		again, err := DecodeBatch(strings.NewReader(string(mustJSON(b))))
		if err != nil {
			t.Fatalf("re-decoding an accepted batch: %v", err)
		}
		if string(canonical(again)) != string(canonical(b)) {
			t.Fatalf("round trip changed the batch:\n%s\n%s", canonical(b), canonical(again))
		}
	})
}

func mustJSON(v any) []byte {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return raw
}

func TestCanonicalFormIgnoresCellOrderAndTimeZone(t *testing.T) {
	b, err := DecodeBatch(strings.NewReader(encode(t, validBatch())))
	if err != nil {
		t.Fatal(err)
	}
	again := b
	again.Cells = []wire.Cell{b.Cells[1], b.Cells[0]}
	again.WindowStart = b.WindowStart.In(time.FixedZone("CET", 3600))
	if string(canonical(b)) != string(canonical(again)) {
		t.Error("the same batch in another order or zone hashes differently")
	}
	if b.Cells[0].Category != "order" {
		t.Error("canonical reordered the caller's cells")
	}
	changed := b
	changed.Withheld++
	if string(canonical(b)) == string(canonical(changed)) {
		t.Error("a changed withheld total hashes the same")
	}
}

// An id-shaped value in the app field passes the shape check; with listed_apps_only it is
// refused unless the app is listed.
func TestCheckRefusesUnlistedAppsWhenOnlyListedAppsMayPost(t *testing.T) {
	raw := validBatch()
	cell(raw, 1)["app"] = "user-4711"
	cell(raw, 1)["category"] = "other"
	b, err := DecodeBatch(strings.NewReader(encode(t, raw)))
	if err != nil {
		t.Fatal(err)
	}
	r := testRules()
	if fe := r.check(b, "eu-west-1"); fe != nil {
		t.Fatalf("without listed_apps_only: %v", fe)
	}
	r.categories.ListedAppsOnly = true
	fe := r.check(b, "eu-west-1")
	if fe == nil || fe.Code != "unknown_app" || fe.Field != "cells[1].app" || errorCodes[fe.Code] != fe.Status {
		t.Errorf("with listed_apps_only: %v, want unknown_app naming cells[1].app", fe)
	}
}
