// Package prefs holds a user's notification preferences: channel and per-category opt-outs,
// quiet hours in the user's own time zone, a preferred channel order, and the hard stop.
package prefs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/region/notify"
)

// QuietHours is a daily window in the user's local time, "22:00" to "07:00"; a window whose
// end is before its start crosses midnight.
type QuietHours struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// Preferences is a user's document. Fields left out keep their defaults: every channel on, no
// quiet hours, UTC.
type Preferences struct {
	Channels     map[string]bool            `json:"channels,omitempty"`
	Categories   map[string]map[string]bool `json:"categories,omitempty"`
	QuietHours   *QuietHours                `json:"quiet_hours,omitempty"`
	Timezone     string                     `json:"timezone,omitempty"`
	ChannelOrder []string                   `json:"channel_order,omitempty"`
	HardStop     bool                       `json:"hard_stop"`
}

// Allows reports whether the user takes category on channel, and if not, the reason.
func (p Preferences) Allows(channel, category string) (bool, string) {
	if on, set := p.Channels[channel]; set && !on {
		return false, notify.ReasonChannelOff
	}
	if cat, ok := p.Categories[category]; ok {
		if on, set := cat[channel]; set && !on {
			return false, notify.ReasonCategoryOff
		}
	}
	return true, ""
}

// Location returns the user's time zone (UTC when unset or unknown).
func (p Preferences) Location() *time.Location {
	if p.Timezone == "" {
		return time.UTC
	}
	loc, err := time.LoadLocation(p.Timezone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// ParseClock parses "HH:MM" into minutes after midnight.
func ParseClock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != 5 {
		return 0, fmt.Errorf("%q is not a time of day HH:MM", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// QuietUntil reports whether now falls inside the user's quiet hours and, if so, the instant
// the window ends, computed on the user's local calendar so DST changes move it correctly.
func (p Preferences) QuietUntil(now time.Time) (time.Time, bool) {
	if p.QuietHours == nil {
		return time.Time{}, false
	}
	start, err1 := ParseClock(p.QuietHours.Start)
	end, err2 := ParseClock(p.QuietHours.End)
	if err1 != nil || err2 != nil || start == end {
		return time.Time{}, false
	}
	loc := p.Location()
	local := now.In(loc)
	tod := local.Hour()*60 + local.Minute()
	y, m, d := local.Date()
	endOn := func(dayOffset int) time.Time {
		return time.Date(y, m, d+dayOffset, end/60, end%60, 0, 0, loc)
	}
	if start < end { // same-day window, e.g. 13:00-15:00
		if tod >= start && tod < end {
			return endOn(0), true
		}
		return time.Time{}, false
	}
	// Crosses midnight, e.g. 22:00-07:00.
	switch {
	case tod >= start:
		return endOn(1), true
	case tod < end:
		return endOn(0), true
	}
	return time.Time{}, false
}

// Store reads and writes preferences in the region's Postgres database.
type Store struct{ db *pgxpool.Pool }

// NewStore returns a Store.
func NewStore(db *pgxpool.Pool) *Store { return &Store{db: db} }

// Get returns the user's preferences, or the defaults when none are stored.
func (s *Store) Get(ctx context.Context, appID, userID string) (Preferences, error) {
	var raw []byte
	var hardStop bool
	err := s.db.QueryRow(ctx, `SELECT prefs, hard_stop FROM preferences WHERE app_id = $1 AND user_id = $2`, appID, userID).Scan(&raw, &hardStop)
	if errors.Is(err, pgx.ErrNoRows) {
		return Preferences{}, nil
	}
	if err != nil {
		return Preferences{}, fmt.Errorf("reading preferences: %w", err)
	}
	var p Preferences
	if err := json.Unmarshal(raw, &p); err != nil {
		return Preferences{}, fmt.Errorf("decoding preferences: %w", err)
	}
	p.HardStop = hardStop
	return p, nil
}

// Many returns the stored preferences of users, hard stop included; users with none stored are
// absent from the map (their preferences are the defaults).
func (s *Store) Many(ctx context.Context, appID string, users []string) (map[string]Preferences, error) {
	out := make(map[string]Preferences, len(users))
	rows, err := s.db.Query(ctx, `SELECT user_id, prefs, hard_stop FROM preferences WHERE app_id = $1 AND user_id = ANY($2)`, appID, users)
	if err != nil {
		return nil, fmt.Errorf("loading preferences: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var u string
		var raw []byte
		var p Preferences
		if err := rows.Scan(&u, &raw, &p.HardStop); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, fmt.Errorf("decoding preferences of %s: %w", u, err)
		}
		out[u] = p
	}
	return out, rows.Err()
}

// Put replaces the user's preferences.
func (s *Store) Put(ctx context.Context, appID, userID string, p Preferences) error {
	raw, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = s.db.Exec(ctx, `INSERT INTO preferences (app_id, user_id, prefs, hard_stop) VALUES ($1, $2, $3, $4)
		ON CONFLICT (app_id, user_id) DO UPDATE SET prefs = EXCLUDED.prefs, hard_stop = EXCLUDED.hard_stop, updated_at = now()`,
		appID, userID, raw, p.HardStop)
	if err != nil {
		return fmt.Errorf("storing preferences: %w", err)
	}
	return nil
}

// TurnOff turns category off on channel for the user (an unsubscribe), keeping the rest of
// the stored preferences; it reports whether anything changed. Concurrent changes of the same
// user's preferences are serialised on the row.
func (s *Store) TurnOff(ctx context.Context, appID, userID, category, channel string) (changed bool, err error) {
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		// The row exists from here on, so FOR UPDATE below has something to lock.
		if _, err := tx.Exec(ctx, `INSERT INTO preferences (app_id, user_id, prefs, hard_stop) VALUES ($1, $2, '{}', false) ON CONFLICT (app_id, user_id) DO NOTHING`, appID, userID); err != nil {
			return err
		}
		var raw []byte
		var hardStop bool
		if err := tx.QueryRow(ctx, `SELECT prefs, hard_stop FROM preferences WHERE app_id = $1 AND user_id = $2 FOR UPDATE`, appID, userID).Scan(&raw, &hardStop); err != nil {
			return err
		}
		var p Preferences
		if err := json.Unmarshal(raw, &p); err != nil {
			return fmt.Errorf("decoding preferences: %w", err)
		}
		if on, set := p.Categories[category][channel]; set && !on {
			return nil
		}
		if p.Categories == nil {
			p.Categories = map[string]map[string]bool{}
		}
		if p.Categories[category] == nil {
			p.Categories[category] = map[string]bool{}
		}
		p.Categories[category][channel] = false
		p.HardStop = hardStop
		if err := p.Validate(); err != nil {
			return err
		}
		out, err := json.Marshal(p)
		if err != nil {
			return err
		}
		changed = true
		_, err = tx.Exec(ctx, `UPDATE preferences SET prefs = $3, updated_at = now() WHERE app_id = $1 AND user_id = $2`, appID, userID, out)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("turning %s off on %s: %w", category, channel, err)
	}
	return changed, nil
}

// FieldError names the field of a preferences document that is invalid.
type FieldError struct {
	Field, Msg string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Validate checks every field and names the first bad one.
func (p Preferences) Validate() error {
	known := func(ch string) bool {
		for _, c := range notify.Channels {
			if c == ch {
				return true
			}
		}
		return false
	}
	for ch := range p.Channels {
		if !known(ch) {
			return &FieldError{"channels." + ch, "unknown channel (in_app, push, email, sms)"}
		}
	}
	for cat, chans := range p.Categories {
		if !categoryRE.MatchString(cat) {
			return &FieldError{"categories." + cat, "categories must match " + categoryRE.String()}
		}
		for ch := range chans {
			if !known(ch) {
				return &FieldError{"categories." + cat + "." + ch, "unknown channel (in_app, push, email, sms)"}
			}
		}
	}
	if q := p.QuietHours; q != nil {
		if _, err := ParseClock(q.Start); err != nil {
			return &FieldError{"quiet_hours.start", err.Error()}
		}
		if _, err := ParseClock(q.End); err != nil {
			return &FieldError{"quiet_hours.end", err.Error()}
		}
	}
	if p.Timezone != "" {
		if _, err := time.LoadLocation(p.Timezone); err != nil || p.Timezone == "Local" {
			return &FieldError{"timezone", fmt.Sprintf("%q is not an IANA time zone like Europe/Paris", p.Timezone)}
		}
	}
	seen := map[string]bool{}
	for i, ch := range p.ChannelOrder {
		if !known(ch) {
			return &FieldError{fmt.Sprintf("channel_order[%d]", i), "unknown channel (in_app, push, email, sms)"}
		}
		if seen[ch] {
			return &FieldError{fmt.Sprintf("channel_order[%d]", i), "channel listed twice"}
		}
		seen[ch] = true
	}
	return nil
}

var categoryRE = regexp.MustCompile(`^[a-z0-9_.-]{1,64}$`)
