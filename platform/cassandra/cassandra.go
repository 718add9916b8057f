// Package cassandra holds Herald's Cassandra session settings (gocql).
package cassandra

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gocql/gocql"

	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/retry"
)

// Config is the Cassandra block of a region's config.
type Config struct {
	Hosts             []string `yaml:"hosts" env:"HERALD_CASSANDRA_HOSTS"`
	Keyspace          string   `yaml:"keyspace"`
	ReplicationFactor int      `yaml:"replication_factor"`
	// Replication, when set, makes the keyspace NetworkTopologyStrategy with these replicas per
	// data centre (DC name -> replication factor), and replication_factor is unused. A
	// jurisdiction's regions share one keyspace this way, one data centre per region.
	Replication map[string]int `yaml:"replication"`
	// LocalDC is the data centre whose nodes coordinate this process's queries (DC-aware,
	// token-aware routing; other data centres only when none of its nodes is up). LOCAL_QUORUM
	// and LOCAL_ONE count replicas of the coordinator's data centre.
	LocalDC         string        `yaml:"local_dc"`
	ProtocolVersion int           `yaml:"protocol_version"`
	Consistency     string        `yaml:"consistency"`
	Timeout         time.Duration `yaml:"timeout"`
}

// Defaults returns a Config for a local single node.
func Defaults() Config {
	return Config{Hosts: []string{"127.0.0.1:9042"}, ReplicationFactor: 1, ProtocolVersion: 4, Consistency: "LOCAL_QUORUM", Timeout: 5 * time.Second}
}

var (
	identRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`)
	dcRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$`)
)

// ValidIdent reports whether s can be a keyspace or database name without quoting.
func ValidIdent(s string) bool { return identRE.MatchString(s) }

// Validate checks the block; keys are relative, callers prefix them.
func (c Config) Validate() error {
	if err := config.HostPorts("hosts", c.Hosts); err != nil {
		return err
	}
	if !ValidIdent(c.Keyspace) {
		return config.Errorf("keyspace", c.Keyspace, "must match %s", identRE)
	}
	if c.ReplicationFactor < 1 {
		return config.Errorf("replication_factor", fmt.Sprint(c.ReplicationFactor), "must be at least 1")
	}
	for _, dc := range slices.Sorted(maps.Keys(c.Replication)) {
		if !dcRE.MatchString(dc) {
			return config.Errorf("replication", dc, "a data centre name must match %s", dcRE)
		}
		if rf := c.Replication[dc]; rf < 1 || rf > 9 {
			return config.Errorf("replication."+dc, fmt.Sprint(rf), "must be 1-9")
		}
	}
	if c.LocalDC != "" && !dcRE.MatchString(c.LocalDC) {
		return config.Errorf("local_dc", c.LocalDC, "must match %s", dcRE)
	}
	if len(c.Replication) > 0 {
		if c.LocalDC == "" {
			return config.Errorf("local_dc", "", "is required with replication: the data centre this process's queries stay in")
		}
		if _, ok := c.Replication[c.LocalDC]; !ok {
			return config.Errorf("local_dc", c.LocalDC, "must be one of replication's data centres")
		}
	}
	if c.ProtocolVersion != 4 && c.ProtocolVersion != 5 {
		return config.Errorf("protocol_version", fmt.Sprint(c.ProtocolVersion), "must be 4 or 5")
	}
	if _, err := parseConsistency(c.Consistency); err != nil {
		return config.Errorf("consistency", c.Consistency, "%v", err)
	}
	if c.Timeout <= 0 {
		return config.Errorf("timeout", c.Timeout.String(), "must be positive")
	}
	return nil
}

func parseConsistency(s string) (c gocql.Consistency, err error) {
	defer func() {
		if r := recover(); r != nil { // gocql.ParseConsistency panics on unknown names
			err = fmt.Errorf("unknown consistency level")
		}
	}()
	return gocql.ParseConsistency(s), nil
}

func (c Config) cluster(keyspace string) *gocql.ClusterConfig {
	cl := gocql.NewCluster(c.Hosts...)
	cl.Keyspace = keyspace
	cl.ProtoVersion = c.ProtocolVersion
	cl.Consistency, _ = parseConsistency(c.Consistency)
	cl.Timeout = c.Timeout
	cl.ConnectTimeout = c.Timeout
	// The driver looks the hosts up (system.local, system.peers) even with one contact point:
	// without the lookup it gives each contact point a made-up host id, and after the node
	// restarted, the ring refresh adds the node again under its real id while the load-balancing
	// policy keeps the old, down entry (same address), so every query failed "gocql: no hosts
	// available in the pool" for good (gocql issue 1721; seen as every region stuck after
	// Cassandra stopped for 20 s). A looked-up host without a port of its own keeps the port of
	// the contact point it was found through.
	cl.DisableInitialHostLookup = false
	// Down hosts are redialled every ReconnectInterval (the driver's default is a minute), and
	// a connection that drops is redialled with backoff before the host counts as down.
	cl.ReconnectInterval = reconnectInterval
	cl.ReconnectionPolicy = &gocql.ExponentialReconnectionPolicy{MaxRetries: 8, InitialInterval: 100 * time.Millisecond, MaxInterval: 2 * time.Second}
	cl.RetryPolicy = &gocql.ExponentialBackoffRetryPolicy{NumRetries: 3, Min: 50 * time.Millisecond, Max: time.Second}
	if c.LocalDC != "" {
		// Queries go to a replica of the local data centre; another data centre's nodes only
		// when none of the local ones is up (the jurisdiction's other region: LOCAL_QUORUM then
		// counts that data centre's replicas, and the data stays in the jurisdiction).
		cl.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.DCAwareRoundRobinPolicy(c.LocalDC))
	}
	return cl
}

// reconnectInterval is how often a session redials hosts it holds down: short, so a node that
// restarted serves again within seconds (the driver also reconnects on the node's UP event).
const reconnectInterval = 2 * time.Second

// Connect opens a session on the configured keyspace.
func Connect(ctx context.Context, c Config) (*gocql.Session, error) {
	return connect(ctx, c, c.Keyspace)
}

// ConnectSystem opens a session with no keyspace, for creating one.
func ConnectSystem(ctx context.Context, c Config) (*gocql.Session, error) {
	return connect(ctx, c, "")
}

func connect(ctx context.Context, c Config, keyspace string) (*gocql.Session, error) {
	type result struct {
		s   *gocql.Session
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := c.cluster(keyspace).CreateSession()
		ch <- result{s, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("connecting to cassandra %v keyspace %q: %w", c.Hosts, keyspace, r.err)
		}
		return r.s, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.s != nil {
				r.s.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// ReplicationCQL is the keyspace's replication map as CQL: NetworkTopologyStrategy with the
// configured data centres, or SimpleStrategy with replication_factor when none is configured.
func (c Config) ReplicationCQL() string {
	if len(c.Replication) == 0 {
		return fmt.Sprintf(`{'class': 'SimpleStrategy', 'replication_factor': %d}`, c.ReplicationFactor)
	}
	var b strings.Builder
	b.WriteString(`{'class': 'NetworkTopologyStrategy'`)
	for _, dc := range slices.Sorted(maps.Keys(c.Replication)) {
		fmt.Fprintf(&b, `, '%s': %d`, dc, c.Replication[dc])
	}
	b.WriteString("}")
	return b.String()
}

// EnsureKeyspace creates the keyspace if missing, and brings an existing keyspace's replication
// to the configured one (a data centre added to a jurisdiction: its nodes then need
// `nodetool rebuild`, docs/runbook.md).
func EnsureKeyspace(ctx context.Context, c Config) error {
	if !ValidIdent(c.Keyspace) {
		return fmt.Errorf("invalid keyspace name %q", c.Keyspace)
	}
	s, err := ConnectSystem(ctx, c.ForSchema())
	if err != nil {
		return err
	}
	defer s.Close()
	stmt := fmt.Sprintf(`CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s`, c.Keyspace, c.ReplicationCQL())
	if err := s.Query(stmt).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("creating keyspace %s: %w", c.Keyspace, err)
	}
	if len(c.Replication) == 0 {
		return nil
	}
	have, err := KeyspaceReplication(ctx, s, c.Keyspace)
	if err != nil {
		return err
	}
	if !sameReplication(have, c.Replication) {
		stmt := fmt.Sprintf(`ALTER KEYSPACE %s WITH replication = %s`, c.Keyspace, c.ReplicationCQL())
		if err := s.Query(stmt).WithContext(ctx).Exec(); err != nil {
			return fmt.Errorf("changing the replication of keyspace %s: %w", c.Keyspace, err)
		}
	}
	return nil
}

// KeyspaceReplication reads a keyspace's replication as the cluster holds it
// (system_schema.keyspaces): the strategy class under "class", and one entry per data centre
// (NetworkTopologyStrategy) or "replication_factor" (SimpleStrategy).
func KeyspaceReplication(ctx context.Context, s *gocql.Session, keyspace string) (map[string]string, error) {
	var rep map[string]string
	if err := s.Query(`SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?`, keyspace).WithContext(ctx).Scan(&rep); err != nil {
		return nil, fmt.Errorf("reading the replication of keyspace %s: %w", keyspace, err)
	}
	return rep, nil
}

// ReplicaDCs are the data centres a keyspace's replication places replicas in: nil for
// SimpleStrategy (every node of the cluster may hold a replica).
func ReplicaDCs(rep map[string]string) []string {
	if !strings.HasSuffix(rep["class"], "NetworkTopologyStrategy") {
		return nil
	}
	var dcs []string
	for k, v := range rep {
		if k != "class" && v != "0" {
			dcs = append(dcs, k)
		}
	}
	slices.Sort(dcs)
	return dcs
}

func sameReplication(have map[string]string, want map[string]int) bool {
	if !strings.HasSuffix(have["class"], "NetworkTopologyStrategy") || len(ReplicaDCs(have)) != len(want) {
		return false
	}
	for dc, rf := range want {
		if have[dc] != fmt.Sprint(rf) {
			return false
		}
	}
	return true
}

// DataCentres lists the data centres of the cluster's nodes as the connected session sees them
// (system.local and system.peers_v2).
func DataCentres(ctx context.Context, s *gocql.Session) ([]string, error) {
	seen := map[string]bool{}
	var dc string
	if err := s.Query(`SELECT data_center FROM system.local`).WithContext(ctx).Scan(&dc); err != nil {
		return nil, fmt.Errorf("reading the node's data centre: %w", err)
	}
	seen[dc] = true
	iter := s.Query(`SELECT data_center FROM system.peers_v2`).WithContext(ctx).Iter()
	for iter.Scan(&dc) {
		seen[dc] = true
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("reading the peers' data centres: %w", err)
	}
	return slices.Sorted(maps.Keys(seen)), nil
}

// Peers counts the other nodes the connected node knows (system.peers_v2): 0 on a
// single-node cluster, where one coordinator holds every replica.
func Peers(ctx context.Context, s *gocql.Session) (int, error) {
	var n int
	if err := s.Query(`SELECT count(*) FROM system.peers_v2`).WithContext(ctx).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting cassandra peers: %w", err)
	}
	return n, nil
}

// schemaTimeout is the request timeout of schema changes that may take long on a busy node.
const schemaTimeout = time.Minute

// ForSchema is c for a session that changes the schema: a CREATE TABLE on a busy node (the
// schema pushed to every peer and flushed) can outlast the request timeout of reads and
// writes, and a client that gave up does not stop the change on the server.
func (c Config) ForSchema() Config {
	c.Timeout = max(c.Timeout, schemaTimeout)
	return c
}

// DropKeyspace drops a keyspace if it exists. Dropping one with many tables on a busy node can
// outlast the per-request timeout while the drop goes on server-side, so the session waits up
// to schemaTimeout per request, and a failed drop is checked against the schema and retried.
func DropKeyspace(ctx context.Context, c Config, keyspace string) error {
	s, err := ConnectSystem(ctx, c.ForSchema())
	if err != nil {
		return err
	}
	defer s.Close()
	for attempt := 1; ; attempt++ {
		err := s.Query("DROP KEYSPACE IF EXISTS " + keyspace).WithContext(ctx).Exec()
		if err == nil {
			return nil
		}
		var n int
		if qerr := s.Query(`SELECT count(*) FROM system_schema.keyspaces WHERE keyspace_name = ?`, keyspace).WithContext(ctx).Scan(&n); qerr == nil && n == 0 {
			return nil // the drop finished after the request gave up
		}
		if attempt == 3 {
			return fmt.Errorf("dropping keyspace %s: %w", keyspace, err)
		}
		if !retry.Sleep(ctx, 2*time.Second) {
			return fmt.Errorf("dropping keyspace %s: %w", keyspace, err)
		}
	}
}
