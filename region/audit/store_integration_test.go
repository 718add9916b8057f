//go:build integration

package audit_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/platform/migrate"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/audit"
	"github.com/herald-notify/herald/region/schema"
)

// newStore migrates a private region database and returns its audit store and pool.
func newStore(t *testing.T) (*audit.Store, *pgxpool.Pool) {
	t.Helper()
	c := testenv.Postgres(t)
	ctx := testenv.Context(t, time.Minute)
	if err := migrate.Database(ctx, c, schema.Postgres(), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	pool, err := postgres.Connect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return audit.NewStore(pool), pool
}

func entry(i int, userKey string) audit.Entry {
	return audit.Entry{
		ID: uuid.NewString(), At: time.Date(2026, 11, 25, 4, 0, i, 123456789, time.UTC), App: "app-1", UserKey: userKey,
		Jurisdiction: "EU", Region: "eu-west-1", Reason: audit.ReasonHome, PolicyVersion: 3, RequestID: fmt.Sprintf("req-%d", i),
	}
}

var keyA, keyB = fmt.Sprintf("%064x", 0xa), fmt.Sprintf("%064x", 0xb)

func mustVerify(t *testing.T, s *audit.Store) audit.Verification {
	t.Helper()
	v, err := s.Verify(testenv.Context(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestAppendChainsEntriesSkipsRetriedIDsAndVerifies(t *testing.T) {
	s, _ := newStore(t)
	ctx := testenv.Context(t, time.Minute)
	if v := mustVerify(t, s); v.Break != nil || v.Entries != 0 || v.Head.Seq != 0 {
		t.Fatalf("empty log: %+v", v)
	}
	batch := []audit.Entry{entry(1, keyA), entry(2, keyB), entry(3, keyA)}
	batch[1].Reason, batch[1].Region = audit.ReasonRefused, ""
	batch[2].Reason, batch[2].Region = "failover-from-eu-west-1", "eu-central-1"
	n, err := s.Append(ctx, batch)
	if err != nil || n != 3 {
		t.Fatalf("append: %d, %v", n, err)
	}
	// The gateway retries the whole batch with one more entry, and repeats an id within it.
	extra := entry(4, keyA)
	n, err = s.Append(ctx, append(batch, extra, extra))
	if err != nil || n != 1 {
		t.Fatalf("retried batch: appended %d, %v; want only the new entry", n, err)
	}
	v := mustVerify(t, s)
	if v.Break != nil || v.Entries != 4 || v.Head.Seq != 4 {
		t.Fatalf("verify: %+v, break %v", v, v.Break)
	}
	got, err := s.ForUser(ctx, "app-1", keyA)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].ID != batch[0].ID || got[1].ID != batch[2].ID || got[2].ID != extra.ID {
		t.Fatalf("ForUser: %+v", got)
	}
	if got[1].Seq != 3 || got[1].Reason != "failover-from-eu-west-1" || !got[0].At.Equal(batch[0].At.Truncate(time.Microsecond)) {
		t.Fatalf("ForUser entry: %+v", got[1])
	}
	if other, _ := s.ForUser(ctx, "app-2", keyA); len(other) != 0 {
		t.Fatalf("another app's user key matched: %+v", other)
	}
}

func TestConcurrentAppendsMakeOneUnbrokenChain(t *testing.T) {
	s, _ := newStore(t)
	ctx := testenv.Context(t, 2*time.Minute)
	const writers, batches, per = 6, 5, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				es := make([]audit.Entry, per)
				for i := range es {
					es[i] = entry(w*1000+b*100+i, keyA)
				}
				if _, err := s.Append(ctx, es); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	v := mustVerify(t, s)
	if v.Break != nil || v.Entries != writers*batches*per || v.Head.Seq != writers*batches*per {
		t.Fatalf("verify: entries %d head %d break %v", v.Entries, v.Head.Seq, v.Break)
	}
}

func TestAuditLogRefusesUpdatesDeletesAndTruncate(t *testing.T) {
	s, pool := newStore(t)
	ctx := testenv.Context(t, time.Minute)
	if _, err := s.Append(ctx, []audit.Entry{entry(1, keyA)}); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{`UPDATE audit_log SET region = 'us-east-1'`, `DELETE FROM audit_log`, `TRUNCATE audit_log`} {
		if _, err := pool.Exec(ctx, stmt); err == nil {
			t.Errorf("%s was allowed", stmt)
		}
	}
}

// forge computes a row as someone with write access and the algorithm would.
func forge(e audit.Entry, seq int64, prev []byte) audit.Entry {
	e.Seq, e.PrevHash = seq, prev
	e.Hash = audit.ComputeHash(prev, e)
	return e
}

func insertRow(ctx context.Context, pool *pgxpool.Pool, e audit.Entry) error {
	_, err := pool.Exec(ctx, `INSERT INTO audit_log (seq, id, at, app_id, user_key, jurisdiction, region, reason, policy_version, request_id, prev_hash, hash)
		VALUES ($1, $2::text::uuid, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		e.Seq, e.ID, e.At, e.App, e.UserKey, e.Jurisdiction, e.Region, e.Reason, e.PolicyVersion, e.RequestID, e.PrevHash, e.Hash)
	return err
}

func TestVerifyFindsTheFirstBrokenLink(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(ctx context.Context, pool *pgxpool.Pool, chain []audit.Entry) error
		seq    int64
		kind   audit.BreakKind
	}{
		{"an entry changed in place", func(ctx context.Context, pool *pgxpool.Pool, _ []audit.Entry) error {
			_, err := pool.Exec(ctx, `UPDATE audit_log SET region = 'us-east-1' WHERE seq = 3`)
			return err
		}, 3, audit.Changed},
		{"an entry's time changed by a microsecond", func(ctx context.Context, pool *pgxpool.Pool, _ []audit.Entry) error {
			_, err := pool.Exec(ctx, `UPDATE audit_log SET at = at + interval '1 microsecond' WHERE seq = 2`)
			return err
		}, 2, audit.Changed},
		{"an entry rewritten with its hash recomputed", func(ctx context.Context, pool *pgxpool.Pool, chain []audit.Entry) error {
			e := chain[2]
			e.Region = "us-east-1"
			e = forge(e, 3, chain[1].Hash)
			_, err := pool.Exec(ctx, `UPDATE audit_log SET region = $1, hash = $2 WHERE seq = 3`, e.Region, e.Hash)
			return err
		}, 4, audit.BrokenLink},
		{"a row deleted", func(ctx context.Context, pool *pgxpool.Pool, _ []audit.Entry) error {
			_, err := pool.Exec(ctx, `DELETE FROM audit_log WHERE seq = 3`)
			return err
		}, 3, audit.Missing},
		{"a row inserted between two, the rest renumbered", func(ctx context.Context, pool *pgxpool.Pool, chain []audit.Entry) error {
			if _, err := pool.Exec(ctx, `UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 3`); err != nil {
				return err
			}
			if _, err := pool.Exec(ctx, `UPDATE audit_log SET seq = seq - 999 WHERE seq > 1000`); err != nil {
				return err
			}
			return insertRow(ctx, pool, forge(entry(99, keyB), 3, chain[1].Hash))
		}, 3, audit.Inserted},
		{"a row appended after the head", func(ctx context.Context, pool *pgxpool.Pool, chain []audit.Entry) error {
			return insertRow(ctx, pool, forge(entry(99, keyB), 6, chain[4].Hash))
		}, 6, audit.Inserted},
		{"the tail truncated", func(ctx context.Context, pool *pgxpool.Pool, _ []audit.Entry) error {
			_, err := pool.Exec(ctx, `DELETE FROM audit_log WHERE seq >= 4`)
			return err
		}, 4, audit.Missing},
		{"the last entry rewritten with its hash recomputed", func(ctx context.Context, pool *pgxpool.Pool, chain []audit.Entry) error {
			e := chain[4]
			e.Reason, e.Region = audit.ReasonRefused, ""
			e = forge(e, 5, chain[3].Hash)
			_, err := pool.Exec(ctx, `UPDATE audit_log SET reason = $1, region = $2, hash = $3 WHERE seq = 5`, e.Reason, e.Region, e.Hash)
			return err
		}, 5, audit.HeadMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, pool := newStore(t)
			ctx := testenv.Context(t, time.Minute)
			batch := make([]audit.Entry, 5)
			for i := range batch {
				batch[i] = entry(i, keyA)
			}
			if _, err := s.Append(ctx, batch); err != nil {
				t.Fatal(err)
			}
			if v := mustVerify(t, s); v.Break != nil {
				t.Fatalf("before tampering: %v", v.Break)
			}
			chain, err := s.ForUser(ctx, "app-1", keyA)
			if err != nil || len(chain) != 5 {
				t.Fatalf("chain: %d entries, %v", len(chain), err)
			}
			// Someone with the owner's rights: the append-only trigger is no obstacle.
			if _, err := pool.Exec(ctx, `ALTER TABLE audit_log DISABLE TRIGGER USER`); err != nil {
				t.Fatal(err)
			}
			if err := tt.tamper(ctx, pool, chain); err != nil {
				t.Fatal(err)
			}
			v := mustVerify(t, s)
			if v.Break == nil {
				t.Fatalf("verify found nothing after %s", tt.name)
			}
			if v.Break.Seq != tt.seq || v.Break.Kind != tt.kind {
				t.Fatalf("break at seq %d (%s), want seq %d (%s): %v", v.Break.Seq, v.Break.Kind, tt.seq, tt.kind, v.Break)
			}
		})
	}
}

func TestTheSameBatchSentConcurrentlyIsAppendedOnce(t *testing.T) {
	s, _ := newStore(t)
	ctx := testenv.Context(t, time.Minute)
	batch := make([]audit.Entry, 50)
	for i := range batch {
		batch[i] = entry(i, keyA)
	}
	var wg sync.WaitGroup
	added := make(chan int, 4)
	for range 4 { // a gateway that timed out and retried while the first try was still running
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := s.Append(ctx, batch)
			if err != nil {
				t.Error(err)
			}
			added <- n
		}()
	}
	wg.Wait()
	close(added)
	total := 0
	for n := range added {
		total += n
	}
	v := mustVerify(t, s)
	if total != len(batch) || v.Entries != int64(len(batch)) || v.Break != nil {
		t.Fatalf("appended %d in all, log holds %d (break %v); want %d once", total, v.Entries, v.Break, len(batch))
	}
}

// A writer who recomputes every hash from some entry on and moves the head passes the chain's
// own checks; a head copied elsewhere earlier (an anchor) catches it.
func TestAnAnchoredHeadCatchesAConsistentRewriteThatTheChainAlonePasses(t *testing.T) {
	s, pool := newStore(t)
	ctx := testenv.Context(t, time.Minute)
	batch := make([]audit.Entry, 5)
	for i := range batch {
		batch[i] = entry(i, keyA)
	}
	if _, err := s.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	anchor, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := s.ForUser(ctx, "app-1", keyA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ALTER TABLE audit_log DISABLE TRIGGER USER`); err != nil {
		t.Fatal(err)
	}
	prev := chain[1].Hash
	for _, e := range chain[2:] { // entry 3 sent to another region, every later hash recomputed
		if e.Seq == 3 {
			e.Region = "us-east-1"
		}
		e = forge(e, e.Seq, prev)
		if _, err := pool.Exec(ctx, `UPDATE audit_log SET region = $1, prev_hash = $2, hash = $3 WHERE seq = $4`, e.Region, e.PrevHash, e.Hash, e.Seq); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
	}
	if _, err := pool.Exec(ctx, `UPDATE audit_head SET hash = $1`, prev); err != nil {
		t.Fatal(err)
	}
	if v := mustVerify(t, s); v.Break != nil {
		t.Fatalf("the chain alone: %v; this rewrite was expected to pass it", v.Break)
	}
	v, err := s.Verify(ctx, anchor)
	if err != nil {
		t.Fatal(err)
	}
	if v.Break == nil || v.Break.Seq != 5 || v.Break.Kind != audit.AnchorMismatch {
		t.Fatalf("with the anchor (seq %d): %v, want anchor-mismatch at seq 5", anchor.Seq, v.Break)
	}
	// An anchor beyond the log's end: the tail was cut and the head moved back.
	if v, _ := s.Verify(ctx, audit.Head{Seq: 9, Hash: anchor.Hash}); v.Break == nil || v.Break.Seq != 6 || v.Break.Kind != audit.Missing {
		t.Fatalf("anchor beyond the end: %v, want missing at seq 6", v.Break)
	}
}
