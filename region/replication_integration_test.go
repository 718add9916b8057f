//go:build integration

package region_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/jackc/pgx/v5"

	"github.com/herald-notify/herald/platform/cassandra"
	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region"
)

// euEnv returns a variable of the EU jurisdiction's stores, which `make test` starts
// (stack/postgres.sh, stack/cassandra.sh): a missing one is a broken stack, not a skip.
func euEnv(t *testing.T, name string) string {
	t.Helper()
	testenv.Kafka(t) // loads .herald/stack.env
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: the local stack's EU stores are not up (stack/up.sh servers)", name)
	}
	return v
}

// The EU jurisdiction's Postgres streams to its standby in eu-central-1, which reports that
// name and holds what the primary commits; the US server streams nowhere. The check a region
// runs at start accepts the standby for EU and refuses it for a jurisdiction without that region.
func TestTheEUPostgresStreamsToItsStandbyInTheJurisdictionOnly(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	euURL := euEnv(t, region.JurisdictionPostgresEnv("EU"))
	primary, err := pgx.Connect(ctx, euURL)
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Close(ctx)
	var sbs []postgres.Standby
	poll.Until(t, 30*time.Second, func() error {
		if sbs, err = postgres.Standbys(ctx, primary); err != nil {
			return err
		}
		if len(sbs) != 1 || sbs[0].Name != "eu-central-1" || sbs[0].State != "streaming" {
			return fmt.Errorf("standbys %+v, want eu-central-1 streaming", sbs)
		}
		return nil
	})
	if err := region.CheckStandbys(sbs, "EU", []string{"eu-west-1", "eu-central-1"}); err != nil {
		t.Fatalf("the jurisdiction's own standby refused: %v", err)
	}
	if err := region.CheckStandbys(sbs, "EU", []string{"eu-west-1", "eu-north-1"}); !errors.Is(err, region.ErrOutsideJurisdiction) || !strings.Contains(err.Error(), "postgres.url") {
		t.Fatalf("a standby outside the policy's regions: want ErrOutsideJurisdiction naming postgres.url, got %v", err)
	}
	if err := region.CheckStandbys([]postgres.Standby{{Addr: "10.0.0.9"}}, "EU", []string{"eu-west-1", "eu-central-1"}); !errors.Is(err, region.ErrOutsideJurisdiction) {
		t.Fatalf("a standby whose name cannot be read: want ErrOutsideJurisdiction, got %v", err)
	}

	// What the primary commits is on the standby (read on the standby alone).
	probe := "probe-" + testenv.Suffix()
	if _, err := primary.Exec(ctx, `CREATE TABLE IF NOT EXISTS replication_probe (id text PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	if _, err := primary.Exec(ctx, `INSERT INTO replication_probe VALUES ($1)`, probe); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = primary.Exec(ctx, `DELETE FROM replication_probe WHERE id = $1`, probe) })
	standby, err := pgx.Connect(ctx, hostOf(t, euURL, "eu-central-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer standby.Close(ctx)
	var inRecovery bool
	if err := standby.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err != nil || !inRecovery {
		t.Fatalf("the second server is not a standby (in recovery %v, %v)", inRecovery, err)
	}
	poll.Until(t, 30*time.Second, func() error {
		var n int
		if err := standby.QueryRow(ctx, `SELECT count(*) FROM replication_probe WHERE id = $1`, probe).Scan(&n); err != nil || n != 1 {
			return fmt.Errorf("the probe on the standby: %d (%v)", n, err)
		}
		return nil
	})

	// The US jurisdiction's server (with the gateway and analytics) streams to no one.
	main, err := pgx.Connect(ctx, euEnv(t, "HERALD_POSTGRES_URL"))
	if err != nil {
		t.Fatal(err)
	}
	defer main.Close(ctx)
	if sbs, err := postgres.Standbys(ctx, main); err != nil || len(sbs) != 0 {
		t.Fatalf("the US server streams to %+v (%v)", sbs, err)
	}
}

// hostOf is the URL of one server of a multi-host URL (the first for eu-west-1, the second
// for eu-central-1), without target_session_attrs.
func hostOf(t *testing.T, raw, node string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	hosts := strings.Split(u.Host, ",")
	i := 0
	if node == "eu-central-1" {
		i = 1
	}
	if len(hosts) != 2 {
		t.Fatalf("the EU URL lists %v, want the primary and the standby", hosts)
	}
	u.Host = hosts[i]
	q := u.Query()
	q.Del("target_session_attrs")
	u.RawQuery = q.Encode()
	return u.String()
}

// A keyspace replicated to the EU regions' data centres has a replica in each: written in
// eu-west-1 at LOCAL_QUORUM, it is read in eu-central-1 at LOCAL_ONE. The cluster has no data
// centre outside the EU, and a region config naming one is refused before anything is made.
func TestTheEUCassandraClusterReplicatesToBothRegionsDataCentres(t *testing.T) {
	ctx := testenv.Context(t, 3*time.Minute)
	hosts := strings.Split(euEnv(t, "HERALD_CASSANDRA_EU_HOSTS"), ",")
	base := cassandra.Defaults()
	base.Hosts, base.Keyspace, base.Timeout = hosts, "test_"+testenv.Suffix(), 20*time.Second
	base.Replication = map[string]int{"eu-west-1": 1, "eu-central-1": 1}
	west, central := base, base
	west.LocalDC, central.LocalDC = "eu-west-1", "eu-central-1"
	central.Consistency = "LOCAL_ONE"
	if err := cassandra.EnsureKeyspace(ctx, west); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.DropKeyspace(t, west) })

	ws, err := cassandra.Connect(ctx, west)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	dcs, err := cassandra.DataCentres(ctx, ws)
	if err != nil || !slices.Equal(dcs, []string{"eu-central-1", "eu-west-1"}) {
		t.Fatalf("the EU cluster's data centres: %v (%v)", dcs, err)
	}
	rep, err := cassandra.KeyspaceReplication(ctx, ws, west.Keyspace)
	if err != nil || !slices.Equal(cassandra.ReplicaDCs(rep), []string{"eu-central-1", "eu-west-1"}) {
		t.Fatalf("replication %v (%v)", rep, err)
	}
	if err := ws.Query(`CREATE TABLE IF NOT EXISTS probe (id text PRIMARY KEY)`).WithContext(ctx).Exec(); err != nil {
		t.Fatal(err)
	}
	cs, err := cassandra.Connect(ctx, central)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	// The other data centre knows the table before the write: a replica that gets a mutation
	// for a table it does not know yet drops it, and no hint is kept for a refused write (a
	// CI run read "not found" for 30 s: the table reached eu-central-1 100 ms after the
	// create returned).
	poll.Until(t, 30*time.Second, func() error {
		return cs.Query(`SELECT id FROM probe LIMIT 1`).WithContext(ctx).Exec()
	})
	if err := ws.Query(`INSERT INTO probe (id) VALUES ('x')`).WithContext(ctx).Exec(); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, func() error {
		var id string
		var coordinator string
		err := cs.Query(`SELECT id FROM probe WHERE id = 'x'`).WithContext(ctx).Observer(queryObserver(func(q gocql.ObservedQuery) {
			coordinator = q.Host.DataCenter()
		})).Scan(&id)
		if err != nil {
			return fmt.Errorf("read in eu-central-1: %w", err)
		}
		if coordinator != "eu-central-1" {
			return fmt.Errorf("the read was coordinated in %q, want eu-central-1", coordinator)
		}
		return nil
	})

	// A region whose replication names a region the policy puts in another jurisdiction.
	c := region.DefaultConfig(t.TempDir())
	c.Name, c.Jurisdiction, c.Cassandra = "eu-west-1", "EU", base
	c.Cassandra.Replication = map[string]int{"eu-west-1": 1, "us-east-1": 1}
	c.Cassandra.LocalDC = "eu-west-1"
	if err := region.CheckJurisdictionReplicas(c, []string{"eu-west-1", "eu-central-1"}); !errors.Is(err, region.ErrOutsideJurisdiction) || !strings.Contains(err.Error(), "cassandra.replication") {
		t.Fatalf("want ErrOutsideJurisdiction naming cassandra.replication, got %v", err)
	}
}

type queryObserver func(q gocql.ObservedQuery)

func (f queryObserver) ObserveQuery(_ context.Context, q gocql.ObservedQuery) { f(q) }
