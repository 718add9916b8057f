//go:build integration

package webhooks_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/herald-notify/herald/platform/masterkey"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/region/userkeys"
	"github.com/herald-notify/herald/region/webhooks"
)

// clock is an injected clock both the store and the deliverer read.
type clock struct {
	mu sync.Mutex
	at time.Time
}

func (c *clock) now() time.Time    { c.mu.Lock(); defer c.mu.Unlock(); return c.at }
func (c *clock) set(at time.Time)  { c.mu.Lock(); c.at = at; c.mu.Unlock() }
func newClock(at time.Time) *clock { return &clock{at: at} }

// receiver is an endpoint that holds one secret (as an app that has not deployed the new one)
// and answers 204 to what it verifies, 401 to the rest.
type receiver struct {
	srv               *httptest.Server
	accepted, refused atomic.Int32
	signatures        atomic.Value // the last webhook-signature header
}

func newReceiver(t *testing.T, secret string) *receiver {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.signatures.Store(req.Header.Get("webhook-signature"))
		if err := wh.Verify(body, req.Header); err != nil {
			r.refused.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.accepted.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// pendingDelivery stores a delivery due now for the endpoint (what the consumer would store).
func pendingDelivery(t *testing.T, ctx context.Context, pg *pgxpool.Pool, app, endpoint, region, event string) {
	t.Helper()
	if _, err := pg.Exec(ctx, `INSERT INTO webhook_deliveries (app_id, endpoint_id, event_id, region, event_type, user_id, payload, first_at, next_attempt_at)
		VALUES ($1, $2, $3, $4, 'notification.read', 'ada', '{"type":"notification.read"}', now() - interval '1 minute', now() - interval '1 minute')`,
		app, endpoint, event, region); err != nil {
		t.Fatal(err)
	}
}

func status(t *testing.T, ctx context.Context, pg *pgxpool.Pool, app, event string) (string, int) {
	t.Helper()
	var s string
	var code int
	if err := pg.QueryRow(ctx, `SELECT status, last_status FROM webhook_deliveries WHERE app_id = $1 AND event_id = $2`, app, event).Scan(&s, &code); err != nil {
		t.Fatal(err)
	}
	return s, code
}

// TestRotationKeepsThePreviousSecretVerifiableUntilItsExpiry runs a rotation against the real
// Postgres with an injected clock: a receiver holding only the old secret verifies (Standard
// Webhooks library) what is delivered before the previous secret's expiry, and refuses what is
// delivered at it; the endpoint's reads say whether the previous secret is valid and until
// when; a rotation with no overlap retires it at once; an expiry moved in the database does not
// extend the overlap.
func TestRotationKeepsThePreviousSecretVerifiableUntilItsExpiry(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	pg := regiontest.Migrated(t, c)
	ctx := testenv.Context(t, 2*time.Minute)
	// The receivers check the signing timestamp against the real clock (5 minutes either way):
	// the rotation is made 24 h less a minute ago, so the previous secret expires a minute from now.
	real := time.Now()
	clk := newClock(real.Add(-24*time.Hour + time.Minute))
	store := &webhooks.Store{DB: pg, Keys: testenv.MasterKeyring(t), Now: clk.now}
	app := "app-" + testenv.Suffix()

	ep, first, err := store.Create(ctx, app, "EU", webhooks.Spec{URL: "http://127.0.0.1:1/unused"})
	if err != nil {
		t.Fatal(err)
	}
	if ep.PreviousSecretValid || ep.PreviousSecretExpiresAt != nil {
		t.Fatalf("a new endpoint has a previous secret: %+v", ep)
	}
	old := newReceiver(t, first)
	if _, err := pg.Exec(ctx, `UPDATE webhook_endpoints SET url = $3 WHERE app_id = $1 AND endpoint_id = $2`, app, ep.ID, old.srv.URL); err != nil {
		t.Fatal(err)
	}
	rotatedAt := clk.now()
	ep, second, err := store.Rotate(ctx, app, "EU", ep.ID, 24*time.Hour)
	if err != nil || second == first {
		t.Fatalf("rotate: %v", err)
	}
	expires := webhooks.PreviousExpiry(rotatedAt, 24*time.Hour)
	if !ep.PreviousSecretValid || ep.PreviousSecretExpiresAt == nil || !ep.PreviousSecretExpiresAt.Equal(expires) {
		t.Fatalf("after the rotation: %+v, want the previous secret valid until %s", ep, expires)
	}
	if d := expires.Sub(real); d < 59*time.Second || d > 61*time.Second {
		t.Fatalf("the previous secret expires %s from now", d)
	}

	d := &webhooks.Deliverer{Region: c.Name, Store: store, Cfg: webhooks.DefaultConfig(), Client: webhooks.NewClient(time.Second, true),
		Log: slog.New(slog.DiscardHandler), Now: clk.now}
	tests := []struct {
		name      string
		at        time.Time
		valid     bool
		signed    int // signatures on the message
		delivered bool
	}{
		{"90 s before the expiry", expires.Add(-90 * time.Second), true, 2, true},
		{"a second before the expiry", expires.Add(-time.Second), true, 2, true},
		{"at the expiry", expires, false, 1, false},
		{"a second after the expiry", expires.Add(time.Second), false, 1, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk.set(tt.at)
			got, err := store.Get(ctx, app, "EU", ep.ID)
			if err != nil || got.PreviousSecretValid != tt.valid || (got.PreviousSecretExpiresAt != nil) != tt.valid {
				t.Fatalf("the endpoint at %s: %+v (%v), want previous valid %v", tt.at, got, err, tt.valid)
			}
			list, err := store.List(ctx, app, "EU")
			if err != nil || len(list) != 1 || list[0].PreviousSecretValid != tt.valid {
				t.Fatalf("the list at %s: %+v (%v)", tt.at, list, err)
			}
			event := "msg_rotate_" + string(rune('a'+i))
			pendingDelivery(t, ctx, pg, app, ep.ID, c.Name, event)
			old.accepted.Store(0)
			old.refused.Store(0)
			if n, err := d.Pass(ctx); err != nil || n != 1 {
				t.Fatalf("claimed %d (%v)", n, err)
			}
			sigs := strings.Fields(old.signatures.Load().(string))
			if len(sigs) != tt.signed {
				t.Fatalf("webhook-signature %q: %d signatures, want %d", sigs, len(sigs), tt.signed)
			}
			st, code := status(t, ctx, pg, app, event)
			if tt.delivered {
				if st != "delivered" || old.accepted.Load() != 1 {
					t.Fatalf("the receiver holding the old secret: %s %d (accepted %d)", st, code, old.accepted.Load())
				}
				return
			}
			if st != "pending" || code != http.StatusUnauthorized || old.refused.Load() != 1 {
				t.Fatalf("the receiver holding the old secret after the overlap: %s %d (refused %d)", st, code, old.refused.Load())
			}
			if _, err := pg.Exec(ctx, `DELETE FROM webhook_deliveries WHERE app_id = $1 AND event_id = $2`, app, event); err != nil {
				t.Fatal(err)
			}
		})
	}

	// The new secret verifies what is signed after the overlap.
	clk.set(expires.Add(time.Second))
	fresh := newReceiver(t, second)
	if _, err := pg.Exec(ctx, `UPDATE webhook_endpoints SET url = $3 WHERE app_id = $1 AND endpoint_id = $2`, app, ep.ID, fresh.srv.URL); err != nil {
		t.Fatal(err)
	}
	pendingDelivery(t, ctx, pg, app, ep.ID, c.Name, "msg_fresh")
	if _, err := d.Pass(ctx); err != nil || fresh.accepted.Load() != 1 {
		t.Fatalf("the new secret after the overlap: accepted %d (%v)", fresh.accepted.Load(), err)
	}

	// Hostile: an expiry moved later in the database does not extend the overlap; the previous
	// secret no longer opens, and nothing is signed with it.
	clk.set(real)
	third := rotate(t, ctx, store, app, ep.ID, time.Hour)
	if _, err := pg.Exec(ctx, `UPDATE webhook_endpoints SET previous_secret_expires_at = previous_secret_expires_at + interval '7 days' WHERE app_id = $1 AND endpoint_id = $2`, app, ep.ID); err != nil {
		t.Fatal(err)
	}
	pendingDelivery(t, ctx, pg, app, ep.ID, c.Name, "msg_tampered")
	if _, err := d.Pass(ctx); err == nil || !strings.Contains(err.Error(), "previous secret") || !errors.Is(err, masterkey.ErrOpen) {
		t.Fatalf("a moved expiry: %v, want the previous secret refused", err)
	}
	if st, _ := status(t, ctx, pg, app, "msg_tampered"); st != "pending" {
		t.Fatalf("the delivery after a refused claim: %s", st)
	}

	// A rotation with no overlap retires the secret it replaces at once (the tampered one too).
	ep, _ = rotateAnswer(t, ctx, store, app, ep.ID, 0)
	if ep.PreviousSecretValid || ep.PreviousSecretExpiresAt != nil {
		t.Fatalf("rotated with no overlap: %+v", ep)
	}
	holdsThird := newReceiver(t, third)
	if _, err := pg.Exec(ctx, `UPDATE webhook_endpoints SET url = $3 WHERE app_id = $1 AND endpoint_id = $2`, app, ep.ID, holdsThird.srv.URL); err != nil {
		t.Fatal(err)
	}
	clk.set(time.Now().Add(2 * time.Minute)) // past the lease the refused claim left on the delivery
	if n, err := d.Pass(ctx); err != nil || n != 1 {
		t.Fatalf("claimed %d (%v)", n, err)
	}
	if holdsThird.refused.Load() != 1 || holdsThird.accepted.Load() != 0 {
		t.Fatalf("the secret replaced with no overlap: accepted %d, refused %d", holdsThird.accepted.Load(), holdsThird.refused.Load())
	}
	if sigs := strings.Fields(holdsThird.signatures.Load().(string)); len(sigs) != 1 {
		t.Fatalf("signed %v after a rotation with no overlap", sigs)
	}

	if _, _, err := store.Rotate(ctx, app, "EU", "ep_missing", time.Hour); !errors.Is(err, webhooks.ErrNotFound) {
		t.Fatalf("rotating an unknown endpoint: %v", err)
	}
	if _, _, err := store.Rotate(ctx, app, "US", ep.ID, time.Hour); !errors.Is(err, webhooks.ErrNotFound) {
		t.Fatalf("rotating the endpoint in another jurisdiction: %v", err)
	}
}

func rotate(t *testing.T, ctx context.Context, s *webhooks.Store, app, id string, keep time.Duration) string {
	t.Helper()
	_, secret := rotateAnswer(t, ctx, s, app, id, keep)
	return secret
}

func rotateAnswer(t *testing.T, ctx context.Context, s *webhooks.Store, app, id string, keep time.Duration) (webhooks.Endpoint, string) {
	t.Helper()
	ep, secret, err := s.Rotate(ctx, app, "EU", id, keep)
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	return ep, secret
}

func masterKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, masterkey.Size)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSweepRewrapsWebhookSecretsSoTheOldMasterKeyCanBeRetired: endpoints' secrets, current and
// previous, wrapped under master key k1; once k2 is current the user-keys sweep rewraps them
// all (counted in its result), clears an expired previous secret, and a keyring of k2 alone
// then passes the start check and still signs with both secrets; before the sweep that keyring
// is refused, naming the table.
func TestSweepRewrapsWebhookSecretsSoTheOldMasterKeyCanBeRetired(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	pg := regiontest.Migrated(t, c)
	ctx := testenv.Context(t, 2*time.Minute)
	k1, k2 := masterKey(t), masterKey(t)
	ring := func(current string, ids ...string) *masterkey.Keyring {
		keys := map[string][]byte{}
		for _, id := range ids {
			keys[id] = map[string][]byte{"k1": k1, "k2": k2}[id]
		}
		r, err := masterkey.NewKeyring(current, keys)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	clk := newClock(time.Now())
	before := &webhooks.Store{DB: pg, Keys: ring("k1", "k1"), Now: clk.now}
	app := "app-" + testenv.Suffix()
	rcv := map[string]*receiver{}
	var ids []string
	for i := range 3 {
		ep, secret, err := before.Create(ctx, app, "EU", webhooks.Spec{URL: "http://127.0.0.1:1/unused"})
		if err != nil {
			t.Fatal(err)
		}
		rcv[ep.ID] = newReceiver(t, secret) // holds the first secret only
		if _, err := pg.Exec(ctx, `UPDATE webhook_endpoints SET url = $3 WHERE app_id = $1 AND endpoint_id = $2`, app, ep.ID, rcv[ep.ID].srv.URL); err != nil {
			t.Fatal(err)
		}
		switch i {
		case 1: // in its overlap
			rotate(t, ctx, before, app, ep.ID, time.Hour)
		case 2: // its overlap over by the sweep
			clk.set(time.Now().Add(-2 * time.Hour))
			rotate(t, ctx, before, app, ep.ID, time.Hour)
			clk.set(time.Now())
		}
		ids = append(ids, ep.ID)
	}
	counts, err := before.MasterCounts(ctx)
	if err != nil || counts["k1"] != 4 || len(counts) != 1 {
		t.Fatalf("secrets per master key before: %v (%v), want k1: 3 current + 1 previous (the expired one is not counted)", counts, err)
	}
	var stored int
	if err := pg.QueryRow(ctx, `SELECT count(*) FROM webhook_endpoints WHERE app_id = $1 AND previous_secret_wrapped IS NOT NULL`, app).Scan(&stored); err != nil || stored != 2 {
		t.Fatalf("%d previous secrets stored before the sweep (%v), want 2", stored, err)
	}

	// k2 alone is refused while secrets are wrapped under k1.
	only2 := &webhooks.Store{DB: pg, Keys: ring("k2", "k2"), Now: clk.now}
	lacking := userkeys.New(pg, ring("k2", "k2"))
	lacking.Include("webhook_endpoints", only2)
	if err := lacking.CheckMasters(ctx); !errors.Is(err, userkeys.ErrMissingMasterKey) || !strings.Contains(err.Error(), "webhook_endpoints") {
		t.Fatalf("a keyring without k1 while secrets use it: %v", err)
	}

	// k2 current, k1 still held: the sweep rewraps every secret.
	both := &webhooks.Store{DB: pg, Keys: ring("k2", "k1", "k2"), Now: clk.now}
	keys := userkeys.New(pg, ring("k2", "k1", "k2"))
	keys.Include("webhook_endpoints", both)
	if err := keys.CheckMasters(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := keys.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ts := res.Tables["webhook_endpoints"]
	if ts.Rewrapped != 3 || ts.Rows["k2"] != 4 || len(ts.Rows) != 1 || res.OldSecrets("k2") != 0 {
		t.Fatalf("the sweep: %+v, want 3 endpoints rewrapped, 4 secrets under k2 (the expired previous one cleared)", res)
	}
	if res, err := keys.Sweep(ctx); err != nil || res.Tables["webhook_endpoints"].Rewrapped != 0 {
		t.Fatalf("a second sweep: %+v (%v)", res, err)
	}
	if err := pg.QueryRow(ctx, `SELECT count(*) FROM webhook_endpoints WHERE app_id = $1 AND previous_secret_wrapped IS NOT NULL`, app).Scan(&stored); err != nil || stored != 1 {
		t.Fatalf("%d previous secrets stored after the sweep (%v), want 1 (the expired one deleted)", stored, err)
	}

	// k1 retired: the start check passes, and the secrets open under k2 alone: the endpoint in
	// its overlap still signs with both (its receiver holds the first secret), the others with
	// their current secret only.
	if err := lacking.CheckMasters(ctx); err != nil {
		t.Fatalf("k1 retired after the sweep: %v", err)
	}
	d := &webhooks.Deliverer{Region: c.Name, Store: only2, Cfg: webhooks.DefaultConfig(), Client: webhooks.NewClient(time.Second, true),
		Log: slog.New(slog.DiscardHandler), Now: clk.now}
	for i, id := range ids {
		pendingDelivery(t, ctx, pg, app, id, c.Name, "msg_sweep_"+string(rune('a'+i)))
	}
	if n, err := d.Pass(ctx); err != nil || n != 3 {
		t.Fatalf("delivering under k2 alone: %d (%v)", n, err)
	}
	want := []struct{ accepted, refused int32 }{{1, 0}, {1, 0}, {0, 1}}
	for i, id := range ids {
		if r := rcv[id]; r.accepted.Load() != want[i].accepted || r.refused.Load() != want[i].refused {
			t.Fatalf("endpoint %d: accepted %d refused %d, want %+v", i, r.accepted.Load(), r.refused.Load(), want[i])
		}
	}
}
