package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestWaitsDoubleFromInitialToMaxWithinTheirJitter(t *testing.T) {
	tests := []struct {
		name string
		b    Backoff
		want []time.Duration // the waits before jitter
	}{
		{"doubling to a cap", Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Jitter: 0.2},
			[]time.Duration{100, 200, 400, 800, 1000, 1000}},
		{"no jitter is exact", Backoff{Initial: 50 * time.Millisecond, Max: 2 * time.Second},
			[]time.Duration{50, 100, 200, 400, 800, 1600, 2000}},
		{"a max below initial is initial", Backoff{Initial: 300 * time.Millisecond, Max: time.Millisecond},
			[]time.Duration{300, 300, 300}},
		{"a zero initial is a millisecond, not a busy loop", Backoff{},
			[]time.Duration{1, 1}},
		{"jitter above 1 is 1", Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond, Jitter: 7},
			[]time.Duration{10, 10, 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for round := range 50 { // jitter is random: many sequences
				w := tt.b.Start()
				jitter := min(max(tt.b.Jitter, 0), 1)
				for i, base := range tt.want {
					base *= time.Millisecond
					lo, hi := time.Duration(float64(base)*(1-jitter)), time.Duration(float64(base)*(1+jitter))
					hi = min(hi, max(tt.b.Max, tt.b.Initial, time.Millisecond)) // Max bounds the jittered wait too
					if got := w.Next(); got < lo || got > hi {
						t.Fatalf("round %d, wait %d: %v, want %v-%v", round, i, got, lo, hi)
					}
				}
			}
		})
	}
}

func TestNoWaitIsLongerThanMaxWhateverTheJitter(t *testing.T) {
	b := Backoff{Initial: time.Millisecond, Max: 4 * time.Millisecond, Jitter: 0.5}
	for _, w := range []interface{ NextBackOff() time.Duration }{b.Start(), b.BackOff()} {
		atCap := 0
		for range 2000 {
			got := w.NextBackOff()
			if got > b.Max {
				t.Fatalf("wait %v longer than Max %v", got, b.Max)
			}
			if got > 3*time.Millisecond {
				atCap++
			}
		}
		if atCap == 0 {
			t.Fatal("no wait near Max: the sequence never reached its cap")
		}
	}
}

func TestNextAfterALongAttemptStartsTheWaitsAgain(t *testing.T) {
	w := Backoff{Initial: 10 * time.Millisecond, Max: 80 * time.Millisecond}.Start()
	for range 5 {
		w.Next()
	}
	if got := w.NextAfter(80 * time.Millisecond); got != 80*time.Millisecond {
		t.Fatalf("after an attempt of Max: %v, want the capped 80ms (a short attempt keeps backing off)", got)
	}
	if got := w.NextAfter(81 * time.Millisecond); got != 10*time.Millisecond {
		t.Fatalf("after an attempt longer than Max: %v, want Initial 10ms", got)
	}
}

func TestResetStartsTheWaitsAgainFromInitial(t *testing.T) {
	w := Backoff{Initial: 10 * time.Millisecond, Max: time.Second}.Start()
	for range 5 {
		w.Next()
	}
	w.Reset()
	if got := w.Next(); got != 10*time.Millisecond {
		t.Fatalf("after Reset: %v, want 10ms", got)
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool)
	go func() { done <- Sleep(ctx, time.Hour) }()
	cancel()
	select {
	case live := <-done:
		if live {
			t.Fatal("Sleep reported a live context after cancel")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Sleep(1h) did not end with its context")
	}
	if Sleep(ctx, 0) {
		t.Fatal("Sleep(0) on an ended context reported it live")
	}
	if !Sleep(context.Background(), 0) || !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep on a live context reported it ended")
	}
}

func TestLoopBacksOffAfterFailuresAndStartsAgainAfterASuccess(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// fail, fail, succeed, fail, then stop: the waits are 1, 2 ms, then 1 ms again.
	results := []error{errors.New("a"), errors.New("b"), nil, errors.New("c")}
	calls := 0
	var waits []time.Duration
	Loop(ctx, Backoff{Initial: time.Millisecond, Max: time.Second}, func(context.Context) error {
		calls++
		if calls > len(results) {
			cancel()
			return errors.New("stopping")
		}
		return results[calls-1]
	}, func(_ error, wait time.Duration) { waits = append(waits, wait) })
	want := []time.Duration{time.Millisecond, 2 * time.Millisecond, time.Millisecond}
	if calls != 5 || len(waits) != len(want) {
		t.Fatalf("%d calls, waits %v; want 5 calls, waits %v", calls, waits, want)
	}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}
}

func TestLoopReturnsWhenItsContextEndsDuringAWait(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Loop(ctx, Backoff{Initial: time.Hour, Max: time.Hour}, func(context.Context) error { return errors.New("down") },
			func(error, time.Duration) { cancel() })
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Loop went on waiting an hour after its context ended")
	}
}
