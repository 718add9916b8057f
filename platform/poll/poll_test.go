package poll

import (
	"errors"
	"testing"
	"time"
)

// fakeTB records a failure instead of stopping the test.
type fakeTB struct {
	testing.TB
	failed string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = format
	panic(f)
}

func run(f func(tb testing.TB)) (failed bool) {
	tb := &fakeTB{}
	defer func() {
		if r := recover(); r != nil {
			failed = r == tb
		}
	}()
	f(tb)
	return false
}

func TestUntilReturnsOnceTheConditionHoldsAndFailsAtTheDeadline(t *testing.T) {
	n := 0
	if run(func(tb testing.TB) {
		Until(tb, time.Second, func() error {
			if n++; n < 3 {
				return errors.New("not yet")
			}
			return nil
		})
	}) || n != 3 {
		t.Fatalf("failed, or checked %d times (want 3)", n)
	}
	start := time.Now()
	if !run(func(tb testing.TB) { Until(tb, 100*time.Millisecond, func() error { return errors.New("never") }) }) {
		t.Fatal("a condition that never holds did not fail")
	}
	if took := time.Since(start); took < 100*time.Millisecond || took > 2*time.Second {
		t.Fatalf("gave up after %s", took)
	}
	if !run(func(tb testing.TB) { True(tb, 20*time.Millisecond, "nothing", func() bool { return false }) }) {
		t.Fatal("True never failed")
	}
}
