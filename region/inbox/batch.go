package inbox

import (
	"context"
	"fmt"
	"time"

	"github.com/gocql/gocql"
)

// MaxBatchBytes keeps an inbox batch under Cassandra's batch_size_warn_threshold (5 KiB):
// bigger batches are logged on every write and, past 50 KiB, refused.
const MaxBatchBytes = 5 << 10

const insertItem = `INSERT INTO notification_log (app_id, user_id, bucket, created_at, notification_id, tier, category, title, body, link, metadata)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?`

// insertArgs binds insertItem for it.
func (it Item) insertArgs(ttl int) []any {
	ts := it.CreatedAt.UTC().Truncate(time.Millisecond)
	return []any{it.AppID, it.UserID, Bucket(ts), ts, it.NotificationID, it.Tier, it.Category, it.Title, it.Body, orUnset(it.Link), unsetIfEmpty(it.Metadata), ttl}
}

// orUnset binds s, or leaves the column unset when s is empty: nothing is stored for it, and
// it reads back as "" all the same.
func orUnset(s string) any {
	if s == "" {
		return gocql.UnsetValue
	}
	return s
}

// unsetIfEmpty binds m, or leaves the column unset when m is empty: binding a null map writes a
// collection tombstone into every row, which memtables, flushes, compactions and reads all carry.
func unsetIfEmpty(m map[string]string) any {
	if len(m) == 0 {
		return gocql.UnsetValue
	}
	return m
}

// size approximates an item's share of a batch's serialized size.
func (it Item) size() int {
	n := 64 + len(it.AppID) + len(it.UserID) + len(it.NotificationID) + len(it.Tier) + len(it.Category) +
		len(it.Title) + len(it.Body) + len(it.Link)
	for k, v := range it.Metadata {
		n += 8 + len(k) + len(v)
	}
	return n
}

// Batches splits items into groups of at most rows items and MaxBatchBytes each (an item
// bigger than that is a group of its own).
func Batches(items []Item, rows int) [][]Item {
	var out [][]Item
	start, bytes := 0, 0
	for i, it := range items {
		sz := it.size()
		if i > start && (i-start >= rows || bytes+sz > MaxBatchBytes) {
			out = append(out, items[start:i])
			start, bytes = i, 0
		}
		bytes += sz
	}
	if start < len(items) {
		out = append(out, items[start:])
	}
	return out
}

// WriteBatch stores items in one unlogged batch: one request and one coordinator pass for
// rows of different users. Every row has its deterministic key, so a repeat overwrites.
// Worth it where the coordinator holds every replica (one node, or rows grouped by replica);
// across a larger cluster a coordinator would forward most rows, and single writes are better.
func (in *Inbox) WriteBatch(ctx context.Context, items []Item) error {
	if len(items) == 1 {
		return in.Write(ctx, items[0])
	}
	b := in.s.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
	for _, it := range items {
		b.Entries = append(b.Entries, gocql.BatchEntry{Stmt: insertItem, Idempotent: true, Args: it.insertArgs(in.ttl)})
	}
	if err := in.s.ExecuteBatch(b); err != nil {
		return fmt.Errorf("writing %d inbox items of %s: %w", len(items), items[0].NotificationID, err)
	}
	return nil
}
