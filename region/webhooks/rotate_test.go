package webhooks

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/herald-notify/herald/platform/masterkey"
)

var (
	newKey = []byte("new secret of 24 bytes!!")
	oldKey = []byte("old secret of 24 bytes!!")
)

func webhook(t *testing.T, key []byte) *standardwebhooks.Webhook {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(FormatSecret(key))
	require.NoError(t, err)
	return wh
}

// TestSignatureHeaderDuringAndAfterTheOverlap signs at instants around a previous secret's
// expiry: before it (exclusive) the header carries the new secret's signature then the old
// one's, and a receiver holding only the old secret verifies it with the Standard Webhooks
// library; at and after it only the new one, which that receiver refuses.
func TestSignatureHeaderDuringAndAfterTheOverlap(t *testing.T) {
	// Near the real clock: the library checks the timestamp against it (5 minutes either way).
	expires := time.Now().Truncate(time.Second)
	body := []byte(`{"type":"notification.delivered"}`)
	tests := []struct {
		name     string
		previous []byte
		at       time.Time
		sigs     int
	}{
		{"no previous secret", nil, expires.Add(-time.Minute), 1},
		{"no previous secret, a zero expiry", nil, expires, 1},
		{"well inside the overlap", oldKey, expires.Add(-4 * time.Minute), 2},
		{"a second before the expiry", oldKey, expires.Add(-time.Second), 2},
		{"just before the expiry", oldKey, expires.Add(-time.Nanosecond), 2},
		{"at the expiry", oldKey, expires, 1},
		{"just after the expiry", oldKey, expires.Add(time.Nanosecond), 1},
		{"well after the expiry", oldKey, expires.Add(4 * time.Minute), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			until := expires
			if tt.previous == nil {
				until = time.Time{}
			}
			keys := SigningKeys(newKey, tt.previous, until, tt.at)
			require.Len(t, keys, tt.sigs)
			require.Equal(t, newKey, keys[0], "the current secret signs first")
			h, err := Sign(keys, "msg_1", tt.at, body)
			require.NoError(t, err)
			sigs := strings.Split(h.Get("webhook-signature"), " ")
			require.Len(t, sigs, tt.sigs, "header %q", h.Get("webhook-signature"))
			for _, s := range sigs {
				require.True(t, strings.HasPrefix(s, "v1,") && len(s) > len("v1,"), "signature %q", s)
			}
			require.NoError(t, webhook(t, newKey).Verify(body, h), "the new secret always verifies")
			err = webhook(t, oldKey).Verify(body, h)
			if tt.sigs == 2 {
				require.NoError(t, err, "the old secret verifies during the overlap")
				// Each signature is the one a single-secret header would carry.
				alone, _ := Sign([][]byte{oldKey}, "msg_1", tt.at, body)
				require.Equal(t, alone.Get("webhook-signature"), sigs[1])
			} else {
				require.ErrorIs(t, err, standardwebhooks.ErrNoMatchingSignature, "the old secret after the overlap")
			}
			// A secret that is neither verifies nothing, however many signatures there are.
			require.ErrorIs(t, webhook(t, []byte("a third key of 24 bytes!")).Verify(body, h), standardwebhooks.ErrNoMatchingSignature)
		})
	}
}

func TestSignRefusesNoKey(t *testing.T) {
	_, err := Sign(nil, "msg_1", time.Now(), []byte(`{}`))
	require.Error(t, err)
	_, err = Sign([][]byte{newKey, {}}, "msg_1", time.Now(), []byte(`{}`))
	require.Error(t, err, "an empty key signs nothing")
}

// TestHostileSignatureHeadersDoNotVerify: what a receiver holding the old secret must still
// refuse during an overlap, with the header Herald sends as the starting point.
func TestHostileSignatureHeadersDoNotVerify(t *testing.T) {
	at := time.Now()
	body := []byte(`{"type":"notification.delivered"}`)
	h, err := Sign([][]byte{newKey, oldKey}, "msg_1", at, body)
	require.NoError(t, err)
	sigs := strings.Split(h.Get("webhook-signature"), " ")
	tests := []struct {
		name   string
		header string
		body   []byte
	}{
		{"the body changed", h.Get("webhook-signature"), []byte(`{"type":"notification.failed"}`)},
		{"only the new secret's signature", sigs[0], body},
		{"the old signature of another message", func() string {
			o, _ := Sign([][]byte{oldKey}, "msg_2", at, body)
			return sigs[0] + " " + o.Get("webhook-signature")
		}(), body},
		{"the old signature under another version", sigs[0] + " v2," + strings.TrimPrefix(sigs[1], "v1,"), body},
		{"the old signature truncated", sigs[0] + " " + sigs[1][:len(sigs[1])-4], body},
	}
	old := webhook(t, oldKey)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hh := h.Clone()
			hh.Set("webhook-signature", tt.header)
			require.Error(t, old.Verify(tt.body, hh))
		})
	}
}

func TestPreviousExpiryRoundsUpToTheSecond(t *testing.T) {
	base := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	tests := []struct {
		now  time.Time
		keep time.Duration
		want time.Time
	}{
		{base, 24 * time.Hour, base.Add(24 * time.Hour)},
		{base.Add(time.Nanosecond), time.Hour, base.Add(time.Hour + time.Second)},
		{base.Add(999 * time.Millisecond), time.Second, base.Add(2 * time.Second)},
		{base, 7 * 24 * time.Hour, base.Add(7 * 24 * time.Hour)},
	}
	for _, tt := range tests {
		got := PreviousExpiry(tt.now, tt.keep)
		require.Equal(t, tt.want, got, "%s + %s", tt.now, tt.keep)
		require.False(t, got.Sub(tt.now) < tt.keep, "the overlap is never shorter than asked")
	}
}

// TestPreviousSecretIsBoundToItsRowSlotAndExpiry: a wrapped previous secret opens only with
// its own expiry (a later one written over it in the database does not extend the overlap) and
// not as the current secret, nor the current one as a previous secret.
func TestPreviousSecretIsBoundToItsRowSlotAndExpiry(t *testing.T) {
	ring, err := masterkey.NewKeyring("m1", map[string][]byte{"m1": []byte(strings.Repeat("k", masterkey.Size))})
	require.NoError(t, err)
	expires := time.Date(2026, 12, 8, 6, 0, 0, 0, time.UTC)
	prev, id, err := ring.Wrap(oldKey, previousAAD("app", "ep_1", expires))
	require.NoError(t, err)
	got, err := ring.Unwrap(id, prev, previousAAD("app", "ep_1", expires))
	require.NoError(t, err)
	require.Equal(t, oldKey, got)
	for name, other := range map[string][]byte{
		"a later expiry":     previousAAD("app", "ep_1", expires.Add(24*time.Hour)),
		"a second later":     previousAAD("app", "ep_1", expires.Add(time.Second)),
		"the current slot":   aad("app", "ep_1"),
		"another endpoint":   previousAAD("app", "ep_2", expires),
		"another app's":      previousAAD("app2", "ep_1", expires),
		"an ambiguous split": previousAAD("app\x00ep_1", "", expires),
	} {
		_, err := ring.Unwrap(id, prev, other)
		require.ErrorIs(t, err, masterkey.ErrOpen, name)
	}
	cur, _, _ := ring.Wrap(newKey, aad("app", "ep_1"))
	_, err = ring.Unwrap(id, cur, previousAAD("app", "ep_1", expires))
	require.ErrorIs(t, err, masterkey.ErrOpen, "the current secret as a previous one")
}

// TestDelivererSignsWithBothSecretsUntilTheExpiry runs deliveries through the deliverer with an
// injected clock to a receiver that holds only the old secret: one sent a second before the
// previous secret's expiry is accepted, one sent at the expiry is refused (and retried).
func TestDelivererSignsWithBothSecretsUntilTheExpiry(t *testing.T) {
	old := webhook(t, oldKey)
	var accepted, refused atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := old.Verify(body, r.Header); err != nil {
			refused.Add(1)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		accepted.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	expires := time.Now().Truncate(time.Second)
	tests := []struct {
		name   string
		now    time.Time
		status string
	}{
		{"a second before the expiry", expires.Add(-time.Second), "delivered"},
		{"at the expiry", expires, "pending"},
		{"a second after", expires.Add(time.Second), "pending"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			accepted.Store(0)
			refused.Store(0)
			now := func() time.Time { return tt.now }
			p := pending{delivery: delivery{App: "a", Endpoint: "e1", EventID: "msg_1", Type: TypeDelivered, Payload: []byte(`{"type":"notification.delivered"}`)},
				URL: srv.URL, Key: newKey, PreviousKey: oldKey, PreviousUntil: expires, FirstAt: tt.now}
			store := newFakeStore(now, p)
			d := &Deliverer{Region: "r", Store: store, Cfg: DefaultConfig(), Client: NewClient(time.Second, true), Log: discard(), Now: now}
			_, err := d.Pass(context.Background())
			require.NoError(t, err)
			require.Equal(t, tt.status, store.results["msg_1"].Status)
			if tt.status == "delivered" {
				require.Equal(t, int32(1), accepted.Load())
			} else {
				require.Equal(t, int32(1), refused.Load())
				require.Equal(t, http.StatusUnauthorized, store.results["msg_1"].HTTP)
			}
		})
	}
}
