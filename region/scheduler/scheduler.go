// Package scheduler holds events until they are due (send_at, and quiet-hours deferrals) in the
// region's Postgres database, and puts them back on their tier topic when due. Stored
// deferrals survive a restart of every process, Redis included.
package scheduler

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/region/deadletter"
	"github.com/herald-notify/herald/region/notify"
)

var (
	scheduledTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_scheduler_scheduled_total", Help: "Events stored for later, by reason.",
	}, []string{"region", "reason"})
	firedTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_scheduler_fired_total", Help: "Stored events put back on their tier topic, by tier.",
	}, []string{"region", "tier"})
	pendingGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_scheduler_due_backlog", Help: "Stored events already due and not yet fired.",
	}, []string{"region"})
)

// Store keeps scheduled events.
type Store struct {
	db     *pgxpool.Pool
	region string
}

// New returns a Store.
func New(db *pgxpool.Pool, region string) *Store { return &Store{db: db, region: region} }

// Schedule stores e until due.
func (s *Store) Schedule(ctx context.Context, due time.Time, e notify.Event, reason string) error {
	raw, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encoding scheduled event: %w", err)
	}
	if _, err := s.db.Exec(ctx, `INSERT INTO scheduled_sends (app_id, notification_id, tier, due_at, event, reason) VALUES ($1, $2, $3, $4, $5, $6)`,
		e.AppID, e.ID, e.Tier, due, raw, reason); err != nil {
		return fmt.Errorf("scheduling %s: %w", e.ID, err)
	}
	scheduledTotal.WithLabelValues(s.region, reason).Inc()
	return nil
}

// ReasonOutbox is the reason of an accepted event kept for Kafka (Store.Keep).
const ReasonOutbox = "outbox"

// OutboxTakeover is how long past due an outbox row of another region waits before this
// region's scheduler fires it: the region that accepted it fires its own rows (a late
// acknowledgement of the first produce is then a repeat its dedup keys drop), and one that is
// still overdue after this is down.
const OutboxTakeover = 30 * time.Second

// Keep stores an accepted event that Kafka did not acknowledge in time, due at due: the
// scheduler puts it on its tier topic then (not as a deferral: fan-out still honours send_at
// and quiet hours).
func (s *Store) Keep(ctx context.Context, e notify.Event, due time.Time) error {
	raw, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encoding kept event: %w", err)
	}
	if _, err := s.db.Exec(ctx, `INSERT INTO scheduled_sends (app_id, notification_id, tier, due_at, event, reason, region) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		e.AppID, e.ID, e.Tier, due, raw, ReasonOutbox, s.region); err != nil {
		return fmt.Errorf("keeping %s in the outbox: %w", e.ID, err)
	}
	scheduledTotal.WithLabelValues(s.region, ReasonOutbox).Inc()
	return nil
}

// Forget deletes the outbox row of notification id, once Kafka acknowledged the event after all.
func (s *Store) Forget(ctx context.Context, id string) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM scheduled_sends WHERE notification_id = $1 AND reason = $2`, id, ReasonOutbox); err != nil {
		return fmt.Errorf("forgetting %s in the outbox: %w", id, err)
	}
	return nil
}

// Hasten makes the outbox row of notification id due now: the first produce failed, so no late
// acknowledgement is coming.
func (s *Store) Hasten(ctx context.Context, id string) error {
	if _, err := s.db.Exec(ctx, `UPDATE scheduled_sends SET due_at = least(due_at, now()) WHERE notification_id = $1 AND reason = $2`, id, ReasonOutbox); err != nil {
		return fmt.Errorf("hastening %s in the outbox: %w", id, err)
	}
	return nil
}

// FireKey identifies one firing of a deferred event: its notification, its recipients (sorted)
// or topic, the channels it is narrowed to and its due time. Two copies of one scheduled row
// have the same key; the quiet-hours re-entries of one notification for different users, or
// a re-entry and the send_at firing it came from, do not.
func FireKey(e notify.Event) string {
	users := slices.Clone(e.Recipients)
	slices.Sort(users)
	chs := slices.Clone(e.OnlyChannels)
	slices.Sort(chs)
	due := ""
	if e.SendAt != nil {
		due = e.SendAt.UTC().Format(time.RFC3339Nano)
	}
	// Every string and list length-prefixed: no two different events write the same bytes.
	h := sha256.New()
	for _, part := range [][]string{{e.AppID, e.ID, e.Topic, due}, users, chs} {
		fmt.Fprintf(h, "%d;", len(part))
		for _, s := range part {
			fmt.Fprintf(h, "%d:%s", len(s), s)
		}
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// ClaimFire records that the Store's region fires the deferred event e, unless a region of
// the jurisdiction claimed the same firing (FireKey) first, and returns the region that fires
// it: the Store's, or the first claimer's (then e is a second copy, to drop).
func (s *Store) ClaimFire(ctx context.Context, e notify.Event) (string, error) {
	key := FireKey(e)
	for range 3 {
		var owner string
		// The insert's row is not visible to the statement's own SELECT, nor is one another
		// transaction commits while the insert waits on it: then neither half returns a row
		// and the next try reads it.
		err := s.db.QueryRow(ctx, `WITH ins AS (
				INSERT INTO scheduled_fires (fire_key, notification_id, region) VALUES ($1, $2, $3)
				ON CONFLICT (fire_key) DO NOTHING RETURNING region)
			SELECT region FROM ins UNION ALL SELECT region FROM scheduled_fires WHERE fire_key = $1 LIMIT 1`,
			key, e.ID, s.region).Scan(&owner)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("claiming the firing of %s: %w", e.ID, err)
		}
		return owner, nil
	}
	return "", fmt.Errorf("claiming the firing of %s: no claim found after inserting", e.ID)
}

// fireRetention is how long a firing's claim is kept: far longer than any redelivery.
const fireRetention = 7 * 24 * time.Hour

// ForgetFires deletes the claims older than fireRetention and returns how many went.
func (s *Store) ForgetFires(ctx context.Context) (int64, error) {
	tag, err := s.db.Exec(ctx, `DELETE FROM scheduled_fires WHERE fired_at < now() - make_interval(secs => $1)`, fireRetention.Seconds())
	if err != nil {
		return 0, fmt.Errorf("forgetting old fire claims: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Producer hands records durably to Kafka.
type Producer interface {
	Send(ctx context.Context, msgs ...kafka.Message) error
}

// Poller fires due events.
type Poller struct {
	Store    *Store
	Producer Producer
	Topic    func(tier string) string
	// Cfg is the scheduler's section of the region's config.
	Cfg Config
	// Keys seal the events put back for their recipients (nil: plain records, unit tests).
	Keys notify.Sealer
	Log  *slog.Logger
	// DeadLetters takes the due events that can never be fired (a row that does not decode, an
	// unknown tier, a record Kafka refuses) and those that failed transiently past
	// Cfg.FailureRetry.
	DeadLetters *deadletter.Writer

	mu      sync.Mutex
	failing map[int64]*rowFailure // rows that failed transiently, by id
}

// rowFailure is a due row's transient failures so far.
type rowFailure struct {
	first, next time.Time
	attempts    int
}

// Run fires due events until ctx ends.
func (p *Poller) Run(ctx context.Context) error {
	t := time.NewTicker(p.Cfg.Interval)
	defer t.Stop()
	var forgot time.Time
	for {
		if time.Since(forgot) >= time.Hour {
			forgot = time.Now()
			if _, err := p.Store.ForgetFires(ctx); err != nil {
				p.Log.Warn("scheduler: forgetting old fire claims failed; will retry in a minute", "err", err)
				forgot = forgot.Add(time.Minute - time.Hour)
			}
		}
		for {
			n, err := p.FireDue(ctx)
			if err != nil {
				p.Log.Warn("scheduler: firing due events failed; will retry", "err", err)
				break
			}
			if n < p.Cfg.Batch {
				break // caught up
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// claimDue locks up to Batch due rows, tier by tier in priority order (transactional first):
// a marketing backlog due at once never holds back a due one-time code, in the batch or in
// Kafka's acknowledgement of it. Rows of a tier Herald does not know come last (they are
// dead-lettered). Outbox rows of another region wait until they are OutboxTakeover overdue.
func (p *Poller) claimDue(ctx context.Context, tx pgx.Tx) ([]*due, error) {
	const q = `SELECT id, tier, due_at, app_id, event, reason FROM scheduled_sends WHERE due_at <= now()
		AND (reason <> $2 OR region IS NULL OR region = $3 OR due_at <= now() - make_interval(secs => $4))
		AND %s ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED`
	var claimed []*due
	for i := 0; i <= len(notify.Tiers) && len(claimed) < p.Cfg.Batch; i++ {
		where, arg := "tier = $5", any(nil)
		if i < len(notify.Tiers) {
			arg = notify.Tiers[i]
		} else {
			where, arg = "tier <> ALL($5)", notify.Tiers
		}
		rows, err := tx.Query(ctx, fmt.Sprintf(q, where), p.Cfg.Batch-len(claimed), ReasonOutbox, p.Store.region, OutboxTakeover.Seconds(), arg)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			d := &due{}
			if err := rows.Scan(&d.id, &d.tier, &d.dueAt, &d.app, &d.raw, &d.reason); err != nil {
				rows.Close()
				return nil, err
			}
			claimed = append(claimed, d)
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return claimed, nil
}

// due is one claimed row.
type due struct {
	id     int64
	tier   string
	dueAt  time.Time
	app    string
	reason string
	raw    []byte
	msg    kafka.Message
	failed error // set: to dead-letter
}

// FireDue puts up to Batch due events back on their tier topics and deletes them, in one
// transaction: rows locked with SKIP LOCKED, so several schedulers share the work, and deleted
// only after Kafka acknowledged, so a crash re-fires rather than loses. A row that can never
// be fired (deadletter.Classify: permanent) is dead-lettered and deleted in the same
// transaction; one that fails transiently stays, and is tried again at the next poll after
// its backoff, until Retry is spent and it is dead-lettered too. A failure of the whole batch
// (Kafka or Postgres down) is not a row's: the batch is tried again at the next poll. It
// returns how many rows it took off the table.
func (p *Poller) FireDue(ctx context.Context) (int, error) {
	var fired int
	now := time.Now()
	err := pgx.BeginFunc(ctx, p.Store.db, func(tx pgx.Tx) error {
		claimed, err := p.claimDue(ctx, tx)
		if err != nil {
			return err
		}
		var done []int64 // rows to delete: fired, dropped as erased, or dead-lettered
		var send, dead []*due
		tiers := map[string]int{}
		for _, d := range claimed {
			if !p.mayTry(d.id, now) {
				continue // backing off after a transient failure
			}
			erased, err := p.encode(ctx, d)
			switch {
			case erased:
				// Every recipient was erased since: the row goes, nothing is produced.
				notify.DroppedErased("scheduler", 1)
				done = append(done, d.id)
			case err == nil:
				send = append(send, d)
			default:
				if d.failed = p.verdict(d, err, now); d.failed != nil {
					dead = append(dead, d)
				} // else transient: stays for the next poll
			}
		}
		// The batch first: when it fails as a whole, nothing was dead-lettered either.
		if err := p.send(ctx, send); err != nil {
			return err
		}
		for _, d := range send {
			if d.failed != nil {
				dead = append(dead, d)
				continue
			}
			done = append(done, d.id)
			tiers[d.tier]++
		}
		for _, d := range dead {
			if err := p.deadLetter(ctx, d); err != nil {
				return err
			}
			done = append(done, d.id)
		}
		if len(done) == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `DELETE FROM scheduled_sends WHERE id = ANY($1)`, done); err != nil {
			return err
		}
		fired = len(done)
		for tier, n := range tiers {
			firedTotal.WithLabelValues(p.Store.region, tier).Add(float64(n))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("firing scheduled events: %w", err)
	}
	p.forget(now)
	var backlog int64
	if err := p.Store.db.QueryRow(ctx, `SELECT count(*) FROM scheduled_sends WHERE due_at <= now()`).Scan(&backlog); err == nil {
		pendingGauge.WithLabelValues(p.Store.region).Set(float64(backlog))
	}
	return fired, nil
}

// encode decodes a row, checks it, and seals its record for the tier topic. erased: every
// recipient was erased.
func (p *Poller) encode(ctx context.Context, d *due) (erased bool, err error) {
	var e notify.Event
	if err := json.Unmarshal(d.raw, &e); err != nil {
		return false, deadletter.MarkPermanent(fmt.Errorf("decoding scheduled event %d: %w", d.id, err), deadletter.ReasonUndecodable)
	}
	if !slices.Contains(notify.Tiers, d.tier) {
		return false, deadletter.MarkPermanent(fmt.Errorf("scheduled event %d: unknown tier %q", d.id, d.tier), deadletter.ReasonInvalid)
	}
	if e.ID == "" || e.AppID == "" {
		return false, deadletter.MarkPermanent(fmt.Errorf("scheduled event %d: no id or app", d.id), deadletter.ReasonInvalid)
	}
	// A deferral's send_at or quiet hours were honoured; a kept event has not met fan-out yet.
	e.Deferred = d.reason != ReasonOutbox
	m, _, err := notify.EventMessage(ctx, p.Keys, p.Topic(d.tier), e)
	if notify.IsErased(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	d.msg = m
	return false, nil
}

// verdict returns the error to dead-letter d with: err when permanent or past Retry, nil when
// d waits for its next try.
func (p *Poller) verdict(d *due, err error, now time.Time) error {
	if class, _ := deadletter.Classify(err); class == deadletter.Permanent {
		return err
	}
	pol := p.Cfg.FailureRetry.WithDefaults()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failing == nil {
		p.failing = map[int64]*rowFailure{}
	}
	f := p.failing[d.id]
	if f == nil {
		f = &rowFailure{first: now}
		p.failing[d.id] = f
	}
	f.attempts++
	if f.attempts >= pol.MaxAttempts || now.Sub(f.first) >= pol.MaxElapsed {
		delete(p.failing, d.id)
		return err
	}
	wait := pol.InitialBackoff << min(f.attempts-1, 20)
	wait = min(wait, pol.MaxBackoff)
	wait += time.Duration(rand.Int64N(int64(wait)/2 + 1))
	f.next = now.Add(wait)
	p.Log.Warn("scheduler: due event failed; retrying", "row", d.id, "attempt", f.attempts, "err", err, "backoff", wait)
	return nil
}

// mayTry reports whether row id is not backing off.
func (p *Poller) mayTry(id int64, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.failing[id]
	return f == nil || !now.Before(f.next)
}

// forget drops the failures of rows not seen failing for a long while (fired by another
// scheduler, or erased).
func (p *Poller) forget(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, f := range p.failing {
		if now.Sub(f.next) > time.Hour {
			delete(p.failing, id)
		}
	}
}

// send produces the rows' records. When the batch fails, each is sent alone to tell a record
// Kafka refuses (too large: permanent, its failed set, to be dead-lettered) from Kafka being
// unavailable (an error: the whole batch is tried again at the next poll, however long that
// lasts, since it is no row's fault).
func (p *Poller) send(ctx context.Context, rows []*due) error {
	if len(rows) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(rows))
	for i, d := range rows {
		msgs[i] = d.msg
	}
	err := p.Producer.Send(ctx, msgs...)
	if err == nil {
		return nil
	}
	if class, _ := deadletter.Classify(err); class != deadletter.Permanent && len(rows) == 1 {
		return err
	}
	for _, d := range rows {
		err := p.Producer.Send(ctx, d.msg)
		if err == nil {
			continue
		}
		if class, _ := deadletter.Classify(err); class != deadletter.Permanent {
			return err
		}
		d.failed = err
	}
	return nil
}

// deadLetter puts d on the scheduler's dead-letter topic. Its record is the row's event with
// the recipients taken out and sealed for them, as on the tier topic: replayed, it is fired as
// it was due. A row whose recipients cannot be read is dead-lettered without its record (the
// error and origin still say which row it was).
func (p *Poller) deadLetter(ctx context.Context, d *due) error {
	if p.DeadLetters == nil {
		return fmt.Errorf("scheduled event %d: %w (no dead-letter writer)", d.id, d.failed)
	}
	l := deadletter.New(deadletter.StageScheduler, d.failed, 1, time.Now())
	l.Origin = deadletter.Origin{Topic: p.Topic(d.tier), Partition: -1, Offset: d.id, Time: d.dueAt}
	key, value, err := p.sealRow(ctx, d)
	switch {
	case notify.IsErased(err):
		notify.DroppedErased("scheduler", 1)
		return nil
	case err != nil:
		p.Log.Error("scheduler: dead-lettering a row without its record", "row", d.id, "err", err)
	default:
		l.Key, l.Value = []byte(key), value
	}
	return p.DeadLetters.Put(ctx, l)
}

// sealRow is the row's event as the tier topic's record: deferred, its recipients taken out of
// the content and sealed for.
func (p *Poller) sealRow(ctx context.Context, d *due) (key string, value []byte, err error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(d.raw, &obj); err != nil {
		return "", nil, fmt.Errorf("event is not an object: %w", err)
	}
	var users []string
	if r, ok := obj["recipients"]; ok {
		if err := json.Unmarshal(r, &users); err != nil {
			return "", nil, fmt.Errorf("recipients unreadable: %w", err)
		}
	}
	delete(obj, "recipients")
	obj["deferred"] = json.RawMessage("true")
	content, err := json.Marshal(obj)
	if err != nil {
		return "", nil, err
	}
	if p.Keys == nil || len(users) == 0 {
		return strconv.FormatInt(d.id, 10), content, nil // a topic send names no one
	}
	keys, err := p.Keys.For(ctx, d.app, users)
	if err != nil {
		return "", nil, err
	}
	live := keys[:0]
	for _, k := range keys {
		if k.ID != "" {
			live = append(live, k)
		}
	}
	if len(live) == 0 {
		return "", nil, notify.ErrErased
	}
	value, err = envelope.Seal(content, live)
	if err != nil {
		return "", nil, err
	}
	if len(live) == 1 {
		return live[0].ID, value, nil
	}
	return strconv.FormatInt(d.id, 10), value, nil
}
