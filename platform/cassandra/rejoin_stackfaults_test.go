//go:build stackfaults

// Tests that kill and restart the local stack's own servers: stack/test-stack.sh runs them
// (go test -tags stackfaults), when nothing else uses the stack; never beside other tests.

package cassandra_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/herald-notify/herald/platform/testenv"
)

const rejoinKeyspace = "stacktest_rejoin"

// euSession opens a session on one EU node only (its address, the stack's EU CQL port), at
// LOCAL_QUORUM: the queries of that node's data centre, as its region makes them.
func euSession(t *testing.T, addr, dc, keyspace string) *gocql.Session {
	t.Helper()
	hosts := os.Getenv("HERALD_CASSANDRA_EU_HOSTS")
	if hosts == "" {
		t.Fatal("HERALD_CASSANDRA_EU_HOSTS is not set (source .herald/stack.env)")
	}
	_, port, _ := strings.Cut(strings.Split(hosts, ",")[0], ":")
	c := gocql.NewCluster(addr + ":" + port)
	c.Keyspace = keyspace
	c.Consistency = gocql.LocalQuorum
	c.Timeout = 10 * time.Second
	c.ConnectTimeout = 10 * time.Second
	c.PoolConfig.HostSelectionPolicy = gocql.DCAwareRoundRobinPolicy(dc)
	c.HostFilter = gocql.WhiteListHostFilter(addr)
	var s *gocql.Session
	var err error
	for deadline := time.Now().Add(2 * time.Minute); ; {
		if s, err = c.CreateSession(); err == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("connecting to %s: %v", addr, err)
		}
		time.Sleep(time.Second)
	}
}

// stackCassandra runs stack/cassandra.sh with args.
func stackCassandra(t *testing.T, ctx context.Context, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(testenv.Root(), "stack", "cassandra.sh"), args...)
	cmd.Env = append(os.Environ(), "HERALD_CASSANDRA_REJOIN_KEYSPACES="+rejoinKeyspace)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("stack/cassandra.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// count reads how many of the keys the node's data centre returns.
func count(t *testing.T, s *gocql.Session, ctx context.Context, run string, n int) int {
	t.Helper()
	got := 0
	for i := range n {
		var v string
		err := s.Query(`SELECT v FROM items WHERE k = ?`, fmt.Sprintf("%s-%d", run, i)).WithContext(ctx).Scan(&v)
		switch {
		case err == nil:
			got++
		case !errors.Is(err, gocql.ErrNotFound):
			t.Fatalf("reading %s-%d: %v", run, i, err)
		}
	}
	return got
}

// With one node per data centre, an EU node that is down misses the writes its data centre
// takes meanwhile; the other data centre's hints are what bring them, and hints are best effort
// (not stored at all here: hinted handoff is off on the other node, as when they are dropped or
// lost). Started again plainly, the node serves its region's reads without those rows; rejoined
// as the runbook says (stack/cassandra.sh rejoin: repaired before its CQL port opens) it serves
// every one of them.
func TestAnEUNodeRejoinedServesTheWritesItMissedWhenNoHintBringsThem(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	const west, central = "127.0.0.2", "127.0.0.3"

	admin := euSession(t, central, "eu-central-1", "")
	defer admin.Close()
	if err := admin.Query(`CREATE KEYSPACE IF NOT EXISTS ` + rejoinKeyspace +
		` WITH replication = {'class': 'NetworkTopologyStrategy', 'eu-west-1': 1, 'eu-central-1': 1}`).WithContext(ctx).Exec(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Query(`CREATE TABLE IF NOT EXISTS ` + rejoinKeyspace + `.items (k text PRIMARY KEY, v text)`).WithContext(ctx).Exec(); err != nil {
		t.Fatal(err)
	}
	stackCassandra(t, ctx, "nodetool", "eu-central-1", "disablehandoff")
	t.Cleanup(func() {
		stackCassandra(t, context.Background(), "nodetool", "eu-central-1", "enablehandoff")
	})

	// writes takes n rows into eu-central-1's data centre while eu-west-1's node is down.
	writes := func(run string, n int) {
		stackCassandra(t, ctx, "kill", "eu-west-1")
		s := euSession(t, central, "eu-central-1", rejoinKeyspace)
		defer s.Close()
		for i := range n {
			if err := s.Query(`INSERT INTO items (k, v) VALUES (?, ?)`, fmt.Sprintf("%s-%d", run, i), "x").WithContext(ctx).Exec(); err != nil {
				t.Fatalf("write %d with eu-west-1 down: %v", i, err)
			}
		}
	}
	const n = 50
	run := fmt.Sprintf("r%d", time.Now().UnixNano())

	writes(run+"-plain", n)
	stackCassandra(t, ctx, "start", "eu-west-1")
	s := euSession(t, west, "eu-west-1", rejoinKeyspace)
	plain := count(t, s, ctx, run+"-plain", n)
	s.Close()
	if plain == n {
		t.Fatalf("started plainly, eu-west-1 served all %d rows written while it was down with no hint stored: the test cannot see the failure it is for", n)
	}
	t.Logf("started plainly: eu-west-1's data centre served %d of %d rows written while its node was down", plain, n)

	writes(run+"-rejoin", n)
	start := time.Now()
	stackCassandra(t, ctx, "rejoin", "eu-west-1")
	s = euSession(t, west, "eu-west-1", rejoinKeyspace)
	defer s.Close()
	if got := count(t, s, ctx, run+"-rejoin", n); got != n {
		t.Fatalf("rejoined: eu-west-1's data centre served %d of %d rows written while its node was down", got, n)
	}
	t.Logf("rejoined in %s: all %d rows served", time.Since(start).Round(100*time.Millisecond), n)
}
