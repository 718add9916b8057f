//go:build integration

package cassandra_test

import (
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/cassandra"
	"github.com/herald-notify/herald/platform/testenv"
)

func TestCassandraWriteReadWithTTL(t *testing.T) {
	c := testenv.Cassandra(t)
	ctx := testenv.Context(t, time.Minute)
	s, err := cassandra.Connect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Query(`CREATE TABLE IF NOT EXISTS inbox (user_id text, at timeuuid, body text, PRIMARY KEY (user_id, at)) WITH CLUSTERING ORDER BY (at DESC)`).WithContext(ctx).Exec(); err != nil {
		t.Fatal(err)
	}
	if err := s.Query(`INSERT INTO inbox (user_id, at, body) VALUES (?, now(), ?) USING TTL 3600`, "u1", "hello").WithContext(ctx).Exec(); err != nil {
		t.Fatal(err)
	}
	var body string
	var ttl int
	if err := s.Query(`SELECT body, TTL(body) FROM inbox WHERE user_id = ? LIMIT 1`, "u1").WithContext(ctx).Scan(&body, &ttl); err != nil {
		t.Fatal(err)
	}
	if body != "hello" || ttl <= 0 || ttl > 3600 {
		t.Fatalf("read back body %q ttl %d", body, ttl)
	}
}

func TestDropKeyspaceRemovesItAndAMissingOneIsNoError(t *testing.T) {
	c := testenv.Cassandra(t)
	ctx := testenv.Context(t, 3*time.Minute)
	s, err := cassandra.Connect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Query(`CREATE TABLE IF NOT EXISTS t (k text PRIMARY KEY, v text)`).WithContext(ctx).Exec(); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second drop finds nothing to drop
		if err := cassandra.DropKeyspace(ctx, c, c.Keyspace); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := s.Query(`SELECT count(*) FROM system_schema.keyspaces WHERE keyspace_name = ?`, c.Keyspace).WithContext(ctx).Scan(&n); err != nil || n != 0 {
		t.Fatalf("keyspace %s still in the schema: %d (%v)", c.Keyspace, n, err)
	}
}
