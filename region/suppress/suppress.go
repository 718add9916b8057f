// Package suppress keeps a region's suppression lists: the email addresses and phone numbers
// an app must not send to again, because they bounced for good, complained, or unsubscribed
// from everything. Fan-out reads the list for each chunk of recipients and suppresses their
// deliveries with the list's reason; the dispatcher adds to it when a provider answers a hard
// bounce, or after repeated soft bounces. The list lives in the region's Postgres, beside the
// contacts it is about, and never leaves the region.
package suppress

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/region/notify"
)

// Reasons an address is suppressed, as the delivery's suppressed reason reads.
const (
	Bounced      = "bounced"
	Complained   = "complained"
	Unsubscribed = "unsubscribed"
)

// Entry is one suppressed address.
type Entry struct {
	Channel   string    `json:"channel"`
	Address   string    `json:"address"`
	Reason    string    `json:"reason"`
	Detail    string    `json:"detail,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Normalize returns address as the list keys it: an email address trimmed and lower-cased
// (mailbox providers treat the local part without regard to case, and an address that bounced
// as Ada@Example.com bounces as ada@example.com too); a phone number trimmed.
func Normalize(channel, address string) string {
	address = strings.TrimSpace(address)
	if channel == notify.Email {
		return strings.ToLower(address)
	}
	return address
}

// Store reads and writes the lists in the region's Postgres.
type Store struct {
	db *pgxpool.Pool
	// SoftLimit soft bounces of an address in a row, each within SoftWindow of the first,
	// suppress it as bounced.
	SoftLimit  int
	SoftWindow time.Duration
}

// New returns a Store with the given soft-bounce rule.
func New(db *pgxpool.Pool, softLimit int, softWindow time.Duration) *Store {
	return &Store{db: db, SoftLimit: softLimit, SoftWindow: softWindow}
}

// Suppress puts an address on the list (the first reason stays: a bounced address that is
// later reported as a complaint stays bounced, with its time).
func (s *Store) Suppress(ctx context.Context, app, user, channel, address, reason, detail string) error {
	_, err := s.db.Exec(ctx, `INSERT INTO suppressions (app_id, channel, address, user_id, reason, detail)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (app_id, channel, address) DO NOTHING`,
		app, channel, Normalize(channel, address), user, reason, detail)
	if err != nil {
		return fmt.Errorf("suppressing an address: %w", err)
	}
	return nil
}

// SoftBounce counts a soft bounce of address by notification (the retries of one notification
// count once) and suppresses the address as bounced once SoftLimit notifications soft-bounced
// within SoftWindow of the first; it reports whether the address is now suppressed.
func (s *Store) SoftBounce(ctx context.Context, app, user, channel, address, notification, detail string) (bool, error) {
	addr := Normalize(channel, address)
	var count int
	err := s.db.QueryRow(ctx, `INSERT INTO soft_bounces AS b (app_id, channel, address, user_id, notifications, first_at, last_at)
		VALUES ($1, $2, $3, $4, ARRAY[$5::text], now(), now())
		ON CONFLICT (app_id, channel, address) DO UPDATE SET
			notifications = CASE WHEN b.first_at < now() - $6::interval THEN ARRAY[$5::text]
				WHEN $5::text = ANY(b.notifications) THEN b.notifications
				ELSE (b.notifications || $5::text)[greatest(1, cardinality(b.notifications) - 98):] END,
			first_at = CASE WHEN b.first_at < now() - $6::interval THEN now() ELSE b.first_at END,
			last_at = now(), user_id = excluded.user_id
		RETURNING cardinality(notifications)`, app, channel, addr, user, notification, s.SoftWindow).Scan(&count)
	if err != nil {
		return false, fmt.Errorf("counting a soft bounce: %w", err)
	}
	if s.SoftLimit <= 0 || count < s.SoftLimit {
		return false, nil
	}
	return true, s.Suppress(ctx, app, user, channel, addr, Bounced, fmt.Sprintf("%d soft bounces, the last: %s", count, detail))
}

// Lookup returns the entries among the given addresses (already normalised or not), keyed by
// Key(channel, normalised address).
func (s *Store) Lookup(ctx context.Context, app string, emails, phones []string) (map[string]Entry, error) {
	out := map[string]Entry{}
	if len(emails) == 0 && len(phones) == 0 {
		return out, nil
	}
	em := make([]string, 0, len(emails))
	for _, e := range emails {
		em = append(em, Normalize(notify.Email, e))
	}
	ph := make([]string, 0, len(phones))
	for _, p := range phones {
		ph = append(ph, Normalize(notify.SMS, p))
	}
	rows, err := s.db.Query(ctx, `SELECT channel, address, reason, detail, created_at FROM suppressions
		WHERE app_id = $1 AND ((channel = 'email' AND address = ANY($2)) OR (channel = 'sms' AND address = ANY($3)))`, app, em, ph)
	if err != nil {
		return nil, fmt.Errorf("reading suppressions: %w", err)
	}
	list, err := pgx.CollectRows(rows, scanEntry)
	if err != nil {
		return nil, fmt.Errorf("reading suppressions: %w", err)
	}
	for _, e := range list {
		out[Key(e.Channel, e.Address)] = e
	}
	return out, nil
}

// Reason returns the list's reason for one address, "" when it is not on the list.
func (s *Store) Reason(ctx context.Context, app, channel, address string) (string, error) {
	var reason string
	err := s.db.QueryRow(ctx, `SELECT reason FROM suppressions WHERE app_id = $1 AND channel = $2 AND address = $3`,
		app, channel, Normalize(channel, address)).Scan(&reason)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the suppression list: %w", err)
	}
	return reason, nil
}

// Key is the map key of Lookup.
func Key(channel, address string) string { return channel + "\x00" + address }

// ForUser lists the suppressed addresses of a user: those of the user's current email address
// and phone number, and those recorded when an address of the user was suppressed.
func (s *Store) ForUser(ctx context.Context, app, user string) ([]Entry, error) {
	rows, err := s.db.Query(ctx, `SELECT s.channel, s.address, s.reason, s.detail, s.created_at FROM suppressions s
		WHERE s.app_id = $1 AND (s.user_id = $2 OR EXISTS (SELECT 1 FROM users u WHERE u.app_id = $1 AND u.user_id = $2
			AND ((s.channel = 'email' AND s.address = lower(btrim(u.email))) OR (s.channel = 'sms' AND s.address = btrim(u.phone)))))
		ORDER BY s.channel, s.address`, app, user)
	if err != nil {
		return nil, fmt.Errorf("reading suppressions: %w", err)
	}
	list, err := pgx.CollectRows(rows, scanEntry)
	if err != nil {
		return nil, fmt.Errorf("reading suppressions: %w", err)
	}
	if list == nil {
		list = []Entry{}
	}
	return list, nil
}

// Remove takes the user's suppressed addresses of channel off the list (and forgets their soft
// bounces), so the next send to them is attempted; it returns how many were removed.
func (s *Store) Remove(ctx context.Context, app, user, channel string) (int, error) {
	var n int
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		for _, table := range []string{"suppressions", "soft_bounces"} {
			tag, err := tx.Exec(ctx, `DELETE FROM `+table+` t WHERE t.app_id = $1 AND t.channel = $3 AND (t.user_id = $2
				OR EXISTS (SELECT 1 FROM users u WHERE u.app_id = $1 AND u.user_id = $2
					AND ((t.channel = 'email' AND t.address = lower(btrim(u.email))) OR (t.channel = 'sms' AND t.address = btrim(u.phone)))))`,
				app, user, channel)
			if err != nil {
				return err
			}
			if table == "suppressions" {
				n = int(tag.RowsAffected())
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("removing suppressions: %w", err)
	}
	return n, nil
}

func scanEntry(row pgx.CollectableRow) (Entry, error) {
	var e Entry
	err := row.Scan(&e.Channel, &e.Address, &e.Reason, &e.Detail, &e.CreatedAt)
	e.CreatedAt = e.CreatedAt.UTC()
	return e, err
}
