package dispatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/poll"
)

// roundRecorder is a batcher round that records the requests of each round and answers each
// request with its double; while gate is set, a round waits for it.
type roundRecorder struct {
	mu     sync.Mutex
	rounds [][]int
	gate   chan struct{}
	err    error
	short  bool // answer one result too few
}

func (r *roundRecorder) round(_ context.Context, reqs []int) ([]int, error) {
	r.mu.Lock()
	r.rounds = append(r.rounds, slices.Clone(reqs))
	gate := r.gate
	r.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if r.err != nil {
		return nil, r.err
	}
	out := make([]int, len(reqs))
	for i, q := range reqs {
		out[i] = 2 * q
	}
	if r.short {
		out = out[1:]
	}
	return out, nil
}

func (r *roundRecorder) sizes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for _, x := range r.rounds {
		out = append(out, len(x))
	}
	return out
}

func TestBatcherAloneGoesOutAtOnce(t *testing.T) {
	rec := &roundRecorder{}
	b := newBatcher(8, time.Second, rec.round)
	for i := range 3 {
		got, err := b.do(context.Background(), i)
		if err != nil || got != 2*i {
			t.Fatalf("do(%d) = %d, %v", i, got, err)
		}
	}
	if got := rec.sizes(); !slices.Equal(got, []int{1, 1, 1}) {
		t.Fatalf("rounds %v, want three rounds of one", got)
	}
}

// Requests made while a round is in flight go out together in the next round, each with its
// own result, in rounds of at most max.
func TestBatcherGroupsRequestsMadeDuringARound(t *testing.T) {
	for _, tc := range []struct {
		name      string
		max, n    int
		wantSizes []int
	}{
		{"all in one round", 16, 10, []int{1, 10}},
		{"split at max", 4, 10, []int{1, 4, 4, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &roundRecorder{gate: make(chan struct{})}
			b := newBatcher(tc.max, time.Second, rec.round)
			first := make(chan error, 1)
			go func() {
				got, err := b.do(context.Background(), 100)
				if err == nil && got != 200 {
					err = fmt.Errorf("got %d", got)
				}
				first <- err
			}()
			poll.True(t, 5*time.Second, "the condition", func() bool { return len(rec.sizes()) == 1 })
			var wg sync.WaitGroup
			errs := make(chan error, tc.n)
			for i := range tc.n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if got, err := b.do(context.Background(), i); err != nil || got != 2*i {
						errs <- fmt.Errorf("do(%d) = %d, %v", i, got, err)
					}
				}()
			}
			poll.True(t, 5*time.Second, "the condition", func() bool {
				b.mu.Lock()
				defer b.mu.Unlock()
				return len(b.pending) == tc.n
			})
			close(rec.gate) // this and every later round go through
			wg.Wait()
			if err := <-first; err != nil {
				t.Fatal(err)
			}
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if got := rec.sizes(); !slices.Equal(got, tc.wantSizes) {
				t.Fatalf("rounds %v, want %v", got, tc.wantSizes)
			}
		})
	}
}

func TestBatcherRoundFailureIsEveryRequestsError(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  *roundRecorder
	}{
		{"round error", &roundRecorder{err: errors.New("redis down")}},
		{"fewer results than requests", &roundRecorder{short: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBatcher(8, time.Second, tc.rec.round)
			if _, err := b.do(context.Background(), 1); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// A caller whose context ends stops waiting; a request already cancelled when its round starts
// is left out of it.
func TestBatcherLeavesCancelledRequestsOut(t *testing.T) {
	rec := &roundRecorder{gate: make(chan struct{})}
	b := newBatcher(8, time.Second, rec.round)
	go func() { _, _ = b.do(context.Background(), 1) }()
	poll.True(t, 5*time.Second, "the condition", func() bool { return len(rec.sizes()) == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := b.do(ctx, 2)
		done <- err
	}()
	poll.True(t, 5*time.Second, "the condition", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.pending) == 1
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled do: %v", err)
	}
	kept := make(chan int, 1)
	go func() {
		got, _ := b.do(context.Background(), 3)
		kept <- got
	}()
	poll.True(t, 5*time.Second, "the condition", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.pending) == 2
	})
	close(rec.gate)
	if got := <-kept; got != 6 {
		t.Fatalf("do(3) = %d", got)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.rounds) != 2 || !slices.Equal(rec.rounds[1], []int{3}) {
		t.Fatalf("rounds %v, want [[1] [3]]", rec.rounds)
	}
}

// A transactional request goes out while a round of the other tiers' requests is under way
// (held here), in a round of its own: it never waits for the backlog's round to come back.
func TestLanesSendAnUrgentRequestWhileABulkRoundIsUnderWay(t *testing.T) {
	rec := &roundRecorder{}
	bulkRec := &roundRecorder{gate: make(chan struct{})}
	defer close(bulkRec.gate)
	l := lanes[int, int]{urgent: newBatcher(4, time.Second, rec.round), bulk: newBatcher(4, time.Second, bulkRec.round)}
	for i := range 10 { // a backlog: one round under way and held, the rest queued behind it
		go func() { _, _ = l.do(context.Background(), i, false) }()
	}
	poll.True(t, 5*time.Second, "the condition", func() bool { return len(bulkRec.sizes()) == 1 })
	got, err := l.do(testContext(t), 1000, true)
	if err != nil || got != 2000 {
		t.Fatalf("urgent request: %d, %v", got, err)
	}
	if sizes := bulkRec.sizes(); len(sizes) != 1 {
		t.Fatalf("bulk rounds %v: the urgent request must not go through the bulk lane", sizes)
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}
