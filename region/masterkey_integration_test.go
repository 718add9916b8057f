//go:build integration

package region_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/herald-notify/herald/platform/masterkey"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/region/userkeys"
)

// TestRegionStartWrapsKeysInClearAndRefusesAnotherMasterKey plants data keys in clear (as
// every region's database held them before migration 0014) and starts a region: once it is
// ready, no key is in clear and each opens, wrapped under the configured master key, to the same
// bytes. A region then started with another key file under the same id, or with a keyring
// lacking the id the rows are wrapped under, stops at start with an error naming the config
// key, and writes nothing.
func TestRegionStartWrapsKeysInClearAndRefusesAnotherMasterKey(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	c.Roles = []string{region.RoleAPI}
	ctx := testenv.Context(t, 4*time.Minute)
	pg := regiontest.Migrated(t, c)
	const n = 700
	users := make([]string, n)
	ids := make([]uuid.UUID, n)
	data := make([][]byte, n)
	for i := range users {
		users[i], ids[i], data[i] = "legacy-"+uuid.NewString(), uuid.New(), make([]byte, 32)
		if _, err := rand.Read(data[i]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pg.Exec(ctx, `INSERT INTO user_keys (app_id, user_id, key_id, data_key)
		SELECT 'app', u, id, d FROM unnest($1::text[], $2::uuid[], $3::bytea[]) AS t(u, id, d)`, users, ids, data); err != nil {
		t.Fatal(err)
	}

	r := regiontest.Start(t, c)
	var inClear, wrapped int
	if err := pg.QueryRow(ctx, `SELECT count(*) FILTER (WHERE data_key IS NOT NULL), count(*) FILTER (WHERE master_key_id = $1) FROM user_keys`,
		testenv.MasterKeyID).Scan(&inClear, &wrapped); err != nil {
		t.Fatal(err)
	}
	if inClear != 0 || wrapped != n {
		t.Fatalf("after start: %d keys in clear, %d wrapped under %s; want 0 and %d", inClear, wrapped, testenv.MasterKeyID, n)
	}
	strs := make([]string, n)
	for i, id := range ids {
		strs[i] = id.String()
	}
	found, err := userkeys.New(pg, testenv.MasterKeyring(t)).Lookup(ctx, strs)
	if err != nil || len(found) != n {
		t.Fatalf("opened %d of %d (%v)", len(found), n, err)
	}
	for i, id := range strs {
		if !bytes.Equal(found[id], data[i]) {
			t.Fatalf("key %s changed when wrapped at start", id)
		}
	}
	r.Stop()

	other := filepath.Join(t.TempDir(), "other.key")
	if _, err := masterkey.CreateFile(other); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		keys    map[string]string
		current string
		want    error
		naming  string
	}{
		{"another key under the same id", map[string]string{testenv.MasterKeyID: other}, testenv.MasterKeyID, userkeys.ErrWrongMasterKey, "user_keys.master_keys." + testenv.MasterKeyID},
		{"the rows' master key removed", map[string]string{"next": other}, "next", userkeys.ErrMissingMasterKey, `"` + testenv.MasterKeyID + `"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := c
			bad.UserKeys.MasterKeys, bad.UserKeys.Current = tc.keys, tc.current
			if err := bad.Validate(); err != nil {
				t.Fatal(err) // the file itself is a good key: only the database can tell
			}
			done := make(chan error, 1)
			go func() { done <- region.Run(ctx, bad, slog.New(slog.DiscardHandler), "test") }()
			select {
			case err := <-done:
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.naming) {
					t.Fatalf("start: %v; want %v naming %s", err, tc.want, tc.naming)
				}
				t.Logf("refused: %v", err)
			case <-time.After(time.Minute):
				t.Fatal("the region started with a master key that does not open its database's keys")
			}
			var n int
			if err := pg.QueryRow(ctx, `SELECT count(*) FROM user_keys WHERE master_key_id IS DISTINCT FROM $1`, testenv.MasterKeyID).Scan(&n); err != nil || n != 0 {
				t.Fatalf("%d rows rewrapped by the refused region (%v)", n, err)
			}
		})
	}
}
