//go:build integration

package credentials_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/masterkey"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/credentials"
	"github.com/herald-notify/herald/region/regiontest"
)

func apnsCredential(t *testing.T, keyID string) wire.Credential {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return wire.Credential{Kind: wire.CredentialAPNs, APNs: &wire.APNsCredential{TeamID: "TEAM123456", KeyID: keyID, Topic: "com.acme.app",
		PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))}}
}

func twilioCredential(token string) wire.Credential {
	return wire.Credential{Kind: wire.CredentialTwilio, Twilio: &wire.TwilioCredential{AccountSID: "AC" + strings.Repeat("ab", 16), AuthToken: token, From: "+15005550006"}}
}

// TestCredentialsAreStoredWrappedRotatedAndOpenedOnlyForTheirAppAndKind runs the store against
// the real Postgres: a credential is kept wrapped (its secret is nowhere in the row in clear),
// a second Put is a rotation with a new version, Load opens it for its own app and kind and
// jurisdiction only, a row moved to another app does not open, and Delete removes it.
func TestCredentialsAreStoredWrappedRotatedAndOpenedOnlyForTheirAppAndKind(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	pg := regiontest.Migrated(t, c)
	ctx := testenv.Context(t, time.Minute)
	store := &credentials.Store{DB: pg, Keys: testenv.MasterKeyring(t)}
	app, other := "app-"+testenv.Suffix(), "other-"+testenv.Suffix()

	first := twilioCredential(strings.Repeat("01", 16))
	v1, created, err := store.Put(ctx, app, "EU", first)
	if err != nil || !created || v1.Version <= 0 || v1.Settings["account_sid"] != first.Twilio.AccountSID || v1.Fingerprint != first.Fingerprint() {
		t.Fatalf("put: %+v created %v, %v", v1, created, err)
	}
	var raw string
	if err := pg.QueryRow(ctx, `SELECT settings::text || encode(secret_wrapped, 'escape') FROM provider_credentials WHERE app_id = $1`, app).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(raw, first.Twilio.AuthToken) {
		t.Fatal("the auth token is stored in clear")
	}

	second := twilioCredential(strings.Repeat("02", 16))
	v2, created, err := store.Put(ctx, app, "EU", second)
	if err != nil || created || v2.Version <= v1.Version || !v2.CreatedAt.Equal(v1.CreatedAt) || v2.Fingerprint == v1.Fingerprint {
		t.Fatalf("rotation: %+v created %v, %v (first %+v)", v2, created, err, v1)
	}
	got, err := store.Load(ctx, app, "EU", wire.CredentialTwilio)
	if err != nil || got.Version != v2.Version || got.Twilio.AuthToken != second.Twilio.AuthToken {
		t.Fatalf("load: %+v, %v", got, err)
	}
	for _, miss := range []struct{ app, j, kind string }{{other, "EU", wire.CredentialTwilio}, {app, "US", wire.CredentialTwilio}, {app, "EU", wire.CredentialAPNs},
		{strings.ToUpper(app), "EU", wire.CredentialTwilio}, {app, "eu", wire.CredentialTwilio}, {app + "\x00", "EU", wire.CredentialTwilio}} {
		if _, err := store.Load(ctx, miss.app, miss.j, miss.kind); !errors.Is(err, credentials.ErrNotFound) && !strings.Contains(fmt.Sprint(err), "invalid byte sequence") {
			t.Fatalf("load %q %q %q: %v, want not found", miss.app, miss.j, miss.kind, err)
		}
	}

	// A wrapped credential copied onto another app's row does not open there: the additional
	// data names the app, the kind and the version.
	if _, _, err := store.Put(ctx, other, "EU", twilioCredential(strings.Repeat("03", 16))); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Exec(ctx, `UPDATE provider_credentials o SET secret_wrapped = a.secret_wrapped, secret_master = a.secret_master, version = a.version
		FROM provider_credentials a WHERE a.app_id = $1 AND a.kind = 'twilio' AND o.app_id = $2 AND o.kind = 'twilio'`, app, other); err != nil {
		t.Fatal(err)
	}
	if got, err := store.Load(ctx, other, "EU", wire.CredentialTwilio); err == nil {
		t.Fatalf("another app's wrapped credential opened: %+v", got)
	}

	list, err := store.List(ctx, app, "EU")
	if err != nil || len(list) != 1 || list[0].Version != v2.Version {
		t.Fatalf("list: %+v, %v", list, err)
	}
	if _, _, err := store.Put(ctx, app, "EU", apnsCredential(t, "KEY1234567")); err != nil {
		t.Fatal(err)
	}
	if list, err = store.List(ctx, app, "EU"); err != nil || len(list) != 2 || list[0].Kind != wire.CredentialAPNs || list[1].Kind != wire.CredentialTwilio {
		t.Fatalf("list: %+v, %v", list, err)
	}
	if err := store.Delete(ctx, app, "EU", wire.CredentialTwilio); err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(ctx, app, "EU", wire.CredentialTwilio); !errors.Is(err, credentials.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	// Stored again after a delete, it has a version no dispatcher has seen.
	v3, created, err := store.Put(ctx, app, "EU", first)
	if err != nil || !created || v3.Version <= v2.Version {
		t.Fatalf("put after delete: %+v %v %v", v3, created, err)
	}
	if _, _, err := store.Put(ctx, app, "EU", wire.Credential{Kind: wire.CredentialTwilio, Twilio: &wire.TwilioCredential{AccountSID: "x"}}); err == nil {
		t.Fatal("an invalid credential was stored")
	}
}

// TestConcurrentRotationsLeaveOneWholeCredential: 20 rotations of one credential at once each
// succeed, and what is stored afterwards is one of them whole (its settings, fingerprint and
// secret agree), with the highest version among those that committed last.
func TestConcurrentRotationsLeaveOneWholeCredential(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	pg := regiontest.Migrated(t, c)
	ctx := testenv.Context(t, time.Minute)
	store := &credentials.Store{DB: pg, Keys: testenv.MasterKeyring(t)}
	app := "app-" + testenv.Suffix()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := store.Put(context.WithoutCancel(ctx), app, "EU", twilioCredential(fmt.Sprintf("%032x", i+1)))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	v, err := store.Get(ctx, app, "EU", wire.CredentialTwilio)
	if err != nil {
		t.Fatal(err)
	}
	got, err := store.Load(ctx, app, "EU", wire.CredentialTwilio)
	if err != nil || got.Version != v.Version || got.Fingerprint() != v.Fingerprint {
		t.Fatalf("stored %+v, opened %+v (%v)", v, got, err)
	}
}

// TestTheSweepRewrapsCredentialsUnderTheCurrentMasterKey: credentials wrapped under an older
// master key are rewrapped under the current one and still open.
func TestTheSweepRewrapsCredentialsUnderTheCurrentMasterKey(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	pg := regiontest.Migrated(t, c)
	ctx := testenv.Context(t, time.Minute)
	k1, k2 := make([]byte, masterkey.Size), make([]byte, masterkey.Size)
	_, _ = rand.Read(k1)
	_, _ = rand.Read(k2)
	old, err := masterkey.NewKeyring("k1", map[string][]byte{"k1": k1})
	if err != nil {
		t.Fatal(err)
	}
	current, err := masterkey.NewKeyring("k2", map[string][]byte{"k1": k1, "k2": k2})
	if err != nil {
		t.Fatal(err)
	}
	app := "app-" + testenv.Suffix()
	if _, _, err := (&credentials.Store{DB: pg, Keys: old}).Put(ctx, app, "EU", apnsCredential(t, "KEY7654321")); err != nil {
		t.Fatal(err)
	}
	store := &credentials.Store{DB: pg, Keys: current}
	counts, err := store.MasterCounts(ctx)
	if err != nil || counts[old.Current()] == 0 {
		t.Fatalf("counts %v, %v", counts, err)
	}
	for {
		n, err := store.RewrapBatch(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	if counts, err = store.MasterCounts(ctx); err != nil || counts[old.Current()] != 0 {
		t.Fatalf("after the sweep: %v, %v", counts, err)
	}
	if got, err := store.Load(ctx, app, "EU", wire.CredentialAPNs); err != nil || got.APNs.KeyID != "KEY7654321" {
		t.Fatalf("load after rewrap: %+v, %v", got, err)
	}
}
