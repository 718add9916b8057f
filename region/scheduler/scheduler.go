// Package scheduler holds events until they are due (send_at, and quiet-hours deferrals) in the
// region's Postgres database, and puts them back on their tier topic when due. Stored
// deferrals survive a restart of every process, Redis included.
package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/herald-notify/herald/platform/kafka"
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

// Producer hands records durably to Kafka.
type Producer interface {
	Send(ctx context.Context, msgs ...kafka.Message) error
}

// Poller fires due events.
type Poller struct {
	Store    *Store
	Producer Producer
	Topic    func(tier string) string
	Interval time.Duration
	Batch    int
	// Keys seal the events put back for their recipients (nil: plain records, unit tests).
	Keys notify.Sealer
	Log  *slog.Logger
}

// Run fires due events until ctx ends.
func (p *Poller) Run(ctx context.Context) error {
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	for {
		for {
			n, err := p.FireDue(ctx)
			if err != nil {
				p.Log.Warn("scheduler: firing due events failed; will retry", "err", err)
				break
			}
			if n < p.Batch {
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

// FireDue puts up to Batch due events back on their tier topics and deletes them, in one
// transaction: rows locked with SKIP LOCKED, so several schedulers share the work, and deleted
// only after Kafka acknowledged, so a crash re-fires rather than loses.
func (p *Poller) FireDue(ctx context.Context) (int, error) {
	var fired int
	err := pgx.BeginFunc(ctx, p.Store.db, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, tier, event FROM scheduled_sends WHERE due_at <= now()
			ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED`, p.Batch)
		if err != nil {
			return err
		}
		var ids []int64
		var msgs []kafka.Message
		tiers := map[string]int{}
		for rows.Next() {
			var id int64
			var tier string
			var raw []byte
			if err := rows.Scan(&id, &tier, &raw); err != nil {
				rows.Close()
				return err
			}
			var e notify.Event
			if err := json.Unmarshal(raw, &e); err != nil {
				rows.Close()
				return fmt.Errorf("decoding scheduled event %d: %w", id, err)
			}
			e.Deferred = true
			m, _, err := notify.EventMessage(ctx, p.Keys, p.Topic(tier), e)
			ids = append(ids, id)
			if notify.IsErased(err) {
				// Every recipient was erased since: the row goes, nothing is produced.
				notify.DroppedErased("scheduler", 1)
				continue
			}
			if err != nil {
				rows.Close()
				return err
			}
			msgs = append(msgs, m)
			tiers[tier]++
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		// msgs is empty when every due event's recipients were erased (Send does nothing).
		if err := p.Producer.Send(ctx, msgs...); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM scheduled_sends WHERE id = ANY($1)`, ids); err != nil {
			return err
		}
		fired = len(ids)
		for tier, n := range tiers {
			firedTotal.WithLabelValues(p.Store.region, tier).Add(float64(n))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("firing scheduled events: %w", err)
	}
	var backlog int64
	if err := p.Store.db.QueryRow(ctx, `SELECT count(*) FROM scheduled_sends WHERE due_at <= now()`).Scan(&backlog); err == nil {
		pendingGauge.WithLabelValues(p.Store.region).Set(float64(backlog))
	}
	return fired, nil
}
