//go:build integration

package migrate_test

import (
	"errors"
	"testing"
	"testing/fstest"
	"time"

	"github.com/herald-notify/herald/platform/cassandra"
	"github.com/herald-notify/herald/platform/migrate"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/testenv"
)

func load(t *testing.T, ext string, files map[string]string) []migrate.Migration {
	t.Helper()
	fsys := fstest.MapFS{}
	for n, b := range files {
		fsys[n] = &fstest.MapFile{Data: []byte(b)}
	}
	ms, err := migrate.Load(fsys, ext)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestPostgresMigrationsApplyOnceAndRefuseEdits(t *testing.T) {
	c := testenv.Postgres(t)
	ctx := testenv.Context(t, time.Minute)
	pool, err := postgres.Connect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	v1 := map[string]string{"0001_users.sql": "CREATE TABLE users (id text PRIMARY KEY);"}
	res, err := migrate.Postgres(ctx, pool, load(t, "sql", v1))
	if err != nil || len(res.Applied) != 1 {
		t.Fatalf("first run: %v %v", res, err)
	}
	v2 := map[string]string{"0001_users.sql": v1["0001_users.sql"], "0002_email.sql": "ALTER TABLE users ADD COLUMN email text;"}
	res, err = migrate.Postgres(ctx, pool, load(t, "sql", v2))
	if err != nil || len(res.Applied) != 1 || res.Applied[0] != "0002_email" {
		t.Fatalf("second run: %v %v", res, err)
	}
	res, err = migrate.Postgres(ctx, pool, load(t, "sql", v2))
	if err != nil || len(res.Applied) != 0 {
		t.Fatalf("rerun applied %v, err %v", res.Applied, err)
	}
	edited := map[string]string{"0001_users.sql": "CREATE TABLE users (id bigint PRIMARY KEY);", "0002_email.sql": v2["0002_email.sql"]}
	_, err = migrate.Postgres(ctx, pool, load(t, "sql", edited))
	var ce *migrate.ChangedError
	if !errors.As(err, &ce) || ce.Version != 1 {
		t.Fatalf("edited migration: want ChangedError for 1, got %v", err)
	}
	// A failing migration leaves nothing behind (its transaction rolls back) and is not recorded.
	bad := map[string]string{"0001_users.sql": v1["0001_users.sql"], "0002_email.sql": v2["0002_email.sql"], "0003_bad.sql": "CREATE TABLE t3 (x int); SELECT no_such_function();"}
	if _, err := migrate.Postgres(ctx, pool, load(t, "sql", bad)); err == nil {
		t.Fatal("bad migration succeeded")
	}
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('t3') IS NOT NULL`).Scan(&exists); err != nil || exists {
		t.Fatalf("failed migration left table t3 (exists=%v, err=%v)", exists, err)
	}
}

func TestCassandraMigrationsApplyOnceAndRefuseEdits(t *testing.T) {
	c := testenv.Cassandra(t)
	ctx := testenv.Context(t, 2*time.Minute)
	s, err := cassandra.Connect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v1 := map[string]string{"0001_inbox.cql": "CREATE TABLE IF NOT EXISTS inbox (u text PRIMARY KEY, body text);\nCREATE TABLE IF NOT EXISTS attempts (id text PRIMARY KEY);"}
	res, err := migrate.Cassandra(ctx, s, load(t, "cql", v1))
	if err != nil || len(res.Applied) != 1 {
		t.Fatalf("first run: %v %v", res, err)
	}
	res, err = migrate.Cassandra(ctx, s, load(t, "cql", v1))
	if err != nil || len(res.Applied) != 0 {
		t.Fatalf("rerun applied %v, err %v", res.Applied, err)
	}
	if err := s.Query(`INSERT INTO attempts (id) VALUES ('x')`).WithContext(ctx).Exec(); err != nil {
		t.Fatalf("both statements should have run: %v", err)
	}
	edited := map[string]string{"0001_inbox.cql": "CREATE TABLE IF NOT EXISTS inbox (u text PRIMARY KEY);"}
	_, err = migrate.Cassandra(ctx, s, load(t, "cql", edited))
	var ce *migrate.ChangedError
	if !errors.As(err, &ce) {
		t.Fatalf("want ChangedError, got %v", err)
	}
}
