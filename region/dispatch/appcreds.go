package dispatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/credentials"
)

// CredentialLoader opens an app's own credential of a kind (credentials.Store.Load); it
// returns credentials.ErrNotFound when the app has none.
type CredentialLoader interface {
	Load(ctx context.Context, app, jurisdiction, kind string) (credentials.Loaded, error)
}

// appProviderPrefix starts the provider name of every app's own account ("app-apns",
// "app-fcm", "app-smtp", "app-twilio"); the region's providers may not be named so.
const appProviderPrefix = "app-"

// credentialKinds maps the dispatcher's provider kinds to the credential kinds apps store.
var credentialKinds = map[string]string{KindAPNs: wire.CredentialAPNs, KindFCM: wire.CredentialFCM, KindSMTP: wire.CredentialSMTP, KindSMS: wire.CredentialTwilio}

// AppProviderName is the provider name a send through an app's own account of kind carries
// (in attempts, receipt tokens, metrics and logs).
func AppProviderName(kind string) string { return appProviderPrefix + credentialKinds[kind] }

// IsAppProvider reports whether a provider name is that of apps' own accounts.
func IsAppProvider(name string) bool {
	for _, k := range credentialKinds {
		if name == appProviderPrefix+k {
			return true
		}
	}
	return false
}

// appProvider is an app's own account: a provider built from its credential, named for its
// kind, with the app it serves (for the breaker's log).
type appProvider struct {
	Provider
	app string
}

// appKey names an app's credential of a provider kind.
type appKey struct{ app, kind string }

// appRoute is what the cache holds for an app and kind, replaced whole on each read of the
// store: the route of the app's own account (nil when it has none), the credential's version,
// and when the store was read.
type appRoute struct {
	route   *route
	version int64
	err     *SendError // a stored credential that builds no client: every send fails with it
	checked time.Time
}

type appEntry struct {
	cur  atomic.Pointer[appRoute]
	used atomic.Int64 // unix nanoseconds of the last send
	mu   sync.Mutex   // held while the store is read, so one send reads it for all
}

// appRoutes caches the routes of apps' own accounts. A send reads its entry without a lock;
// once the entry is older than Refresh, one send reads the store again (the others wait for
// it) and the entry is replaced.
type appRoutes struct {
	d       *Dispatcher
	cfg     AppCredentialsConfig
	loader  CredentialLoader
	juris   string
	mu      sync.RWMutex
	entries map[appKey]*appEntry
}

func (a *appRoutes) entry(k appKey) *appEntry {
	a.mu.RLock()
	e := a.entries[k]
	a.mu.RUnlock()
	if e != nil {
		return e // every send but an app's first of a kind: no exclusive lock on the hot path
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	e = a.entries[k]
	if e == nil {
		if len(a.entries) >= a.cfg.MaxCached {
			a.evict()
		}
		e = &appEntry{}
		a.entries[k] = e
	}
	return e
}

// evict drops the least recently used quarter of the entries (a.mu held). A dropped route's
// clients close their idle connections when collected; a send holding one finishes with it.
func (a *appRoutes) evict() {
	type kv struct {
		k    appKey
		used int64
	}
	all := make([]kv, 0, len(a.entries))
	for k, e := range a.entries {
		all = append(all, kv{k, e.used.Load()})
	}
	slices.SortFunc(all, func(x, y kv) int { return int(min(max(x.used-y.used, -1), 1)) })
	for _, x := range all[:max(len(all)/4, 1)] {
		delete(a.entries, x.k)
	}
}

// routeFor returns the route of the task's app for a provider kind: the app's own account
// when it stored a credential of the kind, else the region's (nil when the region has no
// provider of the kind). An error is a *SendError: transient when the credential could not be
// read (nothing is sent with another account meanwhile), permanent when the kind is required
// and the app has none, or its stored credential builds no client.
func (d *Dispatcher) routeFor(ctx context.Context, app, kind string) (*route, *SendError) {
	a := d.apps
	if a == nil || d.routes[kind] == nil {
		return d.routes[kind], nil
	}
	e := a.entry(appKey{app, kind})
	now := d.now()
	e.used.Store(now.UnixNano())
	r := e.cur.Load()
	if r == nil || now.Sub(r.checked) >= a.cfg.Refresh {
		var err *SendError
		if r, err = a.refresh(ctx, e, app, kind); err != nil {
			return nil, err
		}
	}
	switch {
	case r.err != nil:
		return nil, r.err
	case r.route != nil:
		return r.route, nil
	case slices.Contains(a.cfg.Required, credentialKinds[kind]):
		return nil, &SendError{Class: Permanent, Reason: "no_credentials",
			Err: fmt.Errorf("app %s has stored no %s credential, which this region requires", app, credentialKinds[kind])}
	}
	return d.routes[kind], nil
}

// refresh reads the app's credential again, unless another send just did.
func (a *appRoutes) refresh(ctx context.Context, e *appEntry, app, kind string) (*appRoute, *SendError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := a.d.now()
	old := e.cur.Load()
	if old != nil && now.Sub(old.checked) < a.cfg.Refresh {
		return old, nil // another send read it meanwhile
	}
	ck := credentialKinds[kind]
	count := func(result string) { appCredentialLoads.WithLabelValues(a.d.region, ck, result).Inc() }
	l, err := a.loader.Load(ctx, app, a.juris, ck)
	var next *appRoute
	switch {
	case errors.Is(err, credentials.ErrNotFound):
		count("none")
		next = &appRoute{checked: now}
	case err != nil:
		if old != nil {
			// Keep sending with what was read last, and read again a little later.
			count("stale")
			a.d.log.Warn("reading an app's provider credential failed; sending with the one read before", "app", app, "kind", ck, "err", err)
			next = &appRoute{route: old.route, version: old.version, err: old.err, checked: now.Add(-a.cfg.Refresh + min(a.cfg.Refresh, time.Second))}
			e.cur.Store(next)
			return next, nil
		}
		count("error")
		return nil, &SendError{Class: Transient, Reason: "credential_unavailable", Err: fmt.Errorf("reading app %s's %s credential: %w", app, ck, err)}
	case old != nil && old.version == l.Version:
		count("same")
		next = &appRoute{route: old.route, version: old.version, err: old.err, checked: now}
	default:
		rt, berr := a.d.appRoute(app, kind, l.Credential)
		if berr != nil {
			count("unusable")
			a.d.log.Error("an app's stored provider credential builds no client; its sends of the kind fail", "app", app, "kind", ck, "version", l.Version, "err", berr)
			next = &appRoute{version: l.Version, checked: now,
				err: &SendError{Class: Permanent, Reason: "credential_unusable", Err: fmt.Errorf("app %s's %s credential (version %d): %w", app, ck, l.Version, berr)}}
		} else {
			count("found")
			next = &appRoute{route: rt, version: l.Version, checked: now}
		}
	}
	e.cur.Store(next)
	return next, nil
}

// appRoute builds the route of an app's own account of kind from its credential: the region's
// provider of the kind, its account replaced by the app's, behind a breaker of its own and
// with no secondary (the region's other account would send as the region).
func (d *Dispatcher) appRoute(app, kind string, c wire.Credential) (*route, error) {
	if e := c.Validate(); e != nil {
		return nil, e
	}
	if e := d.apps.cfg.Check(c); e != nil {
		return nil, e
	}
	name := AppProviderName(kind)
	var p Provider
	var err error
	switch kind {
	case KindAPNs:
		cfg := d.cfg.Push.APNs
		cfg.Secondary, cfg.TeamID, cfg.KeyID, cfg.Topic, cfg.KeyFile = nil, c.APNs.TeamID, c.APNs.KeyID, c.APNs.Topic, ""
		p, err = newAPNsKey(cfg, []byte(c.APNs.PrivateKey), name, d.deps.MinimalPush)
	case KindFCM:
		cfg := d.cfg.Push.FCM
		cfg.Secondary, cfg.CredentialsFile = nil, ""
		p, err = newFCMAccount(cfg, wire.Encode(&c.FCM.ServiceAccount), c.FCM.ServiceAccount.ProjectID, name, d.deps.MinimalPush)
	case KindSMTP:
		cfg := d.cfg.Email.SMTP
		cfg.Secondary, cfg.From, cfg.Username, cfg.Password = nil, c.SMTP.From, c.SMTP.Username, c.SMTP.Password
		var sp *smtpProvider
		sp, err = newSMTP(cfg, name, d.region, d.deps.UnsubscribeLink)
		if err == nil {
			if cfg.Events == EventsSendGrid {
				sp.receipt = d.deps.EmailReceipt
			}
			if k := c.SMTP.DKIM; k != nil {
				key, kerr := parseDKIMKey([]byte(k.PrivateKey))
				if kerr != nil {
					return nil, fmt.Errorf("dkim.private_key: %w", kerr)
				}
				sp.dkim = dkimSignerOf(k.Domain, k.Selector, key)
			}
		}
		p = sp
	case KindSMS:
		cfg := d.cfg.SMS.Twilio
		cfg.Secondary, cfg.AccountSID, cfg.AuthToken, cfg.From = nil, c.Twilio.AccountSID, c.Twilio.AuthToken, c.Twilio.From
		p = newTwilio(cfg, name, d.deps.StatusCallback)
	default:
		return nil, fmt.Errorf("no provider kind %q", kind)
	}
	if err != nil {
		return nil, err
	}
	ch := channelOf(kind)
	g := newGuarded(&appProvider{Provider: p, app: app}, d.cfg.Breaker, d.region, d.log, func() {
		d.log.Info("an app's provider back: releasing the channel's held retries", "provider", name, "app", app, "channel", ch)
		d.recovered[ch].mark(d.now())
	})
	g.timeout = d.cfg.SendTimeout
	g.sent = d.sent
	return &route{primary: g}, nil
}
