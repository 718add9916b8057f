// Package pushstore keeps the content of content-free pushes in the user's home region.
//
// Under push_content: minimal a push carries only the notification id; the app fetches the
// content with a user token. The inbox item is that content when the notification left one. A
// push-only send (or one whose in-app delivery the user's preferences turned off) leaves none,
// so the dispatcher stores the push's content here, in the region's Cassandra keyspace, before
// it sends the push: the fetch then finds it. Rows expire after the store's TTL and an erasure
// deletes a user's whole partition.
package pushstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gocql/gocql"

	"github.com/herald-notify/herald/region/inbox"
	"github.com/herald-notify/herald/region/notify"
)

// ErrNotFound means the user has no stored push content for the notification.
var ErrNotFound = errors.New("push content not found")

// Store reads and writes push content.
type Store struct {
	s   *gocql.Session
	ttl int
}

// New returns a Store whose rows expire after ttl (at least a second).
func New(s *gocql.Session, ttl time.Duration) *Store {
	return &Store{s: s, ttl: max(1, int(ttl.Seconds()))}
}

// Put stores the content of a push task for its user. Writing the same task again (a retry, a
// redelivery) overwrites the row with the same values.
func (st *Store) Put(ctx context.Context, t notify.Task) error {
	var link, title, body any
	if t.Content.Link != "" {
		link = t.Content.Link
	}
	if t.Content.Title != "" {
		title = t.Content.Title
	}
	if t.Content.Body != "" {
		body = t.Content.Body
	}
	var metadata any
	if len(t.Metadata) > 0 {
		metadata = t.Metadata
	}
	err := st.s.Query(`INSERT INTO push_content (app_id, user_id, notification_id, created_at, tier, category, title, body, link, metadata)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?`,
		t.AppID, t.UserID, t.NotificationID, t.AcceptedAt.UTC().Truncate(time.Millisecond), t.Tier, t.Category, title, body, link, metadata, st.ttl).
		WithContext(ctx).Idempotent(true).Exec()
	if err != nil {
		return fmt.Errorf("storing push content of %s for %s: %w", t.NotificationID, t.UserID, err)
	}
	return nil
}

// Get returns the user's stored content of the notification in the inbox item's form (what
// the app shows either way), ErrNotFound when there is none (never stored, expired, erased).
func (st *Store) Get(ctx context.Context, app, user, id string) (inbox.Item, error) {
	it := inbox.Item{AppID: app, NotificationID: id}
	err := st.s.Query(`SELECT created_at, tier, category, title, body, link, metadata FROM push_content WHERE app_id = ? AND user_id = ? AND notification_id = ?`,
		app, user, id).WithContext(ctx).Scan(&it.CreatedAt, &it.Tier, &it.Category, &it.Title, &it.Body, &it.Link, &it.Metadata)
	if errors.Is(err, gocql.ErrNotFound) {
		return inbox.Item{}, ErrNotFound
	}
	if err != nil {
		return inbox.Item{}, fmt.Errorf("reading push content of %s: %w", id, err)
	}
	return it, nil
}

// Erase deletes every stored push content of the user in the app.
func (st *Store) Erase(ctx context.Context, app, user string) error {
	if err := st.s.Query(`DELETE FROM push_content WHERE app_id = ? AND user_id = ?`, app, user).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("erasing push content: %w", err)
	}
	return nil
}
