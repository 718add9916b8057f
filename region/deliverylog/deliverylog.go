// Package deliverylog records, in the region's Cassandra keyspace, each accepted notification,
// the state of each recipient x channel, and every delivery attempt. Each status read is a
// single-partition query on the notification id.
package deliverylog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gocql/gocql"
	"golang.org/x/sync/errgroup"

	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/receipts"
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
	// Workflow is the workflow run and step that produced it (none for a send).
	Workflow *notify.WorkflowRef `json:"workflow,omitempty"`
}

// Accepted records an accepted event (idempotent: an upsert of the same values).
func (l *Log) Accepted(ctx context.Context, e notify.Event) error {
	var recipients int
	if e.Topic == "" {
		recipients = len(e.Recipients)
	}
	var workflow map[string]string
	if w := e.Workflow; w != nil {
		workflow = map[string]string{"id": w.ID, "version": strconv.FormatInt(w.Version, 10), "run_id": w.RunID, "step": w.Step}
	}
	err := l.s.Query(`INSERT INTO notifications (notification_id, app_id, tier, category, accepted_at, send_at, recipient_count, topic, channels, workflow)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?`,
		e.ID, e.AppID, e.Tier, e.Category, e.AcceptedAt, e.SendAt, recipients, nullable(e.Topic), e.Channels, workflow, l.ttl).WithContext(ctx).Exec()
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
	// Receipts are what the provider reported after it took the message (sent, delivered,
	// undelivered, failed), each with when it came; State follows the final one.
	Receipts []Receipt `json:"receipts,omitempty"`
}

// Receipt is one status a provider reported.
type Receipt struct {
	Status string    `json:"status"`
	At     time.Time `json:"at"`
	// Code is the carrier's error code of an undelivered or failed message.
	Code string `json:"code,omitempty"`
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

// deliveredSetUsers bounds the recipients of one inbox_delivered_sets row: a fan-out chunk's
// (500 by default) go in one.
const deliveredSetUsers = 1000

// deliveredSet is one row of inbox_delivered_sets: in-app deliveries of one notification.
type deliveredSet struct {
	id, chunk string
	users     []string
	at        time.Time
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// inboxDelivered reports whether a state is stored in inbox_delivered_sets rather than
// delivery_status: an in-app delivery, whose inbox row is written. That state is final.
func inboxDelivered(s State) bool {
	return s.Channel == notify.InApp && s.State == notify.StateDelivered
}

// Write records states and attempts. Rows of one notification share a partition, so they go in
// unlogged single-partition batches, a few in flight at once.
func (l *Log) Write(ctx context.Context, states []State, attempts []Attempt) error {
	type stmt struct {
		id   string
		cql  string
		args []any
	}
	var stmts []stmt
	sets := map[string]*deliveredSet{}
	var setOrder []*deliveredSet
	for _, s := range states {
		if inboxDelivered(s) {
			set := sets[s.NotificationID]
			if set == nil || len(set.users) >= deliveredSetUsers {
				set = &deliveredSet{id: s.NotificationID, chunk: s.UserID, at: s.UpdatedAt}
				sets[s.NotificationID] = set
				setOrder = append(setOrder, set)
			}
			set.users = append(set.users, s.UserID)
			set.at = later(set.at, s.UpdatedAt)
			continue
		}
		stmts = append(stmts, stmt{s.NotificationID, `INSERT INTO delivery_status (notification_id, user_id, channel, state, reason, detail, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?`, []any{s.NotificationID, s.UserID, s.Channel, s.State, nullable(s.Reason), nullable(s.Detail), s.UpdatedAt, l.ttl}})
	}
	for _, a := range attempts {
		stmts = append(stmts, stmt{a.NotificationID, `INSERT INTO delivery_attempt (notification_id, attempt_at, user_id, channel, outcome, provider, provider_status, provider_message_id, error)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?`, []any{a.NotificationID, gocql.UUIDFromTime(a.At), a.UserID, a.Channel, a.Outcome,
			nullable(a.Provider), nullable(a.ProviderStatus), nullable(a.ProviderMessageID), nullable(a.Error), l.ttl}})
	}
	var batches []*gocql.Batch
	group := func(stmts []stmt, rows int) {
		open := map[string]*gocql.Batch{}
		for _, st := range stmts {
			b := open[st.id]
			if b == nil || b.Size() >= rows {
				b = l.s.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
				open[st.id] = b
				batches = append(batches, b)
			}
			b.Query(st.cql, st.args...)
		}
	}
	group(stmts, batchStatements)
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, set := range setOrder {
		g.Go(func() error {
			// Adding to the set: a repeat adds only what is missing, and never takes out what
			// an earlier attempt wrote.
			err := l.s.Query(`UPDATE inbox_delivered_sets USING TTL ? SET users = users + ?, delivered_at = ? WHERE notification_id = ? AND chunk = ?`,
				l.ttl, set.users, set.at, set.id, set.chunk).WithContext(ctx).Idempotent(true).Exec()
			if err != nil {
				return fmt.Errorf("writing in-app deliveries of %s: %w", set.id, err)
			}
			return nil
		})
	}
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
	var workflow map[string]string
	err := l.s.Query(`SELECT app_id, tier, category, accepted_at, send_at, recipient_count, topic, channels, fanout_path, fanout_done_at, workflow
		FROM notifications WHERE notification_id = ?`, id).WithContext(ctx).
		Scan(&n.AppID, &n.Tier, &n.Category, &n.AcceptedAt, &n.SendAt, &n.RecipientCount, &topic, &n.Channels, &path, &n.FanoutDoneAt, &workflow)
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
	if workflow["id"] != "" {
		// A row that does not parse shows its version as 0 rather than failing the read.
		v, _ := strconv.ParseInt(workflow["version"], 10, 64)
		n.Workflow = &notify.WorkflowRef{ID: workflow["id"], Version: v, RunID: workflow["run_id"], Step: workflow["step"]}
	}
	return n, nil
}

// States returns up to limit states of a notification after (user, channel), in key order:
// delivery_status merged with the in-app deliveries of inbox_delivered_sets (and of
// inbox_delivered, where they were kept before). Where both hold a recipient's in-app state
// (deferred by quiet hours, then delivered), the delivery is final and wins.
func (l *Log) States(ctx context.Context, id, afterUser, afterChannel string, limit int) ([]State, error) {
	var states, legacy []State
	var sets []deliveredSet
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		iter := l.s.Query(`SELECT user_id, channel, state, reason, detail, updated_at, receipts, receipt_codes FROM delivery_status
			WHERE notification_id = ? AND (user_id, channel) > (?, ?) LIMIT ?`, id, afterUser, afterChannel, limit).WithContext(gctx).Iter()
		for {
			var s State
			var state, reason, detail *string
			var at *time.Time
			var got map[string]time.Time
			var codes map[string]string
			if !iter.Scan(&s.UserID, &s.Channel, &state, &reason, &detail, &at, &got, &codes) {
				break
			}
			s.NotificationID = id
			s.State, s.Reason, s.Detail = deref(state), deref(reason), deref(detail)
			if at != nil {
				s.UpdatedAt = *at
			}
			withReceipts(&s, got, codes)
			states = append(states, s)
		}
		if err := iter.Close(); err != nil {
			return fmt.Errorf("reading states of %s: %w", id, err)
		}
		return nil
	})
	g.Go(func() error {
		// From afterUser itself, whose in-app state may still be ahead of the cursor: one row
		// more than limit, since that one may be behind it.
		iter := l.s.Query(`SELECT user_id, delivered_at FROM inbox_delivered WHERE notification_id = ? AND user_id >= ? LIMIT ?`,
			id, afterUser, limit+1).WithContext(gctx).Iter()
		var user string
		var at time.Time
		for iter.Scan(&user, &at) {
			legacy = append(legacy, State{NotificationID: id, UserID: user, Channel: notify.InApp, State: notify.StateDelivered, UpdatedAt: at})
		}
		if err := iter.Close(); err != nil {
			return fmt.Errorf("reading in-app deliveries of %s: %w", id, err)
		}
		return nil
	})
	g.Go(func() error {
		// The whole partition: a notification's sets hold its in-app recipients, a list's
		// (at most 1,000) or a topic's below the fan-out-on-read threshold.
		iter := l.s.Query(`SELECT users, delivered_at FROM inbox_delivered_sets WHERE notification_id = ?`, id).WithContext(gctx).Iter()
		var set deliveredSet
		for iter.Scan(&set.users, &set.at) {
			sets = append(sets, set)
			set = deliveredSet{}
		}
		if err := iter.Close(); err != nil {
			return fmt.Errorf("reading in-app deliveries of %s: %w", id, err)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return mergeStates(states, deliveredAfter(id, legacy, sets, afterUser, afterChannel, limit), limit), nil
}

// deliveredAfter returns the first limit in-app deliveries after (afterUser, afterChannel) in
// key order, from per-recipient rows and sets, one per recipient (the latest, where a
// repeated chunk or both tables hold it).
func deliveredAfter(id string, rows []State, sets []deliveredSet, afterUser, afterChannel string, limit int) []State {
	latest := map[string]time.Time{}
	add := func(user string, at time.Time) {
		if !after(user, notify.InApp, afterUser, afterChannel) {
			return
		}
		if t, ok := latest[user]; !ok || at.After(t) {
			latest[user] = at
		}
	}
	for _, r := range rows {
		add(r.UserID, r.UpdatedAt)
	}
	for _, s := range sets {
		for _, u := range s.users {
			add(u, s.at)
		}
	}
	users := make([]string, 0, len(latest))
	for u := range latest {
		users = append(users, u)
	}
	slices.Sort(users)
	out := make([]State, 0, min(limit, len(users)))
	for _, u := range users[:min(limit, len(users))] {
		out = append(out, State{NotificationID: id, UserID: u, Channel: notify.InApp, State: notify.StateDelivered, UpdatedAt: latest[u]})
	}
	return out
}

// after reports whether the key (user, channel) sorts after (afterUser, afterChannel), in
// Cassandra's order for text clustering columns (bytewise, as Go compares strings).
func after(user, channel, afterUser, afterChannel string) bool {
	return user > afterUser || (user == afterUser && channel > afterChannel)
}

// mergeStates merges two lists sorted by (user, channel) into the first limit keys, a key in
// both taken from delivered. Each list holds its source's first limit keys after the cursor,
// so every key of the result's range was read from both.
func mergeStates(states, delivered []State, limit int) []State {
	out := make([]State, 0, min(limit, len(states)+len(delivered)))
	i, j := 0, 0
	for len(out) < limit && (i < len(states) || j < len(delivered)) {
		switch {
		case j == len(delivered) || (i < len(states) && after(delivered[j].UserID, delivered[j].Channel, states[i].UserID, states[i].Channel)):
			out = append(out, states[i])
			i++
		default:
			if i < len(states) && states[i].UserID == delivered[j].UserID && states[i].Channel == delivered[j].Channel {
				i++ // the same key: the delivery wins
			}
			out = append(out, delivered[j])
			j++
		}
	}
	return out
}

// withReceipts adds a state's receipts, in time order, and lets the final one set its state: a
// receipt may come before the dispatcher wrote the state it follows (a row with receipts
// alone), and a delivered or failed receipt is what became of a dispatched message.
func withReceipts(s *State, got map[string]time.Time, codes map[string]string) {
	if len(got) == 0 {
		return
	}
	statuses := make([]string, 0, len(got))
	for st, at := range got {
		statuses = append(statuses, st)
		s.Receipts = append(s.Receipts, Receipt{Status: st, At: at.UTC(), Code: codes[st]})
	}
	slices.SortFunc(s.Receipts, func(a, b Receipt) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return strings.Compare(a.Status, b.Status)
	})
	final := receipts.Final(statuses)
	if st := receipts.State(final); st != "" {
		s.State = st
		s.UpdatedAt = later(s.UpdatedAt, got[final].UTC())
		if st == notify.StateFailed {
			s.Detail = "the provider reported it " + final
			if c := codes[final]; c != "" && strings.Contains(c, ".") { // an email's SMTP status: 5.1.1
				s.Detail += " (SMTP status " + c + ")"
			} else if c != "" {
				s.Detail += " (carrier error " + c + ")"
			}
		}
	}
	if s.State == "" {
		s.State = notify.StateDispatched
	}
}

// Receipts returns the receipt statuses recorded for a delivery.
func (l *Log) Receipts(ctx context.Context, notification, user, channel string) ([]string, error) {
	var m map[string]time.Time
	err := l.s.Query(`SELECT receipts FROM delivery_status WHERE notification_id = ? AND user_id = ? AND channel = ?`,
		notification, user, channel).WithContext(ctx).Scan(&m)
	if err != nil && !errors.Is(err, gocql.ErrNotFound) {
		return nil, fmt.Errorf("reading receipts of %s: %w", notification, err)
	}
	out := make([]string, 0, len(m))
	for st := range m {
		out = append(out, st)
	}
	return out, nil
}

// AddReceipt records a receipt's status (and its error code) for a delivery: an addition to
// the row's maps, so a repeat or another order writes the same.
func (l *Log) AddReceipt(ctx context.Context, notification, user, channel, status, code string, at time.Time) error {
	codes := map[string]string{}
	if code != "" {
		codes[status] = code
	}
	err := l.s.Query(`UPDATE delivery_status USING TTL ? SET receipts = receipts + ?, receipt_codes = receipt_codes + ?
		WHERE notification_id = ? AND user_id = ? AND channel = ?`,
		l.ttl, map[string]time.Time{status: at}, codes, notification, user, channel).WithContext(ctx).Idempotent(true).Exec()
	if err != nil {
		return fmt.Errorf("recording a receipt of %s: %w", notification, err)
	}
	return nil
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
