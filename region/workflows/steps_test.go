package workflows

import (
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/wire"
)

func TestNextTimeOfDayInTheUsersZoneAcrossDST(t *testing.T) {
	paris, _ := time.LoadLocation("Europe/Paris")
	ny, _ := time.LoadLocation("America/New_York")
	kolkata, _ := time.LoadLocation("Asia/Kolkata")
	utc := func(s string) time.Time { v, _ := time.Parse(time.RFC3339, s); return v }
	tests := []struct {
		name string
		now  time.Time
		hhmm string
		loc  *time.Location
		want time.Time
	}{
		{"later today", utc("2026-06-01T05:00:00Z"), "09:00", paris, utc("2026-06-01T07:00:00Z")},
		{"already past: tomorrow", utc("2026-06-01T08:00:00Z"), "09:00", paris, utc("2026-06-02T07:00:00Z")},
		{"exactly now: tomorrow", utc("2026-06-01T07:00:00Z"), "09:00", paris, utc("2026-06-02T07:00:00Z")},
		{"the same instant in two zones differs", utc("2026-06-01T05:00:00Z"), "09:00", ny, utc("2026-06-01T13:00:00Z")},
		{"a half-hour zone", utc("2026-06-01T00:00:00Z"), "09:00", kolkata, utc("2026-06-01T03:30:00Z")},
		{"midnight", utc("2026-06-01T22:30:00Z"), "00:00", paris, utc("2026-06-02T22:00:00Z")},
		// Europe/Paris springs forward on 2026-03-29 at 02:00 to 03:00.
		{"09:00 on the spring-forward day is 07:00Z", utc("2026-03-28T12:00:00Z"), "09:00", paris, utc("2026-03-29T07:00:00Z")},
		{"09:00 the day before is 08:00Z", utc("2026-03-27T12:00:00Z"), "09:00", paris, utc("2026-03-28T08:00:00Z")},
		{"02:30 never happens that day: the gap's end, 03:00", utc("2026-03-28T12:00:00Z"), "02:30", paris, utc("2026-03-29T01:00:00Z")},
		// ... and falls back on 2026-10-25 at 03:00 to 02:00: 02:30 happens twice, the first counts.
		{"02:30 on the fall-back day: the first", utc("2026-10-24T12:00:00Z"), "02:30", paris, utc("2026-10-25T00:30:00Z")},
		{"after the first 02:30: the next day's, not the second", utc("2026-10-25T00:45:00Z"), "02:30", paris, utc("2026-10-26T01:30:00Z")},
		{"09:00 after fall-back is 08:00Z", utc("2026-10-24T12:00:00Z"), "09:00", paris, utc("2026-10-25T08:00:00Z")},
		{"New York springs forward on 2026-03-08", utc("2026-03-07T20:00:00Z"), "02:15", ny, utc("2026-03-08T07:00:00Z")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NextTimeOfDay(tt.now, tt.hhmm, tt.loc)
			if err != nil || !got.Equal(tt.want) {
				t.Fatalf("NextTimeOfDay(%v, %s, %v) = %v, %v; want %v", tt.now, tt.hhmm, tt.loc, got.UTC(), err, tt.want)
			}
		})
	}
	for _, bad := range []string{"24:00", "9:00", "09:60", "", "0900", "09:00:00", "+9:00"} {
		if _, err := NextTimeOfDay(time.Now(), bad, paris); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestConditionsHoldOnTheRunsFacts(t *testing.T) {
	f := Facts{
		Payload: map[string]any{"order": map[string]any{"total": 120.0, "tags": []any{"gift", 3.0}}, "name": "Ada", "vip": true},
		Steps:   map[string][]string{"chat": {"sent", "delivered"}, "seen": {"sent", "delivered", "read"}, "nudge": {"skipped"}, "fail": {"failed"}},
		Enabled: func(ch string) bool { return ch == "push" },
	}
	c := func(s string) wire.WorkflowCondition { return wire.WorkflowCondition{Step: s} }
	tests := []struct {
		name string
		cond wire.WorkflowCondition
		want bool
	}{
		{"delivered", wire.WorkflowCondition{Step: "chat", Is: "delivered"}, true},
		{"unread when delivered only", wire.WorkflowCondition{Step: "chat", Is: "unread"}, true},
		{"unread when read", wire.WorkflowCondition{Step: "seen", Is: "unread"}, false},
		{"read", wire.WorkflowCondition{Step: "seen", Is: "read"}, true},
		{"a skipped step is not unread", wire.WorkflowCondition{Step: "nudge", Is: "unread"}, false},
		{"a skipped step is undelivered", wire.WorkflowCondition{Step: "nudge", Is: "undelivered"}, true},
		{"a failed step is undelivered", wire.WorkflowCondition{Step: "fail", Is: "undelivered"}, true},
		{"a read step counts as delivered for undelivered", wire.WorkflowCondition{Step: "seen", Is: "undelivered"}, false},
		{"skipped", wire.WorkflowCondition{Step: "nudge", Is: "skipped"}, true},
		{"a step with no outcome yet was not sent", wire.WorkflowCondition{Step: "later", Is: "sent"}, false},
		{"preference enabled", wire.WorkflowCondition{Preference: "push", Is: "enabled"}, true},
		{"preference disabled", wire.WorkflowCondition{Preference: "email", Is: "disabled"}, true},
		{"number gte", wire.WorkflowCondition{Payload: "order.total", Op: "gte", Value: 100.0}, true},
		{"number lt", wire.WorkflowCondition{Payload: "order.total", Op: "lt", Value: 100.0}, false},
		{"a number is never equal to a string", wire.WorkflowCondition{Payload: "order.total", Op: "eq", Value: "120"}, false},
		{"a number never orders with a string", wire.WorkflowCondition{Payload: "order.total", Op: "gt", Value: "1"}, false},
		{"strings order", wire.WorkflowCondition{Payload: "name", Op: "lt", Value: "Bob"}, true},
		{"eq bool", wire.WorkflowCondition{Payload: "vip", Op: "eq", Value: true}, true},
		{"in", wire.WorkflowCondition{Payload: "name", Op: "in", Value: []any{"Grace", "Ada"}}, true},
		{"contains in a string", wire.WorkflowCondition{Payload: "name", Op: "contains", Value: "d"}, true},
		{"contains in a list", wire.WorkflowCondition{Payload: "order.tags", Op: "contains", Value: 3.0}, true},
		{"exists", wire.WorkflowCondition{Payload: "order.total", Op: "exists"}, true},
		{"absent", wire.WorkflowCondition{Payload: "order.coupon", Op: "absent"}, true},
		{"eq on a missing value", wire.WorkflowCondition{Payload: "order.coupon", Op: "eq", Value: "x"}, false},
		{"ne on a missing value", wire.WorkflowCondition{Payload: "order.coupon", Op: "ne", Value: "x"}, true},
		{"gt on an object", wire.WorkflowCondition{Payload: "order", Op: "gt", Value: 1.0}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := Holds([]wire.WorkflowCondition{tt.cond}, f); got != tt.want {
				t.Fatalf("%+v: %v, want %v", tt.cond, got, tt.want)
			}
		})
	}
	if ok, which := Holds([]wire.WorkflowCondition{{Step: "chat", Is: "sent"}, {Step: "seen", Is: "unread"}}, f); ok || which != "if[1]" {
		t.Fatalf("all must hold: %v %s", ok, which)
	}
	if ok, _ := Holds(nil, f); !ok {
		t.Fatal("no condition holds")
	}
	_ = c
}
