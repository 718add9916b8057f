//go:build integration

package cassandra_test

import (
	"context"
	"testing"
	"time"

	"github.com/gocql/gocql"

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

// TestSessionServesAgainByItselfAfterCassandraStoppedForTwentySeconds is the outage that left
// every region failing "gocql: no hosts available in the pool" for good: a private Cassandra
// stops, stays down 20 s and starts again; the same session must serve again without anyone
// recreating it.
func TestSessionServesAgainByItselfAfterCassandraStoppedForTwentySeconds(t *testing.T) {
	node := testenv.StartPrivate(t, "cassandra", "HERALD_CASSANDRA_HEAP=768m")
	c := cassandra.Defaults()
	c.Hosts = []string{node.Env(t, "HERALD_CASSANDRA_HOSTS")}
	c.Keyspace = "fault_test"
	c.Consistency = "ONE"
	c.Timeout = 2 * time.Second
	ctx := testenv.Context(t, 8*time.Minute)
	if err := cassandra.EnsureKeyspace(ctx, c); err != nil {
		t.Fatal(err)
	}
	s, err := cassandra.Connect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	query := func() error {
		var v string
		return s.Query(`SELECT release_version FROM system.local`).WithContext(ctx).Scan(&v)
	}
	if err := query(); err != nil {
		t.Fatal(err)
	}
	// The session must know the node by its real host id. With a made-up one (host lookup
	// disabled), the ring refresh after the node's return adds it again under its real id while
	// the load-balancing policy, keyed by address, drops it: whether the session then serves
	// again is a race between two of the driver's goroutines (gocql issue 1721), which the
	// regions lost under load and this quiet test mostly wins, so the id is checked directly.
	var realID gocql.UUID
	if err := s.Query(`SELECT host_id FROM system.local`).WithContext(ctx).Scan(&realID); err != nil {
		t.Fatal(err)
	}
	var seen string
	if err := s.Query(`SELECT release_version FROM system.local`).WithContext(ctx).Observer(hostObserver(func(h *gocql.HostInfo) { seen = h.HostID() })).Exec(); err != nil {
		t.Fatal(err)
	}
	if seen != realID.String() {
		t.Fatalf("the session knows the node as host %s, its host_id is %s", seen, realID)
	}
	// The application keeps querying throughout, as fan-out does.
	failed := make(chan bool, 1)
	stop := make(chan struct{})
	go func() {
		saw := false
		for {
			select {
			case <-stop:
				failed <- saw
				return
			case <-time.After(200 * time.Millisecond):
				saw = saw || query() != nil
			}
		}
	}()
	node.Stop(t)
	time.Sleep(20 * time.Second)
	node.Start(t)
	close(stop)
	if !<-failed {
		t.Fatal("no query failed while Cassandra was stopped: the fault did not happen")
	}
	back := time.Now()
	var last error
	for time.Since(back) < 30*time.Second {
		if last = query(); last == nil {
			t.Logf("serving again %s after Cassandra answered again", time.Since(back).Round(100*time.Millisecond))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the session still fails 30 s after Cassandra answered again: %v", last)
}

type hostObserver func(*gocql.HostInfo)

func (f hostObserver) ObserveQuery(_ context.Context, q gocql.ObservedQuery) { f(q.Host) }
