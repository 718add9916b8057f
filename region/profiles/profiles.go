// Package profiles loads what fan-out needs to know about a chunk of recipients in a few
// queries, whatever the chunk size: preferences (with the hard stop, read from Postgres on every
// send), erasure marks, and, when the chunk's channels use them, active devices and contact
// points.
package profiles

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/region/erasure"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/prefs"
	"github.com/herald-notify/herald/region/suppress"
)

// Profile is one recipient's delivery profile.
type Profile struct {
	Erased  bool // the user was erased: nothing is sent
	Prefs   prefs.Preferences
	Devices []notify.Device
	Email   string
	Phone   string
	// Locale is the user's stored locale (users.locale, as given), read only when the
	// notification has locale variants to choose from.
	Locale string
	// EmailSuppressed and PhoneSuppressed are the suppression list's reason (bounced,
	// complained, unsubscribed) when the address or number is on it, else empty.
	EmailSuppressed string
	PhoneSuppressed string
}

// PrefsSource returns users' preferences, usually through the preferences cache.
type PrefsSource interface {
	Many(ctx context.Context, app string, users []string) (map[string]prefs.Preferences, error)
}

// Loader reads profiles from the region's Postgres database, preferences through src.
type Loader struct {
	db     *pgxpool.Pool
	src    PrefsSource
	direct bool // src reads Postgres itself, hard stop included
}

// New returns a Loader.
func New(db *pgxpool.Pool, src PrefsSource) *Loader { return &Loader{db: db, src: src} }

// NewDirect returns a Loader that reads preferences, hard stop included, straight from Postgres
// in one query per chunk, past every cache. It is for a large topic's subscribers: each is read
// once per send, so caching them costs a Redis read and write per subscriber and pushes the
// entries of users who do receive one notification after another out of the cache.
func NewDirect(db *pgxpool.Pool) *Loader {
	return &Loader{db: db, src: prefs.NewStore(db), direct: true}
}

// Need says which parts of a profile a chunk uses beyond the preferences and the erasure mark,
// which it always reads: devices serve only push, contact points only email and SMS, the
// locale only a notification with locale variants.
type Need struct {
	Devices  bool
	Contacts bool
	Locale   bool
}

// All is every part of a profile.
var All = Need{Devices: true, Contacts: true}

// NeedFor returns what deciding the given channels takes; no channels means every channel the
// user has, and so every part.
func NeedFor(channels []string) Need {
	if len(channels) == 0 {
		return All
	}
	var n Need
	for _, ch := range channels {
		switch ch {
		case notify.Push:
			n.Devices = true
		case notify.Email, notify.SMS:
			n.Contacts = true
		}
	}
	return n
}

// Load returns a profile for every user (defaults for users with nothing stored), with the
// parts need names: an in-app-only chunk reads neither devices nor contact points. The hard
// stop is read from Postgres itself, outside every cache, on every call.
func (l *Loader) Load(ctx context.Context, appID string, users []string, need Need) (map[string]*Profile, error) {
	out := make(map[string]*Profile, len(users))
	ps, err := l.src.Many(ctx, appID, users)
	if err != nil {
		return nil, err
	}
	for _, u := range users {
		p := ps[u]
		if !l.direct {
			p.HardStop = false // a cache may be behind: read below from Postgres
		}
		out[u] = &Profile{Prefs: p}
	}
	hashes := make([][]byte, len(users))
	byHash := make(map[string]string, len(users))
	for i, u := range users {
		hashes[i] = erasure.Hash(appID, u)
		byHash[string(hashes[i])] = u
	}
	erased, err := l.db.Query(ctx, `SELECT user_hash FROM erased_users WHERE app_id = $1 AND user_hash = ANY($2)`, appID, hashes)
	if err != nil {
		return nil, fmt.Errorf("reading erased users: %w", err)
	}
	for erased.Next() {
		var h []byte
		if err := erased.Scan(&h); err != nil {
			erased.Close()
			return nil, err
		}
		out[byHash[string(h)]].Erased = true
	}
	if err := erased.Err(); err != nil {
		return nil, fmt.Errorf("reading erased users: %w", err)
	}
	if !l.direct {
		if err := l.hardStops(ctx, appID, users, out); err != nil {
			return nil, err
		}
	}

	if need.Devices {
		if err := l.devices(ctx, appID, users, out); err != nil {
			return nil, err
		}
	}
	if need.Contacts || need.Locale {
		if err := l.contacts(ctx, appID, users, need, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// devices reads the users' active devices into out.
func (l *Loader) devices(ctx context.Context, appID string, users []string, out map[string]*Profile) error {
	rows, err := l.db.Query(ctx, `SELECT user_id, device_id, platform, token FROM devices WHERE app_id = $1 AND user_id = ANY($2) AND is_active ORDER BY user_id, device_id`, appID, users)
	if err != nil {
		return fmt.Errorf("loading devices: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var u string
		var d notify.Device
		if err := rows.Scan(&u, &d.DeviceID, &d.Platform, &d.Token); err != nil {
			return err
		}
		out[u].Devices = append(out[u].Devices, d)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("loading devices: %w", err)
	}
	return nil
}

// contacts reads the users' email addresses and phone numbers (need.Contacts) and locales
// (need.Locale) into out, in one query.
func (l *Loader) contacts(ctx context.Context, appID string, users []string, need Need, out map[string]*Profile) error {
	rows, err := l.db.Query(ctx, `SELECT user_id, coalesce(email, ''), coalesce(phone, ''), coalesce(locale, '') FROM users WHERE app_id = $1 AND user_id = ANY($2)`, appID, users)
	if err != nil {
		return fmt.Errorf("loading contacts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var u, email, phone, locale string
		if err := rows.Scan(&u, &email, &phone, &locale); err != nil {
			return fmt.Errorf("loading contacts: %w", err)
		}
		if need.Contacts {
			out[u].Email, out[u].Phone = email, phone
		}
		if need.Locale {
			out[u].Locale = locale
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("loading contacts: %w", err)
	}
	if !need.Contacts {
		return nil
	}
	return l.suppressions(ctx, appID, out)
}

// suppressions marks the contacts on the app's suppression lists.
func (l *Loader) suppressions(ctx context.Context, appID string, out map[string]*Profile) error {
	var emails, phones []string
	for _, p := range out {
		if p.Email != "" {
			emails = append(emails, p.Email)
		}
		if p.Phone != "" {
			phones = append(phones, p.Phone)
		}
	}
	if len(emails) == 0 && len(phones) == 0 {
		return nil
	}
	found, err := suppress.New(l.db, 0, 0).Lookup(ctx, appID, emails, phones)
	if err != nil || len(found) == 0 {
		return err
	}
	for _, p := range out {
		if p.Email != "" {
			p.EmailSuppressed = found[suppress.Key(notify.Email, suppress.Normalize(notify.Email, p.Email))].Reason
		}
		if p.Phone != "" {
			p.PhoneSuppressed = found[suppress.Key(notify.SMS, suppress.Normalize(notify.SMS, p.Phone))].Reason
		}
	}
	return nil
}

// hardStops reads the users' hard stops from Postgres itself into out.
func (l *Loader) hardStops(ctx context.Context, appID string, users []string, out map[string]*Profile) error {
	rows, err := l.db.Query(ctx, `SELECT user_id FROM preferences WHERE app_id = $1 AND user_id = ANY($2) AND hard_stop`, appID, users)
	if err != nil {
		return fmt.Errorf("reading hard stops: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return err
		}
		out[u].Prefs.HardStop = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading hard stops: %w", err)
	}
	return nil
}
