package faults

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSendsInFindsOnlyThisRunsAndRoundsMarkers(t *testing.T) {
	tests := []struct {
		text string
		want []int
	}{
		{`{"aps":{"alert":{"body":"Message ` + marker("abc", 2, 17) + ` of the fault suite"}}}`, []int{17}},
		{marker("abc", 2, 1) + " " + marker("abc", 2, 1), []int{1}}, // a payload repeating the body is one delivery
		{marker("abc", 3, 5), nil}, // another round
		{marker("abd", 2, 5), nil}, // another run
		{"fzabcr2n5", nil},         // no end mark: not a marker
	}
	for _, tt := range tests {
		if got := sendsIn([]byte(tt.text), "abc", 2); !slices.Equal(got, tt.want) {
			t.Errorf("sendsIn(%q) = %v, want %v", tt.text, got, tt.want)
		}
	}
}

func TestNotificationInReadsPushAndMailIDs(t *testing.T) {
	id := "01a24a62-33fb-7f3f-b1c2-3fd0644d7307"
	tests := []struct{ text, want string }{
		{`{"aps":{},"notification_id":"` + id + `"}`, id},
		{`{"message_id":"\u003c` + id + `.8c2cbdd7a682@herald.local\u003e"}`, id},
		{`{"Body":["Message"]}`, ""},
	}
	for _, tt := range tests {
		if got := notificationIn([]byte(tt.text)); got != tt.want {
			t.Errorf("notificationIn(%q) = %q, want %q", tt.text, got, tt.want)
		}
	}
}

func TestMissesJudgeEveryTarget(t *testing.T) {
	ok := Result{Accepted: 10000, DeliveredOnce: 9995, Duplicated: 9, Recovered: true, Flowing: time.Second, Drained: 29 * time.Second}
	tests := []struct {
		name string
		r    func(Result) Result
		want string // a substring of the misses; "" for none
	}{
		{"all met", func(r Result) Result { return r }, ""},
		{"one lost", func(r Result) Result { r.Lost = 1; return r }, "1 lost"},
		{"duplicates at 0.1%", func(r Result) Result { r.Duplicated = 10; return r }, "duplicates 0.100%"},
		{"a request past its deadline", func(r Result) Result { r.PastDeadline = 1; return r }, "past the deadline"},
		{"backlog drained in 30 s", func(r Result) Result { r.Drained = 30 * time.Second; return r }, "recovery 30s"},
		{"never recovered", func(r Result) Result { r.Recovered = false; return r }, "no recovery"},
		{"nothing accepted", func(r Result) Result { r.Accepted = 0; return r }, "nothing accepted"},
		{"recovery not judged: a slow backlog passes", func(r Result) Result {
			r.RecoveryNote, r.Drained = "why", time.Minute
			return r
		}, ""},
		{"recovery not judged: a loss still misses", func(r Result) Result {
			r.RecoveryNote, r.Lost = "why", 1
			return r
		}, "1 lost"},
		{"recovery not judged: a duplicate rate still misses", func(r Result) Result {
			r.RecoveryNote, r.Duplicated = "why", 10
			return r
		}, "duplicates"},
		{"recovery not judged: a request past its deadline still misses", func(r Result) Result {
			r.RecoveryNote, r.PastDeadline = "why", 1
			return r
		}, "past the deadline"},
	}
	for _, tt := range tests {
		m := strings.Join(tt.r(ok).Misses(), "; ")
		if (tt.want == "") != (m == "") || !strings.Contains(m, tt.want) {
			t.Errorf("%s: misses %q, want %q", tt.name, m, tt.want)
		}
	}
}
