package sim

import (
	"context"
	"testing"
	"time"
)

func TestInjectorDecisions(t *testing.T) {
	tests := []struct {
		name     string
		faults   Faults
		wantKind FaultKind
		wantCode int
	}{
		{"no faults", Faults{}, NoFault, 0},
		{"outage wins over everything", Faults{OutageSeconds: 10, RateLimitRate: 1, ErrorRate: 1}, Outage, 503},
		{"rate limit before errors", Faults{RateLimitRate: 1, ErrorRate: 1}, RateLimited, 429},
		{"error rate 1 always fails", Faults{ErrorRate: 1, ErrorStatuses: []int{500}}, ServerError, 500},
		{"recipient lists alone decide nothing here", Faults{Unregistered: []string{"x"}}, NoFault, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewInjector(tt.faults, 1).Decide()
			if d.Kind != tt.wantKind || d.Status != tt.wantCode {
				t.Fatalf("decision %+v", d)
			}
			if (d.Kind == Outage || d.Kind == RateLimited) && d.RetryAfter < 1 {
				t.Fatalf("no Retry-After: %+v", d)
			}
		})
	}
}

func TestOutageEndsAfterItsWindowAndRetryAfterCoversIt(t *testing.T) {
	in := NewInjector(Faults{OutageSeconds: 0.2}, 1)
	if d := in.Decide(); d.Kind != Outage || d.RetryAfter != 1 {
		t.Fatalf("during: %+v", d)
	}
	if left := in.Get().OutageSeconds; left <= 0 || left > 0.2 {
		t.Fatalf("Get reports %v s left", left)
	}
	time.Sleep(250 * time.Millisecond)
	if d := in.Decide(); d.Kind != NoFault {
		t.Fatalf("after: %+v", d)
	}
	if d := NewInjector(Faults{OutageSeconds: 90}, 1).Decide(); d.RetryAfter != 90 {
		t.Fatalf("Retry-After %d, want the rest of the window", d.RetryAfter)
	}
}

func TestSameSeedSameDraws(t *testing.T) {
	draw := func(seed uint64) []FaultKind {
		in := NewInjector(Faults{ErrorRate: 0.3, RateLimitRate: 0.2}, seed)
		var out []FaultKind
		for range 200 {
			out = append(out, in.Decide().Kind)
		}
		return out
	}
	a, b, c := draw(7), draw(7), draw(8)
	same := func(x, y []FaultKind) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Fatal("same seed gave different draws")
	}
	if same(a, c) {
		t.Fatal("different seeds gave the same 200 draws")
	}
	var errs, limited int
	for _, k := range a {
		switch k {
		case ServerError:
			errs++
		case RateLimited:
			limited++
		}
	}
	// 20% rate limited, then 30% of the rest fail: about 40 and 48 of 200.
	if limited < 20 || limited > 60 || errs < 25 || errs > 75 {
		t.Fatalf("limited %d errors %d of 200", limited, errs)
	}
}

func TestFaultSeedOverridesTheProcessSeed(t *testing.T) {
	a := NewInjector(Faults{ErrorRate: 0.5, Seed: 99}, 1)
	b := NewInjector(Faults{ErrorRate: 0.5, Seed: 99}, 2)
	for range 100 {
		if a.Decide() != b.Decide() {
			t.Fatal("faults.seed did not win over the process seed")
		}
	}
}

func TestRateLimitPerSecondRefillsOverTime(t *testing.T) {
	in := NewInjector(Faults{RateLimitPerSecond: 10}, 1)
	ok := 0
	for range 20 {
		if in.Decide().Kind == NoFault {
			ok++
		}
	}
	if ok != 10 {
		t.Fatalf("burst: %d of 20 allowed, want 10", ok)
	}
	time.Sleep(250 * time.Millisecond) // refills about 2.5 tokens
	ok = 0
	for range 5 {
		if in.Decide().Kind == NoFault {
			ok++
		}
	}
	if ok < 2 || ok > 3 {
		t.Fatalf("after 250ms: %d allowed, want 2-3", ok)
	}
}

func TestThroughputCapSpacesRequests(t *testing.T) {
	in := NewInjector(Faults{MaxPerSecond: 50}, 1)
	start := time.Now()
	for range 11 {
		if err := in.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 190*time.Millisecond || d > 2*time.Second {
		t.Fatalf("11 requests at 50/s took %v, want about 200ms", d)
	}
}

func TestWaitReturnsWhenTheClientGoesAway(t *testing.T) {
	in := NewInjector(Faults{LatencyMS: 10_000}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := in.Wait(ctx); err == nil || time.Since(start) > time.Second {
		t.Fatalf("Wait returned %v after %v", err, time.Since(start))
	}
}

func TestRecipientLists(t *testing.T) {
	in := NewInjector(Faults{Unregistered: []string{"gone"}, Invalid: []string{"bad"}}, 1)
	for to, want := range map[string]RecipientFault{"gone": RecipientUnregistered, "bad": RecipientInvalid, "fine": RecipientOK} {
		if got := in.Recipient(to); got != want {
			t.Errorf("%s: %v, want %v", to, got, want)
		}
	}
	in.Set(Faults{})
	if in.Recipient("gone") != RecipientOK {
		t.Fatal("Set did not replace the lists")
	}
}
