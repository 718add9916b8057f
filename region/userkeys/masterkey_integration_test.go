//go:build integration

package userkeys_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/platform/masterkey"
	"github.com/herald-notify/herald/platform/migrate"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/region/schema"
	"github.com/herald-notify/herald/region/userkeys"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, masterkey.Size)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func keyring(t *testing.T, current string, keys map[string][]byte) *masterkey.Keyring {
	t.Helper()
	r, err := masterkey.NewKeyring(current, keys)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// rowsHold reports the first row of user_keys whose stored bytes, or text form, hold one of
// the data keys (raw or in hex).
func rowsHold(t *testing.T, pg *pgxpool.Pool, data [][]byte) string {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	rows, err := pg.Query(ctx, `SELECT u::text, coalesce(data_key, ''), coalesce(wrapped_key, '') FROM user_keys u`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var text string
		var clear, wrapped []byte
		if err := rows.Scan(&text, &clear, &wrapped); err != nil {
			t.Fatal(err)
		}
		for _, d := range data {
			if bytes.Contains(clear, d) || bytes.Contains(wrapped, d) || strings.Contains(text, hex.EncodeToString(d)) {
				return text
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ""
}

// TestDataKeysAtRestAreWrappedUnderTheMasterKeyAndRotate creates keys under master key k1 and
// finds none of their bytes in Postgres; a keyring holding another key by the same id cannot
// open them (a clear error, never taken for an erasure); a wrapped key copied to another row
// does not open there; rotating to k2 opens k1's rows meanwhile and rewraps all of them, after
// which a keyring without k1 opens everything and one without k2 refuses to start.
func TestDataKeysAtRestAreWrappedUnderTheMasterKeyAndRotate(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	ctx := testenv.Context(t, 3*time.Minute)
	start := time.Now()
	pg := regiontest.Migrated(t, c)
	t.Logf("migrated in %v", time.Since(start))
	k1, k2 := newKey(t), newKey(t)
	r1 := keyring(t, "k1", map[string][]byte{"k1": k1})

	keys := userkeys.New(pg, r1)
	if err := keys.CheckMasters(ctx); err != nil {
		t.Fatal(err)
	}
	users := make([]string, 1200) // more than two sweep batches
	for i := range users {
		users[i] = fmt.Sprintf("user-%04d", i)
	}
	got, err := keys.For(ctx, "app", users)
	if err != nil {
		t.Fatal(err)
	}
	data := make([][]byte, len(got))
	ids := make([]string, len(got))
	for i, k := range got {
		data[i], ids[i] = k.Data, k.ID
	}
	if row := rowsHold(t, pg, data); row != "" {
		t.Fatalf("a user_keys row holds a data key: %s", row)
	}
	var inClear, underK1 int
	if err := pg.QueryRow(ctx, `SELECT count(*) FILTER (WHERE data_key IS NOT NULL), count(*) FILTER (WHERE master_key_id = 'k1') FROM user_keys`).Scan(&inClear, &underK1); err != nil {
		t.Fatal(err)
	}
	if inClear != 0 || underK1 != len(users) {
		t.Fatalf("%d rows in clear, %d under k1; want 0 and %d", inClear, underK1, len(users))
	}
	// Another process reads them back through the master key.
	found, err := userkeys.New(pg, r1).Lookup(ctx, ids)
	if err != nil || len(found) != len(ids) || !bytes.Equal(found[ids[7]], data[7]) {
		t.Fatalf("looked up %d of %d keys (%v)", len(found), len(ids), err)
	}

	// A region given another key under the same id: refused at start, and every read is an
	// error naming the master key, never an erasure, never a panic.
	wrong := userkeys.New(pg, keyring(t, "k1", map[string][]byte{"k1": newKey(t)}))
	if err := wrong.CheckMasters(ctx); !errors.Is(err, userkeys.ErrWrongMasterKey) || !strings.Contains(err.Error(), "user_keys.master_keys.k1") {
		t.Fatalf("start with the wrong master key: %v; want ErrWrongMasterKey naming user_keys.master_keys.k1", err)
	}
	if k, err := wrong.Lookup(ctx, ids[:1]); !errors.Is(err, masterkey.ErrOpen) || len(k) != 0 {
		t.Fatalf("lookup under the wrong master key: %d keys, %v; want masterkey.ErrOpen", len(k), err)
	}
	if _, err := wrong.For(ctx, "app", users[:1]); !errors.Is(err, masterkey.ErrOpen) {
		t.Fatalf("For under the wrong master key: %v; want masterkey.ErrOpen", err)
	}
	record, err := envelope.Seal([]byte(`{"title":"hi"}`), got[:1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.Open(ctx, record); !errors.Is(err, envelope.ErrUnavailable) || errors.Is(err, envelope.ErrErased) {
		t.Fatalf("opening a record under the wrong master key: %v; want ErrUnavailable (retried), not ErrErased", err)
	}
	if o, err := keys.Open(ctx, record); err != nil || string(o.Content) != `{"title":"hi"}` {
		t.Fatalf("opening the record under the right master key: %v", err)
	}

	// A wrapped key copied into another row does not open there.
	pair, err := keys.For(ctx, "copy-app", []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Exec(ctx, `UPDATE user_keys SET wrapped_key = (SELECT wrapped_key FROM user_keys WHERE app_id = 'copy-app' AND user_id = 'a')
		WHERE app_id = 'copy-app' AND user_id = 'b'`); err != nil {
		t.Fatal(err)
	}
	if k, err := userkeys.New(pg, r1).Lookup(ctx, []string{pair[1].ID}); !errors.Is(err, masterkey.ErrOpen) || len(k) != 0 {
		t.Fatalf("a wrapped key moved to another row: %d keys, %v; want masterkey.ErrOpen", len(k), err)
	}
	if _, err := pg.Exec(ctx, `DELETE FROM user_keys WHERE app_id = 'copy-app'`); err != nil {
		t.Fatal(err)
	}

	// Rotation: k2 joins the keyring and becomes current. k1's rows still open, and the sweep
	// rewraps every one of them under k2.
	r2 := keyring(t, "k2", map[string][]byte{"k1": k1, "k2": k2})
	rotated := userkeys.New(pg, r2)
	if err := rotated.CheckMasters(ctx); err != nil {
		t.Fatal(err)
	}
	if found, err := rotated.Lookup(ctx, ids); err != nil || len(found) != len(ids) {
		t.Fatalf("before the rewrap, the rotated keyring opened %d of %d (%v)", len(found), len(ids), err)
	}
	start = time.Now()
	res, err := rotated.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rewrapped %d keys under the new master key in %v", res.Rewrapped, time.Since(start))
	if res.Rewrapped != len(users) || res.Wrapped != 0 || res.Rows["k2"] != len(users) || res.Old("k2") != 0 {
		t.Fatalf("sweep %+v; want %d rewrapped, all under k2", res, len(users))
	}
	rotated.Report(c.Name, res, slog.New(slog.DiscardHandler))
	if res, err := rotated.Sweep(ctx); err != nil || res.Rewrapped+res.Wrapped != 0 {
		t.Fatalf("a second sweep did %+v (%v), want nothing", res, err)
	}
	if row := rowsHold(t, pg, data); row != "" {
		t.Fatalf("a user_keys row holds a data key after rotation: %s", row)
	}
	// k1 is no longer needed: a keyring of k2 alone starts and opens every key, unchanged.
	only2 := userkeys.New(pg, keyring(t, "k2", map[string][]byte{"k2": k2}))
	if err := only2.CheckMasters(ctx); err != nil {
		t.Fatal(err)
	}
	found, err = only2.Lookup(ctx, ids)
	if err != nil || len(found) != len(ids) {
		t.Fatalf("k2 alone opened %d of %d (%v)", len(found), len(ids), err)
	}
	for i, id := range ids {
		if !bytes.Equal(found[id], data[i]) {
			t.Fatalf("key %s changed in the rotation", id)
		}
	}
	// The old keyring, without k2, refuses to start: rows are under a key it lacks.
	if err := userkeys.New(pg, r1).CheckMasters(ctx); !errors.Is(err, userkeys.ErrMissingMasterKey) || !strings.Contains(err.Error(), `"k2"`) {
		t.Fatalf("start without the current master key: %v; want ErrMissingMasterKey naming k2", err)
	}

	// Erasure still destroys the key: the row goes, with its wrapped key.
	if err := only2.Destroy(ctx, "app", users[0]); err != nil {
		t.Fatal(err)
	}
	if k, err := userkeys.New(pg, r2).Lookup(ctx, ids[:1]); err != nil || len(k) != 0 {
		t.Fatalf("the destroyed key is still found (%d, %v)", len(k), err)
	}
}

// TestDataKeysInClearFromBeforeTheMigrationAreWrappedBySweep stores keys in clear in a
// database migrated up to 0013 (as every region's was), then migrates it and sweeps, as a
// region does at start: no key stays in clear, every key opens to the same bytes, and a second
// sweep does nothing. A row a process of the previous version writes after the migration (in
// clear, during a rolling upgrade) is read as it is and wrapped by the next sweep.
func TestDataKeysInClearFromBeforeTheMigrationAreWrappedBySweep(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	ctx := testenv.Context(t, 3*time.Minute)
	migs, err := migrate.Load(schema.Postgres(), "sql")
	if err != nil {
		t.Fatal(err)
	}
	before := migs[:0]
	for _, m := range migs {
		if m.Version <= 13 {
			before = append(before, m)
		}
	}
	if len(before) != 13 {
		t.Fatalf("%d migrations up to 0013", len(before))
	}
	if err := postgres.EnsureDatabase(ctx, c.Postgres); err != nil {
		t.Fatal(err)
	}
	old, err := postgres.Connect(ctx, c.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Postgres(ctx, old, before); err != nil {
		t.Fatal(err)
	}
	const n = 1100
	users := make([]string, n)
	ids := make([]uuid.UUID, n)
	data := make([][]byte, n)
	for i := range users {
		users[i], ids[i], data[i] = fmt.Sprintf("legacy-%04d", i), uuid.New(), newKey(t)
	}
	if _, err := old.Exec(ctx, `INSERT INTO user_keys (app_id, user_id, key_id, data_key)
		SELECT 'app', u, id, d FROM unnest($1::text[], $2::uuid[], $3::bytea[]) AS t(u, id, d)`, users, ids, data); err != nil {
		t.Fatal(err)
	}
	old.Close()

	pg := regiontest.Migrated(t, c) // 0014 onwards
	if row := rowsHold(t, pg, data[:1]); row == "" {
		t.Fatal("the migration lost the keys in clear before anything wrapped them")
	}
	keys := userkeys.New(pg, testenv.MasterKeyring(t))
	if err := keys.CheckMasters(ctx); err != nil {
		t.Fatal(err)
	}
	// Until the sweep, keys in clear are read as they are.
	if k, err := keys.Lookup(ctx, []string{ids[3].String()}); err != nil || !bytes.Equal(k[ids[3].String()], data[3]) {
		t.Fatalf("a key in clear before the sweep: %v", err)
	}
	start := time.Now()
	res, err := keys.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrapped %d keys in clear in %v", res.Wrapped, time.Since(start))
	if res.Wrapped != n || res.Rows[testenv.MasterKeyID] != n || res.Rows[""] != 0 {
		t.Fatalf("sweep %+v; want %d wrapped, none in clear", res, n)
	}
	if row := rowsHold(t, pg, data); row != "" {
		t.Fatalf("a key is still in clear after the sweep: %s", row)
	}
	strs := make([]string, n)
	for i, id := range ids {
		strs[i] = id.String()
	}
	found, err := userkeys.New(pg, testenv.MasterKeyring(t)).Lookup(ctx, strs)
	if err != nil || len(found) != n {
		t.Fatalf("opened %d of %d wrapped keys (%v)", len(found), n, err)
	}
	for i, id := range strs {
		if !bytes.Equal(found[id], data[i]) {
			t.Fatalf("key %s changed when wrapped", id)
		}
	}
	if res, err := keys.Sweep(ctx); err != nil || res.Wrapped+res.Rewrapped != 0 {
		t.Fatalf("a second sweep did %+v (%v), want nothing", res, err)
	}

	// A process of the previous version, still running during the upgrade, adds a key in clear.
	late, lateKey := uuid.New(), newKey(t)
	if _, err := pg.Exec(ctx, `INSERT INTO user_keys (app_id, user_id, key_id, data_key) VALUES ('app', 'late', $1, $2)`, late, lateKey); err != nil {
		t.Fatal(err)
	}
	if k, err := keys.For(ctx, "app", []string{"late"}); err != nil || !bytes.Equal(k[0].Data, lateKey) {
		t.Fatalf("the key in clear of a previous-version process: %v", err)
	}
	if res, err := keys.Sweep(ctx); err != nil || res.Wrapped != 1 || res.Rows[""] != 0 {
		t.Fatalf("sweep after the late key: %+v (%v); want 1 wrapped", res, err)
	}
	if row := rowsHold(t, pg, [][]byte{lateKey}); row != "" {
		t.Fatalf("the late key is still in clear: %s", row)
	}
	// Nothing can store a key in both forms, or a wrapped key without its master key id.
	if _, err := pg.Exec(ctx, `UPDATE user_keys SET data_key = $1 WHERE user_id = 'late'`, lateKey); err == nil {
		t.Fatal("a row took a key in clear beside its wrapped key")
	}
	if _, err := pg.Exec(ctx, `UPDATE user_keys SET master_key_id = NULL WHERE user_id = 'late'`); err == nil {
		t.Fatal("a wrapped key lost its master key id")
	}
}
