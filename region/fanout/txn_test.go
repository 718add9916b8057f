package fanout

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/kafka"
)

// transactor is a test double of the committer's Transactor: it records each commit and fails
// the first failures of them.
type transactor struct {
	mu       sync.Mutex
	failures int
	commits  []txnCall
}

type txnCall struct {
	recs    int
	offsets map[string]map[int32]int64
	err     error
}

func (tr *transactor) Commit(_ context.Context, recs []*sarama.ProducerMessage, offsets map[string][]*sarama.PartitionOffsetMetadata, _ *sarama.ConsumerGroupMetadata) error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	c := txnCall{recs: len(recs), offsets: map[string]map[int32]int64{}}
	for topic, ps := range offsets {
		c.offsets[topic] = map[int32]int64{}
		for _, p := range ps {
			c.offsets[topic][p.Partition] = p.Offset
		}
	}
	if tr.failures > 0 {
		tr.failures--
		c.err = errors.New("broker unavailable")
	}
	tr.commits = append(tr.commits, c)
	return c.err
}

func finished(ctx context.Context, partition int32, offset int64, records int, ran *[]int64, mu *sync.Mutex) *completion {
	out := &collector{}
	for i := 0; i < records; i++ {
		_ = out.Send(ctx, kafka.Message{Topic: "eu-west-1.dispatch.email", Key: "u", Value: []byte("task")})
	}
	out.Then(func() {
		mu.Lock()
		*ran = append(*ran, offset)
		mu.Unlock()
	})
	return &completion{ctx: ctx, group: &sarama.ConsumerGroupMetadata{GroupID: "g"}, done: make(chan error, 1), out: out,
		m: &sarama.ConsumerMessage{Topic: "eu-west-1.notify.social", Partition: partition, Offset: offset}}
}

func TestCommitterCommitsRecordsWithTheNextOffsetOfEachPartitionThenRunsTheAfterWork(t *testing.T) {
	tr := &transactor{}
	c := newCommitter(tr, "eu-west-1", "social", slog.New(slog.DiscardHandler))
	var ran []int64
	var mu sync.Mutex
	ctx := context.Background()
	batch := []*completion{finished(ctx, 0, 10, 2, &ran, &mu), finished(ctx, 1, 4, 1, &ran, &mu), finished(ctx, 0, 11, 3, &ran, &mu)}
	c.commit(ctx, batch)
	for _, x := range batch {
		if err := <-x.done; err != nil {
			t.Fatal(err)
		}
	}
	c.thens.Wait()
	if len(tr.commits) != 1 {
		t.Fatalf("%d transactions, want 1", len(tr.commits))
	}
	got := tr.commits[0]
	if got.recs != 6 || got.offsets["eu-west-1.notify.social"][0] != 12 || got.offsets["eu-west-1.notify.social"][1] != 5 {
		t.Fatalf("transaction %+v, want 6 records and offsets p0=12 p1=5", got)
	}
	if len(ran) != 3 {
		t.Fatalf("after-commit work ran for %v, want every event", ran)
	}
}

func TestCommitterRetriesAFailedTransactionWithTheSameRecordsAndRunsTheAfterWorkOnce(t *testing.T) {
	tr := &transactor{failures: 2}
	c := newCommitter(tr, "eu-west-1", "social", slog.New(slog.DiscardHandler))
	var ran []int64
	var mu sync.Mutex
	ctx := context.Background()
	x := finished(ctx, 0, 7, 3, &ran, &mu)
	start := time.Now()
	c.commit(ctx, []*completion{x})
	if err := <-x.done; err != nil {
		t.Fatal(err)
	}
	c.thens.Wait()
	if len(tr.commits) != 3 {
		t.Fatalf("%d attempts, want 3 (two failures, then success)", len(tr.commits))
	}
	for i, call := range tr.commits {
		if call.recs != 3 || call.offsets["eu-west-1.notify.social"][0] != 8 {
			t.Fatalf("attempt %d carried %+v, want the same 3 records and offset 8", i, call)
		}
	}
	if len(ran) != 1 {
		t.Fatalf("after-commit work ran %d times, want once", len(ran))
	}
	// Two waits, 50 then 100 ms, each within its jitter.
	if least := time.Duration(float64(150*time.Millisecond) * (1 - commitRetry.Jitter)); time.Since(start) < least {
		t.Fatalf("retries took %v, want at least %v: they did not back off", time.Since(start), least)
	}
}

func TestCommitterGivesUpWhenTheSessionEndedAndNeverRunsTheAfterWork(t *testing.T) {
	tr := &transactor{failures: 100}
	c := newCommitter(tr, "eu-west-1", "social", slog.New(slog.DiscardHandler))
	var ran []int64
	var mu sync.Mutex
	sess, end := context.WithCancel(context.Background())
	x := finished(sess, 0, 3, 1, &ran, &mu)
	go func() {
		time.Sleep(120 * time.Millisecond)
		end() // a rebalance: the partition is someone else's now
	}()
	c.commit(context.Background(), []*completion{x})
	if err := <-x.done; err == nil {
		t.Fatal("a transaction that never committed was reported done")
	}
	c.thens.Wait()
	if len(ran) != 0 {
		t.Fatal("dedup keys would be marked for records that were never visible")
	}
}

func TestCommitterRunGroupsWhatFinishedDuringThePreviousCommit(t *testing.T) {
	tr := &transactor{}
	c := newCommitter(tr, "eu-west-1", "social", slog.New(slog.DiscardHandler))
	var ran []int64
	var mu sync.Mutex
	ctx, stop := context.WithCancel(context.Background())
	var xs []*completion
	for i := int64(0); i < 50; i++ {
		x := finished(context.Background(), 0, i, 1, &ran, &mu)
		xs = append(xs, x)
		c.add(x)
	}
	done := make(chan struct{})
	go func() { defer close(done); c.run(ctx) }()
	for _, x := range xs {
		if err := <-x.done; err != nil {
			t.Fatal(err)
		}
	}
	stop()
	<-done
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.commits) != 1 || tr.commits[0].recs != 50 || tr.commits[0].offsets["eu-west-1.notify.social"][0] != 50 {
		t.Fatalf("transactions %+v, want one with all 50 queued events", tr.commits)
	}
}

func TestTransactionsEventRecordsShareOneKeyAndTasksKeepTheirRecipients(t *testing.T) {
	c := newCommitter(&transactor{}, "eu-west-1", "social", slog.New(slog.DiscardHandler))
	ctx := context.Background()
	batch := func() []*completion {
		var out []*completion
		for i, n := range []string{"n1", "n2", "n3"} {
			col := &collector{}
			_ = col.Send(ctx, kafka.Message{Topic: "eu-west-1.dispatch.push", Key: "user-" + n, Value: []byte("task")},
				kafka.Message{Topic: "eu-west-1.events", Key: n, Value: []byte("events")})
			out = append(out, &completion{out: col, m: &sarama.ConsumerMessage{Offset: int64(i)}})
		}
		return out
	}
	keys := func(recs []*sarama.ProducerMessage) (events map[string]bool, tasks []string) {
		events = map[string]bool{}
		for _, r := range recs {
			k, _ := r.Key.Encode()
			if r.Topic == "eu-west-1.events" {
				events[string(k)] = true
			} else {
				tasks = append(tasks, string(k))
			}
		}
		return events, tasks
	}
	c.txns = 1
	first, tasks := keys(c.records(batch()))
	if len(first) != 1 {
		t.Fatalf("events keys in one transaction: %v, want one", first)
	}
	if want := []string{"user-n1", "user-n2", "user-n3"}; !slices.Equal(tasks, want) {
		t.Fatalf("task keys %v, want %v (by recipient)", tasks, want)
	}
	c.txns = 2
	second, _ := keys(c.records(batch()))
	for k := range second {
		if first[k] {
			t.Fatalf("two transactions share the events key %q: they would all use one partition", k)
		}
	}
}

func TestCommitterWithALingerCarriesEventsFinishedWithinItInOneTransaction(t *testing.T) {
	for _, tt := range []struct {
		name   string
		linger time.Duration
		want   int // transactions for three events finished 20 ms apart
	}{
		{"no linger: each event alone", 0, 3},
		{"a linger longer than the gaps: one transaction", 200 * time.Millisecond, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := &transactor{}
			c := newCommitter(tr, "eu-west-1", "social", slog.New(slog.DiscardHandler))
			c.linger = tt.linger
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { c.run(ctx); close(done) }()
			var ran []int64
			var mu sync.Mutex
			var xs []*completion
			for off := int64(0); off < 3; off++ {
				x := finished(ctx, 0, off, 1, &ran, &mu)
				xs = append(xs, x)
				c.add(x)
				time.Sleep(20 * time.Millisecond)
			}
			for _, x := range xs {
				if err := <-x.done; err != nil {
					t.Fatal(err)
				}
			}
			cancel()
			<-done
			tr.mu.Lock()
			defer tr.mu.Unlock()
			if len(tr.commits) != tt.want {
				t.Fatalf("%d transactions, want %d", len(tr.commits), tt.want)
			}
			if last := tr.commits[len(tr.commits)-1]; last.offsets["eu-west-1.notify.social"][0] != 3 {
				t.Fatalf("last transaction committed offset %v, want 3", last.offsets)
			}
		})
	}
}

// TestCommitterNeverCommitsPastATransactionGivenUp is the Kafka-restart loss: a transaction
// fails while the broker is down and is given up when the claim ends; the claim's later events,
// already queued, must be given up too, even though Kafka takes transactions again, or their
// offset commits past the first events and those are never repeated.
func TestCommitterNeverCommitsPastATransactionGivenUp(t *testing.T) {
	tr := &transactor{failures: 1}
	c := newCommitter(tr, "eu-west-1", "social", slog.New(slog.DiscardHandler))
	var ran []int64
	var mu sync.Mutex
	sess, end := context.WithCancel(context.Background())
	first := finished(sess, 0, 10, 1, &ran, &mu)
	later := finished(sess, 0, 11, 1, &ran, &mu)
	end() // the broker went away: the session ends while the first transaction fails
	c.commit(context.Background(), []*completion{first})
	if err := <-first.done; err == nil {
		t.Fatal("the failed transaction was reported done")
	}
	// The broker is back (the transactor succeeds from now on); the claim's next event comes.
	c.commit(context.Background(), []*completion{later})
	if err := <-later.done; err == nil {
		t.Fatal("an event of the ended claim was committed after an earlier one was given up")
	}
	c.thens.Wait()
	tr.mu.Lock()
	for _, call := range tr.commits {
		if call.err == nil {
			t.Errorf("a transaction committed offset %v past the events given up", call.offsets)
		}
	}
	tr.mu.Unlock()
	if len(ran) != 0 {
		t.Fatalf("after-commit work ran for %v", ran)
	}
	// A new claim of the partition (the next session) starts from the committed offset, 10,
	// and its events commit as usual.
	again := finished(context.Background(), 0, 10, 1, &ran, &mu)
	c.commit(context.Background(), []*completion{again})
	if err := <-again.done; err != nil {
		t.Fatal(err)
	}
}

func TestCommitterCommitsTheLiveClaimsOfABatchAndGivesUpTheEndedOnes(t *testing.T) {
	tr := &transactor{}
	c := newCommitter(tr, "eu-west-1", "social", slog.New(slog.DiscardHandler))
	var ran []int64
	var mu sync.Mutex
	old, end := context.WithCancel(context.Background())
	end()
	gone := finished(old, 0, 5, 1, &ran, &mu)
	live := finished(context.Background(), 1, 7, 2, &ran, &mu)
	c.commit(context.Background(), []*completion{gone, live})
	if err := <-gone.done; err == nil {
		t.Fatal("the ended claim's event was committed")
	}
	if err := <-live.done; err != nil {
		t.Fatal(err)
	}
	c.thens.Wait()
	if len(tr.commits) != 1 || tr.commits[0].recs != 2 || len(tr.commits[0].offsets["eu-west-1.notify.social"]) != 1 || tr.commits[0].offsets["eu-west-1.notify.social"][1] != 8 {
		t.Fatalf("transactions %+v, want one with partition 1's 2 records at offset 8 only", tr.commits)
	}
}
