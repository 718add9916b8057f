// Package deliverylog records, in the region's Cassandra keyspace, each accepted notification,
// the state of each recipient x channel, and every delivery attempt. Each status read is a
// single-partition query on the notification id.
package deliverylog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gocql/gocql"
	"golang.org/x/sync/errgroup"

	"github.com/herald-notify/herald/region/notify"
)

// ErrNotFound means no notification has that id.
var ErrNotFound = errors.New("notification not found")

// Log writes and reads the delivery log.
type Log struct {
	s   *gocql.Session
	ttl int // seconds
}

// New returns a Log whose rows expire after ttl.
func New(s *gocql.Session, ttl time.Duration) *Log { return &Log{s: s, ttl: int(ttl.Seconds())} }

// Notification is the row of one accepted notification.
type Notification struct {
	ID             string     `json:"notification_id"`
	AppID          string     `json:"-"`
	Tier           string     `json:"type"`
	Category       string     `json:"category"`
	AcceptedAt     time.Time  `json:"accepted_at"`
	SendAt         *time.Time `json:"send_at,omitempty"`
	RecipientCount int        `json:"recipient_count"`
	Topic          string     `json:"topic,omitempty"`
	Channels       []string   `json:"channels,omitempty"`
	FanoutPath     string     `json:"fanout_path,omitempty"`
	FanoutDoneAt   *time.Time `json:"fanout_done_at,omitempty"`
}

// Accepted records an accepted event (idempotent: an upsert of the same values).
func (l *Log) Accepted(ctx context.Context, e notify.Event) error {
	var recipients int
	if e.Topic == "" {
		recipients = len(e.Recipients)
	}
	err := l.s.Query(`INSERT INTO notifications (notification_id, app_id, tier, category, accepted_at, send_at, recipient_count, topic, channels)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?`,
		e.ID, e.AppID, e.Tier, e.Category, e.AcceptedAt, e.SendAt, recipients, nullable(e.Topic), e.Channels, l.ttl).WithContext(ctx).Exec()
	if err != nil {
		return fmt.Errorf("recording notification %s: %w", e.ID, err)
	}
	return nil
}

// FanoutDone records that fan-out finished, which path it took and how many recipients it had.
func (l *Log) FanoutDone(ctx context.Context, id, path string, recipients int, at time.Time) error {
	err := l.s.Query(`UPDATE notifications USING TTL ? SET fanout_path = ?, fanout_done_at = ?, recipient_count = ? WHERE notification_id = ?`,
		l.ttl, path, at, recipients, id).WithContext(ctx).Exec()
	if err != nil {
		return fmt.Errorf("recording fan-out of %s: %w", id, err)
	}
	return nil
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// State is one recipient x channel state.
type State struct {
	NotificationID string    `json:"-"`
	UserID         string    `json:"user_id"`
	Channel        string    `json:"channel"`
	State          string    `json:"state"`
	Reason         string    `json:"reason,omitempty"`
	Detail         string    `json:"detail,omitempty"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// Attempt is one delivery attempt.
type Attempt struct {
	NotificationID    string    `json:"-"`
	At                time.Time `json:"at"`
	UserID            string    `json:"user_id"`
	Channel           string    `json:"channel"`
	Outcome           string    `json:"outcome"`
	Provider          string    `json:"provider,omitempty"`
	ProviderStatus    string    `json:"provider_status,omitempty"`
	ProviderMessageID string    `json:"provider_message_id,omitempty"`
	Error             string    `json:"error,omitempty"`
}

// batchStatements bounds a batch: Cassandra refuses batches over batch_size_fail_threshold
// (50 KiB by default); 40 rows of ours stay well under it.
const batchStatements = 40

// Write records states and attempts. Rows of one notification share a partition, so they go in
// unlogged single-partition batches of up to batchStatements rows, a few in flight at once.
func (l *Log) Write(ctx context.Context, states []State, attempts []Attempt) error {
	type stmt struct {
		id   string
		cql  string
		args []any
	}
	var stmts []stmt
	for _, s := range states {
		stmts = append(stmts, stmt{s.NotificationID, `INSERT INTO delivery_status (notification_id, user_id, channel, state, reason, detail, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?`, []any{s.NotificationID, s.UserID, s.Channel, s.State, nullable(s.Reason), nullable(s.Detail), s.UpdatedAt, l.ttl}})
	}
	for _, a := range attempts {
		stmts = append(stmts, stmt{a.NotificationID, `INSERT INTO delivery_attempt (notification_id, attempt_at, user_id, channel, outcome, provider, provider_status, provider_message_id, error)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?`, []any{a.NotificationID, gocql.UUIDFromTime(a.At), a.UserID, a.Channel, a.Outcome,
			nullable(a.Provider), nullable(a.ProviderStatus), nullable(a.ProviderMessageID), nullable(a.Error), l.ttl}})
	}
	open := map[string]*gocql.Batch{}
	var batches []*gocql.Batch
	for _, st := range stmts {
		b := open[st.id]
		if b == nil || b.Size() >= batchStatements {
			b = l.s.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
			open[st.id] = b
			batches = append(batches, b)
		}
		b.Query(st.cql, st.args...)
	}
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, b := range batches {
		g.Go(func() error {
			if err := l.s.ExecuteBatch(b); err != nil {
				return fmt.Errorf("writing delivery log: %w", err)
			}
			return nil
		})
	}
	return g.Wait()
}

// Get returns a notification row.
func (l *Log) Get(ctx context.Context, id string) (Notification, error) {
	n := Notification{ID: id}
	var topic *string
	var path *string
	err := l.s.Query(`SELECT app_id, tier, category, accepted_at, send_at, recipient_count, topic, channels, fanout_path, fanout_done_at
		FROM notifications WHERE notification_id = ?`, id).WithContext(ctx).
		Scan(&n.AppID, &n.Tier, &n.Category, &n.AcceptedAt, &n.SendAt, &n.RecipientCount, &topic, &n.Channels, &path, &n.FanoutDoneAt)
	if errors.Is(err, gocql.ErrNotFound) {
		return Notification{}, ErrNotFound
	}
	if err != nil {
		return Notification{}, fmt.Errorf("reading notification %s: %w", id, err)
	}
	if topic != nil {
		n.Topic = *topic
	}
	if path != nil {
		n.FanoutPath = *path
	}
	return n, nil
}

// States returns up to limit states of a notification after (user, channel), in key order.
func (l *Log) States(ctx context.Context, id, afterUser, afterChannel string, limit int) ([]State, error) {
	q := l.s.Query(`SELECT user_id, channel, state, reason, detail, updated_at FROM delivery_status
		WHERE notification_id = ? AND (user_id, channel) > (?, ?) LIMIT ?`, id, afterUser, afterChannel, limit).WithContext(ctx)
	iter := q.Iter()
	var out []State
	var s State
	var reason, detail *string
	for iter.Scan(&s.UserID, &s.Channel, &s.State, &reason, &detail, &s.UpdatedAt) {
		s.NotificationID = id
		s.Reason, s.Detail = deref(reason), deref(detail)
		out = append(out, s)
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("reading states of %s: %w", id, err)
	}
	return out, nil
}

// Attempts returns the attempts of a notification in time order (at most limit).
func (l *Log) Attempts(ctx context.Context, id string, limit int) ([]Attempt, error) {
	iter := l.s.Query(`SELECT attempt_at, user_id, channel, outcome, provider, provider_status, provider_message_id, error
		FROM delivery_attempt WHERE notification_id = ? LIMIT ?`, id, limit).WithContext(ctx).Iter()
	var out []Attempt
	var a Attempt
	var at gocql.UUID
	var provider, status, msgID, errStr *string
	for iter.Scan(&at, &a.UserID, &a.Channel, &a.Outcome, &provider, &status, &msgID, &errStr) {
		a.NotificationID = id
		a.At = at.Time()
		a.Provider, a.ProviderStatus, a.ProviderMessageID, a.Error = deref(provider), deref(status), deref(msgID), deref(errStr)
		out = append(out, a)
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("reading attempts of %s: %w", id, err)
	}
	return out, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
