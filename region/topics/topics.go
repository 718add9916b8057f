// Package topics keeps topic subscriptions: an app's users subscribe to topics, and a send to a
// topic reaches every subscriber.
package topics

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store keeps subscriptions in the region's Postgres database.
type Store struct{ db *pgxpool.Pool }

// NewStore returns a Store.
func NewStore(db *pgxpool.Pool) *Store { return &Store{db: db} }

// Subscribe adds a subscriber; subscribing twice is not an error. It reports whether the
// subscription is new.
func (s *Store) Subscribe(ctx context.Context, appID, topic, userID string) (bool, error) {
	tag, err := s.db.Exec(ctx, `INSERT INTO topic_subscriptions (app_id, topic, user_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, appID, topic, userID)
	if err != nil {
		return false, fmt.Errorf("subscribing: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// Unsubscribe removes a subscriber and reports whether it was subscribed.
func (s *Store) Unsubscribe(ctx context.Context, appID, topic, userID string) (bool, error) {
	tag, err := s.db.Exec(ctx, `DELETE FROM topic_subscriptions WHERE app_id = $1 AND topic = $2 AND user_id = $3`, appID, topic, userID)
	if err != nil {
		return false, fmt.Errorf("unsubscribing: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// Count returns the number of subscribers.
func (s *Store) Count(ctx context.Context, appID, topic string) (int64, error) {
	var n int64
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM topic_subscriptions WHERE app_id = $1 AND topic = $2`, appID, topic).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting subscribers: %w", err)
	}
	return n, nil
}

// Page returns up to limit subscribers after the user id `after` (keyset paging, so a page
// costs the same at any depth).
func (s *Store) Page(ctx context.Context, appID, topic, after string, limit int) ([]string, error) {
	rows, err := s.db.Query(ctx, `SELECT user_id FROM topic_subscriptions WHERE app_id = $1 AND topic = $2 AND user_id > $3
		ORDER BY user_id LIMIT $4`, appID, topic, after, limit)
	if err != nil {
		return nil, fmt.Errorf("reading subscribers: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// IsSubscribed reports whether the user subscribes to the topic.
func (s *Store) IsSubscribed(ctx context.Context, appID, topic, userID string) (bool, error) {
	var ok bool
	err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM topic_subscriptions WHERE app_id = $1 AND topic = $2 AND user_id = $3)`, appID, topic, userID).Scan(&ok)
	return ok, err
}

// Subscription is a topic a user follows and since when.
type Subscription struct {
	Topic string
	Since time.Time
}

// Of lists the topics a user subscribes to.
func (s *Store) Of(ctx context.Context, appID, userID string) ([]Subscription, error) {
	rows, err := s.db.Query(ctx, `SELECT topic, created_at FROM topic_subscriptions WHERE app_id = $1 AND user_id = $2 ORDER BY topic`, appID, userID)
	if err != nil {
		return nil, fmt.Errorf("reading subscriptions: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Subscription, error) {
		var sub Subscription
		err := r.Scan(&sub.Topic, &sub.Since)
		return sub, err
	})
}
