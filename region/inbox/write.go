// Package inbox is the in-app inbox in the region's Cassandra keyspace: one partition per
// (app, user, month), newest first, and the topic feeds that large topics write once and
// inboxes merge at read time.
package inbox

import (
	"context"
	"fmt"
	"time"

	"github.com/gocql/gocql"
)

// Item is one inbox entry.
type Item struct {
	AppID          string            `json:"-"`
	UserID         string            `json:"user_id,omitempty"`
	NotificationID string            `json:"notification_id"`
	CreatedAt      time.Time         `json:"created_at"`
	Tier           string            `json:"type"`
	Category       string            `json:"category"`
	Title          string            `json:"title,omitempty"`
	Body           string            `json:"body,omitempty"`
	Link           string            `json:"link,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	ReadAt         *time.Time        `json:"read_at,omitempty"`
	Topic          string            `json:"topic,omitempty"`
}

// Bucket is the month partition of an instant: 202611 for November 2026 (UTC).
func Bucket(t time.Time) int {
	t = t.UTC()
	return t.Year()*100 + int(t.Month())
}

// Inbox writes and reads inbox rows.
type Inbox struct {
	s     *gocql.Session
	ttl   int
	short shortSources
}

// New returns an Inbox whose rows expire after ttl.
func New(s *gocql.Session, ttl time.Duration) *Inbox { return &Inbox{s: s, ttl: int(ttl.Seconds())} }

// Write stores an item. The key (accept time, notification id) is deterministic, so writing the
// same item again after a redelivery overwrites it instead of adding a second row.
func (in *Inbox) Write(ctx context.Context, it Item) error {
	err := in.s.Query(insertItem, it.insertArgs(in.ttl)...).WithContext(ctx).Idempotent(true).Exec()
	if err != nil {
		return fmt.Errorf("writing inbox item %s for %s: %w", it.NotificationID, it.UserID, err)
	}
	return nil
}

// WriteTopicFeed stores one feed record for a topic send (fan-out on read).
func (in *Inbox) WriteTopicFeed(ctx context.Context, it Item) error {
	ts := it.CreatedAt.UTC().Truncate(time.Millisecond)
	err := in.s.Query(`INSERT INTO topic_feed (app_id, topic, bucket, created_at, notification_id, tier, category, title, body, link, metadata)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?`,
		it.AppID, it.Topic, Bucket(ts), ts, it.NotificationID, it.Tier, it.Category, it.Title, it.Body, orUnset(it.Link), unsetIfEmpty(it.Metadata), in.ttl).
		WithContext(ctx).Idempotent(true).Exec()
	if err != nil {
		return fmt.Errorf("writing topic feed item %s for %s: %w", it.NotificationID, it.Topic, err)
	}
	return nil
}

// Recent returns up to limit items of a user's current and previous month, newest first. The
// full paged reader with cursors and topic-feed merging belongs to the read path.
func (in *Inbox) Recent(ctx context.Context, appID, userID string, now time.Time, limit int) ([]Item, error) {
	var out []Item
	for _, b := range []int{Bucket(now), Bucket(now.AddDate(0, -1, 0))} {
		iter := in.s.Query(`SELECT created_at, notification_id, tier, category, title, body, link, metadata, read_at
			FROM notification_log WHERE app_id = ? AND user_id = ? AND bucket = ? LIMIT ?`, appID, userID, b, limit-len(out)).WithContext(ctx).Iter()
		var it Item
		for iter.Scan(&it.CreatedAt, &it.NotificationID, &it.Tier, &it.Category, &it.Title, &it.Body, &it.Link, &it.Metadata, &it.ReadAt) {
			it.AppID, it.UserID = appID, userID
			out = append(out, it)
			it = Item{}
		}
		if err := iter.Close(); err != nil {
			return nil, fmt.Errorf("reading inbox of %s: %w", userID, err)
		}
		if len(out) >= limit {
			break
		}
	}
	return out, nil
}
