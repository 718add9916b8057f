package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/herald-notify/herald/platform/wire"
)

// NextTimeOfDay is the first instant after now when the clock in loc reads hhmm ("09:00"). On
// a day the clock skips hhmm (a spring-forward gap) it is the instant the gap ends; on a day it
// reads hhmm twice (fall-back) it is the first.
func NextTimeOfDay(now time.Time, hhmm string, loc *time.Location) (time.Time, error) {
	h, m, ok := timeOfDay(hhmm)
	if !ok {
		return time.Time{}, fmt.Errorf("%q is not a time of day HH:MM", hhmm)
	}
	local := now.In(loc)
	for d := 0; d <= 2; d++ {
		day := local.AddDate(0, 0, d)
		at := at(day.Year(), day.Month(), day.Day(), h, m, loc)
		if at.After(now) {
			return at, nil
		}
	}
	return time.Time{}, fmt.Errorf("no %s after %v in %v", hhmm, now, loc) // unreachable: a day has every time of day once
}

func timeOfDay(s string) (h, m int, ok bool) {
	if len(s) != 5 || s[2] != ':' {
		return 0, 0, false
	}
	for _, i := range []int{0, 1, 3, 4} {
		if s[i] < '0' || s[i] > '9' {
			return 0, 0, false
		}
	}
	h, m = int(s[0]-'0')*10+int(s[1]-'0'), int(s[3]-'0')*10+int(s[4]-'0')
	return h, m, h <= 23 && m <= 59
}

// at is the instant the clock in loc first reads y-mo-d h:m, or, when it never does (the time
// skipped by a DST change), the instant the gap ends.
func at(y int, mo time.Month, d, h, m int, loc *time.Location) time.Time {
	reads := func(t time.Time) bool {
		l := t.In(loc)
		return l.Hour() == h && l.Minute() == m && l.Day() == d
	}
	t := time.Date(y, mo, d, h, m, 0, 0, loc)
	if reads(t) {
		// A fall-back day reads it twice; time.Date may give either.
		for _, back := range []time.Duration{2 * time.Hour, time.Hour, 30 * time.Minute} {
			if earlier := t.Add(-back); reads(earlier) {
				return earlier
			}
		}
		return t
	}
	// In a gap: the clock jumps within a few hours of t, whichever side time.Date chose.
	for c := t.Add(-4 * time.Hour); c.Before(t.Add(4 * time.Hour)); c = c.Add(time.Minute) {
		_, before := c.Add(-time.Minute).Zone()
		if _, after := c.Zone(); after > before && c.In(loc).Day() == d {
			return c
		}
	}
	return t
}

// Facts are what a run's conditions are evaluated against.
type Facts struct {
	Payload map[string]any
	// Steps is the outcome of each earlier channel step by step id: one of wire.StepStatuses.
	// A step's status may hold several (delivered and read), so it is a set.
	Steps map[string][]string
	// Enabled reports whether the user's preferences allow a channel in the workflow's category.
	Enabled func(channel string) bool
}

// Holds reports whether every condition holds, and when one does not, which one (for the
// skipped step's reason).
func Holds(conds []wire.WorkflowCondition, f Facts) (bool, string) {
	for i, c := range conds {
		if !holds(c, f) {
			return false, fmt.Sprintf("if[%d]", i)
		}
	}
	return true, ""
}

func holds(c wire.WorkflowCondition, f Facts) bool {
	switch {
	case c.Step != "":
		st := f.Steps[c.Step]
		switch c.Is {
		case "unread":
			return !slices.Contains(st, "read") && !slices.Contains(st, "skipped")
		case "undelivered":
			return !slices.Contains(st, "delivered") && !slices.Contains(st, "read")
		}
		return slices.Contains(st, c.Is)
	case c.Preference != "":
		enabled := f.Enabled != nil && f.Enabled(c.Preference)
		return enabled == (c.Is == "enabled")
	}
	v, ok := wire.PayloadValue(f.Payload, c.Payload)
	switch c.Op {
	case "exists":
		return ok
	case "absent":
		return !ok
	}
	if !ok {
		return c.Op == "ne"
	}
	switch c.Op {
	case "eq":
		return equal(v, c.Value)
	case "ne":
		return !equal(v, c.Value)
	case "in":
		list, _ := c.Value.([]any)
		return slices.ContainsFunc(list, func(x any) bool { return equal(v, x) })
	case "contains":
		switch have := v.(type) {
		case string:
			s, ok := c.Value.(string)
			return ok && strings.Contains(have, s)
		case []any:
			return slices.ContainsFunc(have, func(x any) bool { return equal(x, c.Value) })
		}
		return false
	case "gt", "gte", "lt", "lte":
		cmp, ok := compare(v, c.Value)
		if !ok {
			return false
		}
		switch c.Op {
		case "gt":
			return cmp > 0
		case "gte":
			return cmp >= 0
		case "lt":
			return cmp < 0
		}
		return cmp <= 0
	}
	return false
}

// equal compares two JSON scalars: numbers by value, never a number with a string.
func equal(a, b any) bool {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		return ok && x == y
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	}
	return false
}

// compare orders two numbers or two strings; any other pair is not ordered.
func compare(a, b any) (int, bool) {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		if !ok {
			return 0, false
		}
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	case string:
		y, ok := b.(string)
		if !ok {
			return 0, false
		}
		return strings.Compare(x, y), true
	}
	return 0, false
}
