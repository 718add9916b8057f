// Package poll is how tests wait: they poll a condition until it holds or a deadline passes,
// never sleep a fixed time and hope.
package poll

import (
	"testing"
	"time"
)

// Interval is the wait between two checks.
const Interval = 50 * time.Millisecond

// Until calls check until it returns nil, failing tb with check's last error once d has
// passed.
func Until(tb testing.TB, d time.Duration, check func() error) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met after %s: %v", d, err)
		}
		time.Sleep(Interval)
	}
}

// True calls cond until it holds, failing tb (naming what it waited for) once d has passed.
func True(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}
