package audit

import (
	"bytes"
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// MaxBatch is the most entries one Append takes.
const MaxBatch = 1000

// Store is the region's audit log in its Postgres database (tables audit_log and audit_head).
type Store struct {
	db *pgxpool.Pool
}

// NewStore returns the audit log of the region whose database db is.
func NewStore(db *pgxpool.Pool) *Store { return &Store{db: db} }

// Head is the last entry of the chain as the head row records it: seq 0 and Genesis when empty.
type Head struct {
	Seq  int64
	Hash []byte
}

// Append adds entries to the chain in one transaction, in their order, and returns how many
// were added. Entries whose id is already in the log (a retried batch) or earlier in the same
// batch are skipped. Appends are serialised by locking the head row.
func (s *Store) Append(ctx context.Context, entries []Entry) (int, error) {
	if len(entries) > MaxBatch {
		return 0, fmt.Errorf("appending %d audit entries: at most %d at once", len(entries), MaxBatch)
	}
	ids := make([]string, 0, len(entries))
	for i, e := range entries {
		if fe := e.Validate(); fe != nil {
			return 0, fmt.Errorf("audit entry %d: %w", i, fe)
		}
		ids = append(ids, e.ID)
	}
	added := 0
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		added = 0
		var head Head
		if err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_head FOR UPDATE`).Scan(&head.Seq, &head.Hash); err != nil {
			return fmt.Errorf("locking the audit head: %w", err)
		}
		// Read under the head lock: a concurrent retry of the same batch has committed or waits.
		seen := map[string]bool{}
		rows, err := tx.Query(ctx, `SELECT id::text FROM audit_log WHERE id = ANY($1::text[]::uuid[])`, ids)
		if err != nil {
			return fmt.Errorf("finding audit entries already recorded: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			seen[id] = true
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("finding audit entries already recorded: %w", err)
		}
		batch := &pgx.Batch{}
		for _, e := range entries {
			if seen[e.ID] {
				continue
			}
			seen[e.ID] = true
			e.At = normalise(e.At)
			e.Seq = head.Seq + 1
			e.PrevHash = head.Hash
			e.Hash = ComputeHash(e.PrevHash, e)
			batch.Queue(`INSERT INTO audit_log (seq, id, at, app_id, user_key, jurisdiction, region, reason, policy_version, request_id, prev_hash, hash)
				VALUES ($1, $2::text::uuid, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
				e.Seq, e.ID, e.At, e.App, e.UserKey, e.Jurisdiction, e.Region, e.Reason, e.PolicyVersion, e.RequestID, e.PrevHash, e.Hash)
			head = Head{Seq: e.Seq, Hash: e.Hash}
			added++
		}
		if added == 0 {
			return nil
		}
		batch.Queue(`UPDATE audit_head SET seq = $1, hash = $2`, head.Seq, head.Hash)
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return fmt.Errorf("appending audit entries: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return added, nil
}

// Head reads the head row.
func (s *Store) Head(ctx context.Context) (Head, error) {
	var h Head
	if err := s.db.QueryRow(ctx, `SELECT seq, hash FROM audit_head`).Scan(&h.Seq, &h.Hash); err != nil {
		return Head{}, fmt.Errorf("reading the audit head: %w", err)
	}
	return h, nil
}

const entryColumns = `seq, id::text, at, app_id, user_key, jurisdiction, region, reason, policy_version, request_id, prev_hash, hash`

func scanEntry(row pgx.Row) (Entry, error) {
	var e Entry
	err := row.Scan(&e.Seq, &e.ID, &e.At, &e.App, &e.UserKey, &e.Jurisdiction, &e.Region, &e.Reason, &e.PolicyVersion, &e.RequestID, &e.PrevHash, &e.Hash)
	e.At = e.At.UTC()
	return e, err
}

// ForUser lists the decisions recorded for a user of an app, in chain order.
func (s *Store) ForUser(ctx context.Context, app, userKey string) ([]Entry, error) {
	rows, err := s.db.Query(ctx, `SELECT `+entryColumns+` FROM audit_log WHERE app_id = $1 AND user_key = $2 ORDER BY seq`, app, userKey)
	if err != nil {
		return nil, fmt.Errorf("reading the user's audit entries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) { return scanEntry(r) })
	if err != nil {
		return nil, fmt.Errorf("reading the user's audit entries: %w", err)
	}
	return out, nil
}

// BreakKind says what is wrong at a broken link.
type BreakKind string

const (
	// Changed: the entry's content no longer gives its hash.
	Changed BreakKind = "changed"
	// Missing: entries are absent from the chain (removed, or the tail truncated).
	Missing BreakKind = "missing"
	// Inserted: an entry that was never appended sits in the chain, or after the head.
	Inserted BreakKind = "inserted"
	// BrokenLink: the entry's prev_hash is not the previous entry's hash, which is what a
	// rewritten previous entry (hash recomputed) or a removal hidden by renumbering leaves.
	BrokenLink BreakKind = "broken-link"
	// HeadMismatch: the last entry's hash is not the one the head recorded.
	HeadMismatch BreakKind = "head-mismatch"
	// AnchorMismatch: an entry's hash is not the one recorded outside the database (an anchor):
	// the chain was rewritten consistently up to there.
	AnchorMismatch BreakKind = "anchor-mismatch"
)

// Break is the first broken link of the chain.
type Break struct {
	Seq    int64
	Kind   BreakKind
	Detail string
}

func (b *Break) Error() string {
	return fmt.Sprintf("audit chain broken at seq %d: %s: %s", b.Seq, b.Kind, b.Detail)
}

// Verification is what Verify found.
type Verification struct {
	Entries int64 // entries read
	Head    Head
	Break   *Break // nil when the chain is whole
}

// verifyPage is how many entries Verify reads per query.
const verifyPage = 2000

// Verify walks the chain in seq order, in one consistent snapshot, and returns its first
// broken link, if any. Anchors are (seq, hash) pairs copied from the head earlier and kept
// outside the database: each entry at an anchor's seq must still have its hash, which catches
// a rewrite of the whole chain that the chain alone cannot. The error is for failures to read,
// not for a broken chain.
func (s *Store) Verify(ctx context.Context, anchors ...Head) (Verification, error) {
	var v Verification
	err := pgx.BeginTxFunc(ctx, s.db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		v = Verification{}
		if err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_head`).Scan(&v.Head.Seq, &v.Head.Hash); err != nil {
			return fmt.Errorf("reading the audit head: %w", err)
		}
		w := walker{head: v.Head, expected: 1, prev: Genesis, anchors: map[int64][]byte{}}
		for _, a := range anchors {
			w.anchors[a.Seq] = a.Hash
		}
		after := int64(-1 << 62)
		for v.Break == nil {
			rows, err := tx.Query(ctx, `SELECT `+entryColumns+` FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2`, after, verifyPage)
			if err != nil {
				return fmt.Errorf("reading the audit log: %w", err)
			}
			page, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) { return scanEntry(r) })
			if err != nil {
				return fmt.Errorf("reading the audit log: %w", err)
			}
			for _, e := range page {
				v.Entries++
				if v.Break = w.next(e); v.Break != nil {
					break
				}
			}
			if len(page) < verifyPage {
				break
			}
			after = page[len(page)-1].Seq
		}
		if v.Break == nil {
			v.Break = w.end()
		}
		return nil
	})
	return v, err
}

// walker checks entries one at a time, in seq order.
type walker struct {
	head     Head
	expected int64
	prev     []byte // the hash the next entry must link to
	prevPrev []byte // the hash before it, to tell an inserted entry from a rewritten one
	anchors  map[int64][]byte
}

func (w *walker) next(e Entry) *Break {
	switch {
	case e.Seq < w.expected:
		return &Break{Seq: e.Seq, Kind: Inserted, Detail: fmt.Sprintf("entry with seq %d where seq %d was expected", e.Seq, w.expected)}
	case e.Seq > w.head.Seq && w.expected > w.head.Seq:
		return &Break{Seq: e.Seq, Kind: Inserted, Detail: fmt.Sprintf("entry after the recorded head (seq %d)", w.head.Seq)}
	case e.Seq > w.expected:
		return &Break{Seq: w.expected, Kind: Missing, Detail: fmt.Sprintf("entries %d to %d are not in the log", w.expected, e.Seq-1)}
	}
	if !bytes.Equal(e.PrevHash, w.prev) {
		if w.prevPrev != nil && bytes.Equal(e.PrevHash, w.prevPrev) {
			return &Break{Seq: e.Seq - 1, Kind: Inserted, Detail: fmt.Sprintf("entry %d links to entry %d's hash: entry %d was put in between", e.Seq, e.Seq-2, e.Seq-1)}
		}
		return &Break{Seq: e.Seq, Kind: BrokenLink, Detail: fmt.Sprintf("prev_hash %s is not entry %d's hash %s: entry %d was rewritten, or entries before were removed and renumbered",
			short(e.PrevHash), e.Seq-1, short(w.prev), e.Seq-1)}
	}
	if got := ComputeHash(e.PrevHash, e); !bytes.Equal(got, e.Hash) {
		return &Break{Seq: e.Seq, Kind: Changed, Detail: fmt.Sprintf("its content hashes to %s, not the recorded %s", short(got), short(e.Hash))}
	}
	if a, ok := w.anchors[e.Seq]; ok && !bytes.Equal(a, e.Hash) {
		return &Break{Seq: e.Seq, Kind: AnchorMismatch, Detail: fmt.Sprintf("its hash %s is not the anchored %s: the chain was rewritten up to here", short(e.Hash), short(a))}
	}
	w.prevPrev, w.prev = w.prev, e.Hash
	w.expected++
	return nil
}

func (w *walker) end() *Break {
	last := w.expected - 1
	for seq := range w.anchors {
		if seq > last {
			return &Break{Seq: last + 1, Kind: Missing, Detail: fmt.Sprintf("the log ends at seq %d but an anchor records seq %d", last, seq)}
		}
	}
	switch {
	case last < w.head.Seq:
		return &Break{Seq: last + 1, Kind: Missing, Detail: fmt.Sprintf("the log ends at seq %d but the head records seq %d: the tail was truncated", last, w.head.Seq)}
	case !bytes.Equal(w.prev, w.head.Hash):
		return &Break{Seq: last, Kind: HeadMismatch, Detail: fmt.Sprintf("the last entry's hash %s is not the head's %s", short(w.prev), short(w.head.Hash))}
	}
	return nil
}
