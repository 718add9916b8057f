package residency

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/platform/poll"
)

// logs captures JSON log lines for assertions.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// records returns the captured lines that carry attr.
func (l *logs) records(attr string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m[attr] != nil {
			out = append(out, m)
		}
	}
	return out
}

// policyDoc is the base policy at version v, with edits applied (old, new pairs).
func policyDoc(tb testing.TB, v int, edits ...string) []byte {
	tb.Helper()
	return []byte(replace(tb, append([]string{"version: 3", fmt.Sprintf("version: %d", v)}, edits...)...))
}

func fileBackend(t *testing.T) (*discovery.File, string) {
	t.Helper()
	dir := t.TempDir()
	f, err := discovery.NewFile(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return f, dir
}

func TestHolderLoad(t *testing.T) {
	ctx := t.Context()
	f, _ := fileBackend(t)
	h := &Holder{}
	if h.Current() != nil {
		t.Fatal("a new Holder holds a policy")
	}

	err := h.Load(ctx, f, DefaultKey)
	if !errors.Is(err, discovery.ErrNotFound) || h.Current() != nil {
		t.Fatalf("missing policy: %v (policy %v)", err, h.Current())
	}

	put(t, f, policyDoc(t, 2, "DE]", "de]"))
	if err := h.Load(ctx, f, DefaultKey); err == nil || !strings.Contains(err.Error(), "jurisdictions.EU.countries[3]") || h.Current() != nil {
		t.Fatalf("invalid policy at start: %v (policy %v)", err, h.Current())
	}

	put(t, f, policyDoc(t, 2))
	if err := h.Load(ctx, f, DefaultKey); err != nil || h.Current().Version != 2 {
		t.Fatalf("valid policy: %v", err)
	}

	put(t, f, policyDoc(t, 1))
	if err := h.Load(ctx, f, DefaultKey); err == nil || !strings.Contains(err.Error(), "never rolled back") || h.Current().Version != 2 {
		t.Fatalf("lower version: %v (version %d)", err, h.Current().Version)
	}

	put(t, f, policyDoc(t, 2, "[IN]", "[IN, LK]"))
	if err := h.Load(ctx, f, DefaultKey); err == nil || !strings.Contains(err.Error(), "raise the version") {
		t.Fatalf("same version, other content: %v", err)
	}

	put(t, f, policyDoc(t, 5))
	if err := h.Load(ctx, f, DefaultKey); err != nil || h.Current().Version != 5 {
		t.Fatalf("newer version: %v", err)
	}
}

func put(tb testing.TB, f *discovery.File, value []byte) {
	tb.Helper()
	if err := f.Put(context.Background(), DefaultKey, value); err != nil {
		tb.Fatal(err)
	}
}

// TestHolderWatchFileBackend follows the policy through a real file backend: each step writes the
// key, waits for the watcher to log its verdict, and checks which policy is in force.
func TestHolderWatchFileBackend(t *testing.T) {
	f, dir := fileBackend(t)
	put(t, f, policyDoc(t, 1))
	h := &Holder{}
	if err := h.Load(t.Context(), f, DefaultKey); err != nil {
		t.Fatal(err)
	}
	var captured logs
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.Watch(ctx, f, DefaultKey, captured.logger())
	}()

	steps := []struct {
		name      string
		write     func()
		outcome   string
		version   int64
		reasonHas string
	}{
		{"newer valid policy is applied", func() { put(t, f, policyDoc(t, 2)) }, OutcomeApplied, 2, ""},
		{"invalid policy is refused", func() { put(t, f, policyDoc(t, 3, "DE]", "de]")) }, OutcomeInvalid, 2, `jurisdictions.EU.countries[3]: "de" is not an ISO 3166-1 alpha-2 code`},
		{"unknown key is refused", func() { put(t, f, policyDoc(t, 3, "allow_transit: true", "allow_transit: true\n    failover: auto")) }, OutcomeInvalid, 2, "jurisdictions.US.failover"},
		{"lower version is refused", func() { put(t, f, policyDoc(t, 1)) }, OutcomeRollback, 2, "never rolled back"},
		{"same version, other content is refused", func() { put(t, f, policyDoc(t, 2, "[IN]", "[IN, LK]")) }, OutcomeConflict, 2, "raise the version"},
		{"same content rewritten changes nothing", func() { put(t, f, append(policyDoc(t, 2), "# touched\n"...)) }, OutcomeUnchanged, 2, ""},
		{"deleted key is refused", func() {
			// The file backend keeps key a/b/c in <root>/kv/a/b/c.
			if err := os.Remove(filepath.Join(dir, "kv", filepath.FromSlash(DefaultKey))); err != nil {
				t.Fatal(err)
			}
		}, OutcomeMissing, 2, "deleted"},
		{"newer policy after the deletion is applied", func() { put(t, f, policyDoc(t, 4, "[IN]", "[IN, LK]")) }, OutcomeApplied, 4, ""},
	}
	for _, s := range steps {
		before := h.Current()
		seen := len(captured.records("outcome"))
		s.write()
		poll.True(t, 5*time.Second, s.name, func() bool { return len(captured.records("outcome")) > seen })
		recs := captured.records("outcome")
		last := recs[len(recs)-1]
		if last["outcome"] != s.outcome {
			t.Fatalf("%s: outcome %v, want %s (%v)", s.name, last["outcome"], s.outcome, last)
		}
		if got := h.Current().Version; got != s.version {
			t.Fatalf("%s: version %d in force, want %d", s.name, got, s.version)
		}
		if s.outcome != OutcomeApplied && h.Current() != before {
			t.Fatalf("%s: the policy in force was replaced", s.name)
		}
		if reason, _ := last["reason"].(string); !strings.Contains(reason, s.reasonHas) {
			t.Fatalf("%s: logged reason %q does not say %q", s.name, reason, s.reasonHas)
		}
		if s.outcome != OutcomeApplied && s.outcome != OutcomeUnchanged && last["level"] != "ERROR" {
			t.Fatalf("%s: a refusal logged at %v", s.name, last["level"])
		}
	}
	if j, _ := h.Current().JurisdictionOf("LK"); j != "IN" {
		t.Errorf("the last policy is not the one in force: LK maps to %q", j)
	}

	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Watch did not return after its context ended")
	}
}

// scripted is a Source whose Watch answers from a function of the call number.
type scripted struct {
	calls atomic.Int64
	watch func(ctx context.Context, call int, index uint64) ([]byte, uint64, error)
}

func (s *scripted) Get(context.Context, string) ([]byte, uint64, error) {
	return nil, 0, discovery.ErrNotFound
}

func (s *scripted) Watch(ctx context.Context, _ string, index uint64) ([]byte, uint64, error) {
	return s.watch(ctx, int(s.calls.Add(1)), index)
}

func blockUntilDone(ctx context.Context, index uint64) ([]byte, uint64, error) {
	<-ctx.Done()
	return nil, index, ctx.Err()
}

func TestHolderWatchBacksOffOnBackendErrors(t *testing.T) {
	v2 := policyDoc(t, 2)
	src := &scripted{watch: func(ctx context.Context, call int, index uint64) ([]byte, uint64, error) {
		switch {
		case call <= 3:
			return nil, index, errors.New("consul: connection refused")
		case call == 4:
			return v2, 42, nil
		}
		return blockUntilDone(ctx, index)
	}}
	h := NewHolder(mustParse(t, string(policyDoc(t, 1))))
	h.minBackoff, h.maxBackoff, h.pace = time.Millisecond, 4*time.Millisecond, time.Millisecond
	var captured logs
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go h.Watch(ctx, src, DefaultKey, captured.logger())
	poll.True(t, 5*time.Second, "version 2 after the errors", func() bool { return h.Current().Version == 2 })

	retries := captured.records("retry_in")
	if len(retries) != 3 {
		t.Fatalf("%d retries logged, want 3", len(retries))
	}
	for _, r := range retries {
		if d, _ := r["retry_in"].(float64); d <= 0 || time.Duration(d) > 4*time.Millisecond {
			t.Errorf("retry_in %v outside (0, 4ms]", r["retry_in"])
		}
		if r["level"] != "WARN" || !strings.Contains(r["err"].(string), "connection refused") {
			t.Errorf("retry log %v", r)
		}
	}
}

func TestHolderWatchStopsDuringBackoff(t *testing.T) {
	src := &scripted{watch: func(_ context.Context, _ int, index uint64) ([]byte, uint64, error) {
		return nil, index, errors.New("unreachable")
	}}
	h := &Holder{minBackoff: time.Hour, maxBackoff: time.Hour}
	var captured logs
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); h.Watch(ctx, src, DefaultKey, captured.logger()) }()
	poll.True(t, 5*time.Second, "the first error", func() bool { return len(captured.records("retry_in")) == 1 })
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Watch kept sleeping after its context ended")
	}
}

// TestHolderConcurrentReads swaps policies while readers route (run with -race): every reader
// sees a whole policy, versions never go back, and routes never leave the jurisdiction.
func TestHolderConcurrentReads(t *testing.T) {
	const last = 200
	docs := make([][]byte, last+1)
	for v := 2; v <= last; v++ {
		docs[v] = policyDoc(t, v)
	}
	src := &scripted{watch: func(ctx context.Context, call int, index uint64) ([]byte, uint64, error) {
		if v := call + 1; v <= last {
			return docs[v], uint64(v), nil
		}
		return blockUntilDone(ctx, index)
	}}
	h := NewHolder(mustParse(t, string(policyDoc(t, 1))))
	h.pace = time.Microsecond
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go h.Watch(ctx, src, DefaultKey, nil)

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			seen := int64(0)
			deadline := time.Now().Add(10 * time.Second)
			for seen < last {
				if time.Now().After(deadline) {
					errs <- fmt.Errorf("stuck at version %d", seen)
					return
				}
				p := h.Current()
				if p.Version < seen {
					errs <- fmt.Errorf("version went back from %d to %d", seen, p.Version)
					return
				}
				seen = p.Version
				j, _ := p.JurisdictionOf("DE")
				r, _, err := p.Route(j, func(r string) bool { return r != "eu-west-1" })
				if err != nil || r != "eu-central-1" {
					errs <- fmt.Errorf("version %d: route %q, %v", seen, r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
