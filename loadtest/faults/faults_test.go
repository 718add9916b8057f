package faults

import (
	"errors"
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
		{"machine loss: OTP p99 under 5 s", func(r Result) Result {
			r.OTPJudged, r.OTPs, r.OTPP99 = true, 100, 4999*time.Millisecond
			return r
		}, ""},
		{"machine loss: OTP p99 at 5 s", func(r Result) Result {
			r.OTPJudged, r.OTPs, r.OTPP99 = true, 100, 5*time.Second
			return r
		}, "OTP p99 5.0 s"},
		{"machine loss, recovery not judged: OTP p99 still misses", func(r Result) Result {
			r.RecoveryNote, r.OTPJudged, r.OTPs, r.OTPP99 = "why", true, 100, 9*time.Second
			return r
		}, "OTP p99"},
		{"not a machine loss: a slow OTP p99 is only shown", func(r Result) Result {
			r.OTPs, r.OTPP99 = 100, time.Minute
			return r
		}, ""},
		{"latency measured: a slow OTP p99 on a machine loss is only shown", func(r Result) Result {
			r.LatencyNote, r.OTPJudged, r.OTPs, r.OTPP99 = "why", true, 100, 9*time.Second
			return r
		}, ""},
		{"latency measured: a slow recovery is only shown", func(r Result) Result {
			r.LatencyNote, r.Drained = "why", time.Minute
			return r
		}, ""},
		{"latency measured: a recovery that never came still misses", func(r Result) Result {
			r.LatencyNote, r.Recovered = "why", false
			return r
		}, "no recovery"},
		{"latency measured: a loss still misses", func(r Result) Result {
			r.LatencyNote, r.Lost = "why", 1
			return r
		}, "1 lost"},
		{"latency measured: a duplicate rate still misses", func(r Result) Result {
			r.LatencyNote, r.Duplicated = "why", 10
			return r
		}, "duplicates"},
		{"latency measured: a request answered past its deadline is only shown", func(r Result) Result {
			r.LatencyNote, r.PastDeadline = "why", 1
			return r
		}, ""},
		{"latency measured: a request never answered still misses", func(r Result) Result {
			r.LatencyNote, r.PastDeadline, r.Unanswered = "why", 1, 1
			return r
		}, "1 requests never answered"},
		{"repeats the provider took at a dispatcher's kill are not judged", func(r Result) Result {
			r.Duplicated, r.DupAtKill = 30, 25
			return r
		}, ""},
		{"other repeats of a dispatcher's kill still are", func(r Result) Result {
			r.Duplicated, r.DupAtKill = 30, 20
			return r
		}, "duplicates 0.100%"},
		{"a request never answered", func(r Result) Result { r.PastDeadline, r.Unanswered = 2, 2; return r }, "2 requests never answered"},
		{"the digest's one summary of 50", func(r Result) Result { r.DigestChecked, r.DigestSummaries = true, []int{50}; return r }, ""},
		{"a digest that lost an event", func(r Result) Result { r.DigestChecked, r.DigestSummaries = true, []int{49}; return r }, "digest: summaries [49]"},
		{"a digest split in two", func(r Result) Result { r.DigestChecked, r.DigestSummaries = true, []int{48, 2}; return r }, "digest: summaries [48 2]"},
		{"a digest sent twice", func(r Result) Result { r.DigestChecked, r.DigestSummaries = true, []int{50, 50}; return r }, "digest"},
		{"no summary", func(r Result) Result { r.DigestChecked = true; return r }, "digest: summaries []"},
		{"a digest not read", func(r Result) Result {
			r.DigestChecked, r.DigestErr = true, errors.New("trigger 3 never accepted")
			return r
		}, "trigger 3 never accepted"},
		{"recovery not judged: a digest still misses", func(r Result) Result {
			r.RecoveryNote, r.DigestChecked, r.DigestSummaries = "why", true, []int{49}
			return r
		}, "digest"},
	}
	for _, tt := range tests {
		m := strings.Join(tt.r(ok).Misses(), "; ")
		if (tt.want == "") != (m == "") || !strings.Contains(m, tt.want) {
			t.Errorf("%s: misses %q, want %q", tt.name, m, tt.want)
		}
	}
}

func TestOTPP99CountsAcceptedTransactionalProviderSendsOnly(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	var sends []*send
	firsts := map[int]time.Time{}
	// 100 OTPs by SMS taking 1..100 ms, then one slow one of each kind that must not count.
	for i := range 100 {
		sends = append(sends, &send{n: i, tier: "transactional", channel: "sms", accepted: true, acceptedAt: t0})
		firsts[i] = t0.Add(time.Duration(i+1) * time.Millisecond)
	}
	for i, s := range []*send{
		{tier: "marketing", channel: "sms", accepted: true, acceptedAt: t0},
		{tier: "transactional", channel: "in_app", accepted: true, acceptedAt: t0},
		{tier: "transactional", channel: "email", accepted: false, acceptedAt: t0},
	} {
		s.n = 1000 + i
		sends = append(sends, s)
		firsts[s.n] = t0.Add(time.Hour)
	}
	// Delivered before the answer arrived: 0, not negative.
	sends = append(sends, &send{n: 2000, tier: "transactional", channel: "push", accepted: true, acceptedAt: t0})
	firsts[2000] = t0.Add(-time.Second)
	// Accepted, never delivered: lost, counted elsewhere, not a latency.
	sends = append(sends, &send{n: 2001, tier: "transactional", channel: "push", accepted: true, acceptedAt: t0})

	p99, n := otpP99(sends, firsts)
	if n != 101 {
		t.Errorf("counted %d OTPs, want 101", n)
	}
	if p99 != 99*time.Millisecond {
		t.Errorf("p99 %v, want 99ms (nearest rank of 101)", p99)
	}
	if p, n := otpP99(nil, nil); p != 0 || n != 0 {
		t.Errorf("no sends: %v, %d", p, n)
	}
}

func TestFailedNamesTheJudgedRowsThatMissedWithTheirMisses(t *testing.T) {
	pass := Result{Fault: "a", Accepted: 10, DeliveredOnce: 10, Recovered: true}
	late := Result{Fault: "b", Accepted: 10, DeliveredOnce: 10, Recovered: true, PastDeadline: 3}
	lost := Result{Fault: "c", Accepted: 10, DeliveredOnce: 9, Lost: 1, Recovered: true}
	unjudged := Result{Fault: "d", Note: "why", Accepted: 10, Lost: 5, Recovered: true}
	if got := Failed([]Result{pass, unjudged}); got != "" {
		t.Errorf("no judged miss: %q", got)
	}
	got := Failed([]Result{pass, late, unjudged, lost})
	if want := "b (3 requests past the deadline); c (1 lost)"; got != want {
		t.Errorf("Failed = %q, want %q", got, want)
	}
}
