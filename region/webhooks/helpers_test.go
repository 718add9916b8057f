package webhooks

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// require is the handful of assertions these tests use, failing the test at once.
var require asserts

type asserts struct{}

func msg(args []any) string {
	if len(args) == 0 {
		return ""
	}
	if f, ok := args[0].(string); ok {
		return ": " + fmt.Sprintf(f, args[1:]...)
	}
	return ": " + fmt.Sprint(args...)
}

func (asserts) True(t *testing.T, v bool, args ...any) {
	t.Helper()
	if !v {
		t.Fatalf("want true%s", msg(args))
	}
}
func (asserts) False(t *testing.T, v bool, args ...any) {
	t.Helper()
	if v {
		t.Fatalf("want false%s", msg(args))
	}
}
func (asserts) Equal(t *testing.T, want, got any, args ...any) {
	t.Helper()
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("got %#v, want %#v%s", got, want, msg(args))
	}
}
func (asserts) NotEqual(t *testing.T, a, b any, args ...any) {
	t.Helper()
	if reflect.DeepEqual(a, b) {
		t.Fatalf("both are %#v%s", a, msg(args))
	}
}
func (asserts) NoError(t *testing.T, err error, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error %v%s", err, msg(args))
	}
}
func (asserts) Error(t *testing.T, err error, args ...any) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error%s", msg(args))
	}
}
func (asserts) ErrorIs(t *testing.T, err, target error, args ...any) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v is not %v%s", err, target, msg(args))
	}
}
func (asserts) Len(t *testing.T, v any, n int, args ...any) {
	t.Helper()
	if l := reflect.ValueOf(v).Len(); l != n {
		t.Fatalf("length %d, want %d%s", l, n, msg(args))
	}
}
func (asserts) NotEmpty(t *testing.T, v any, args ...any) {
	t.Helper()
	if reflect.ValueOf(v).Len() == 0 {
		t.Fatalf("empty%s", msg(args))
	}
}
func (asserts) Zero(t *testing.T, v any, args ...any) {
	t.Helper()
	if !reflect.ValueOf(v).IsZero() {
		t.Fatalf("got %#v, want zero%s", v, msg(args))
	}
}
func (asserts) Contains(t *testing.T, in, v any, args ...any) {
	t.Helper()
	if !contains(in, v) {
		t.Fatalf("%#v does not contain %#v%s", in, v, msg(args))
	}
}
func (asserts) NotContains(t *testing.T, in, v any, args ...any) {
	t.Helper()
	if contains(in, v) {
		t.Fatalf("%#v contains %#v%s", in, v, msg(args))
	}
}

func contains(in, v any) bool {
	if s, ok := in.(string); ok {
		return strings.Contains(s, v.(string))
	}
	rv := reflect.ValueOf(in)
	for i := range rv.Len() {
		if reflect.DeepEqual(rv.Index(i).Interface(), v) {
			return true
		}
	}
	return false
}

func ordered[T cmp.Ordered](t *testing.T, a, b T, ok bool, rel string, args []any) {
	t.Helper()
	if !ok {
		t.Fatalf("want %v %s %v%s", a, rel, b, msg(args))
	}
}

func (asserts) Less(t *testing.T, a, b int, args ...any) {
	t.Helper()
	ordered(t, a, b, a < b, "<", args)
}
func (asserts) Greater(t *testing.T, a, b int, args ...any) {
	t.Helper()
	ordered(t, a, b, a > b, ">", args)
}
func (asserts) GreaterOrEqual(t *testing.T, a, b time.Duration, args ...any) {
	t.Helper()
	ordered(t, a, b, a >= b, ">=", args)
}
func (asserts) LessOrEqual(t *testing.T, a, b time.Duration, args ...any) {
	t.Helper()
	ordered(t, a, b, a <= b, "<=", args)
}
