package audit

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func validEntry() Entry {
	return Entry{
		ID: "019ab3f0-6c1e-7d2a-9b4f-3e2d1c0b9a87", At: time.Date(2026, 11, 25, 4, 0, 0, 0, time.UTC), App: "app-1",
		UserKey: strings.Repeat("ab", 32), Jurisdiction: "EU", Region: "eu-west-1", Reason: ReasonHome, PolicyVersion: 1, RequestID: "req-1",
	}
}

func TestValidateNamesTheWrongField(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Entry)
		field  string
	}{
		{"valid home", func(*Entry) {}, ""},
		{"valid failover", func(e *Entry) { e.Reason, e.Region = "failover-from-eu-west-1", "eu-central-1" }, ""},
		{"valid refusal", func(e *Entry) { e.Reason, e.Region = ReasonRefused, "" }, ""},
		{"valid redirect without region", func(e *Entry) { e.Reason, e.Region = ReasonRedirect, "" }, ""},
		{"id not a uuid", func(e *Entry) { e.ID = "x" }, "id"},
		{"id in upper case", func(e *Entry) { e.ID = strings.ToUpper(e.ID) }, "id"},
		{"no time", func(e *Entry) { e.At = time.Time{} }, "at"},
		{"bad app", func(e *Entry) { e.App = "a b" }, "app"},
		{"user id instead of key", func(e *Entry) { e.UserKey = "ada" }, "user_key"},
		{"bad jurisdiction", func(e *Entry) { e.Jurisdiction = "eu" }, "jurisdiction"},
		{"bad region", func(e *Entry) { e.Region = "EU-WEST-1" }, "region"},
		{"home without region", func(e *Entry) { e.Region = "" }, "region"},
		{"refused with a region", func(e *Entry) { e.Reason = ReasonRefused }, "region"},
		{"failover from nowhere", func(e *Entry) { e.Reason = "failover-from-" }, "reason"},
		{"unknown reason", func(e *Entry) { e.Reason = "random" }, "reason"},
		{"negative policy version", func(e *Entry) { e.PolicyVersion = -1 }, "policy_version"},
		{"empty request id", func(e *Entry) { e.RequestID = "" }, "request_id"},
	}
	for _, tt := range tests {
		e := validEntry()
		tt.change(&e)
		fe := e.Validate()
		switch {
		case tt.field == "" && fe != nil:
			t.Errorf("%s: refused: %v", tt.name, fe)
		case tt.field != "" && (fe == nil || fe.Field != tt.field):
			t.Errorf("%s: got %v, want an error on %s", tt.name, fe, tt.field)
		}
	}
}

func TestHashCoversEveryFieldAndFieldBoundaries(t *testing.T) {
	base := validEntry()
	base.Seq = 7
	h := ComputeHash(Genesis, base)
	changes := map[string]func(*Entry){
		"seq":            func(e *Entry) { e.Seq++ },
		"id":             func(e *Entry) { e.ID = "019ab3f0-6c1e-7d2a-9b4f-3e2d1c0b9a88" },
		"at":             func(e *Entry) { e.At = e.At.Add(time.Microsecond) },
		"app":            func(e *Entry) { e.App = "app-2" },
		"user_key":       func(e *Entry) { e.UserKey = strings.Repeat("ba", 32) },
		"jurisdiction":   func(e *Entry) { e.Jurisdiction = "US" },
		"region":         func(e *Entry) { e.Region = "eu-central-1" },
		"reason":         func(e *Entry) { e.Reason = ReasonRedirect },
		"policy_version": func(e *Entry) { e.PolicyVersion = 2 },
		"request_id":     func(e *Entry) { e.RequestID = "req-2" },
		// A character moved from one field to the next must not give the same encoding.
		"boundary": func(e *Entry) { e.App, e.UserKey = e.App+"a", strings.TrimPrefix(e.UserKey, "a") },
	}
	for field, change := range changes {
		e := base
		change(&e)
		if bytes.Equal(ComputeHash(Genesis, e), h) {
			t.Errorf("changing %s left the hash unchanged", field)
		}
	}
	if bytes.Equal(ComputeHash(h, base), h) {
		t.Error("the previous hash is not covered")
	}
	sub := base
	sub.At = base.At.Add(300 * time.Nanosecond) // below what Postgres stores
	if !bytes.Equal(ComputeHash(Genesis, sub), h) {
		t.Error("a time that Postgres stores alike hashes differently")
	}
}
