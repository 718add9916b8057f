package region

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/IBM/sarama"
	"github.com/gocql/gocql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"

	"github.com/herald-notify/herald/platform/cassandra"
	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/migrate"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/redis"
	"github.com/herald-notify/herald/region/schema"
	"github.com/herald-notify/herald/residency"
)

// ErrWrongRegion means a store is recorded as belonging to another jurisdiction, or is
// replicated where the region's config does not say.
var ErrWrongRegion = errors.New("store belongs to another region")

// ErrNotMigrated means the region's stores have not been set up by `herald migrate`.
var ErrNotMigrated = errors.New("region stores not migrated (run herald migrate)")

// Stores are the region's connections.
type Stores struct {
	PG    *pgxpool.Pool
	Cass  *gocql.Session
	Redis *goredis.Client
	Kafka sarama.Client
}

// Close closes every connection that was opened.
func (s *Stores) Close() {
	if s.Kafka != nil {
		_ = s.Kafka.Close()
	}
	if s.Redis != nil {
		_ = s.Redis.Close()
	}
	if s.Cass != nil {
		s.Cass.Close()
	}
	if s.PG != nil {
		s.PG.Close()
	}
}

// OpenStores connects to the region's four stores and checks they belong to this region.
func OpenStores(ctx context.Context, c Config) (*Stores, error) {
	s := &Stores{}
	var err error
	if s.PG, err = postgres.Connect(ctx, c.Postgres); err != nil {
		return nil, err
	}
	if s.Cass, err = cassandra.Connect(ctx, c.Cassandra); err != nil {
		s.Close()
		return nil, err
	}
	if s.Redis, err = redis.Connect(ctx, c.Redis); err != nil {
		s.Close()
		return nil, err
	}
	sc, err := c.Kafka.Sarama()
	if err != nil {
		s.Close()
		return nil, err
	}
	if s.Kafka, err = sarama.NewClient(c.Kafka.Brokers, sc); err != nil {
		s.Close()
		return nil, fmt.Errorf("connecting to kafka %v: %w", c.Kafka.Brokers, err)
	}
	if err := checkOwner(ctx, s, c); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// checkOwner refuses stores of another jurisdiction: the database and keyspace are shared by
// the regions of one jurisdiction, and a region writes its users only into its own
// jurisdiction's. The region must also have been migrated into the database (store_regions).
func checkOwner(ctx context.Context, s *Stores, c Config) error {
	var pgJur string
	var joined bool
	err := s.PG.QueryRow(ctx, `SELECT jurisdiction, EXISTS (SELECT 1 FROM store_regions WHERE region = $1) FROM region_info`, c.Name).Scan(&pgJur, &joined)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres database %s: %w", c.Postgres.Database, ErrNotMigrated)
	}
	if err != nil {
		return fmt.Errorf("postgres database %s: reading region_info: %w (run herald migrate)", c.Postgres.Database, err)
	}
	if pgJur != c.Jurisdiction {
		return fmt.Errorf("postgres database %s belongs to jurisdiction %s, not region %s's %s: %w", c.Postgres.Database, pgJur, c.Name, c.Jurisdiction, ErrWrongRegion)
	}
	if !joined {
		return fmt.Errorf("postgres database %s: region %s %w", c.Postgres.Database, c.Name, ErrNotMigrated)
	}
	var cJur string
	err = s.Cass.Query(`SELECT jurisdiction FROM region_info WHERE singleton = true`).WithContext(ctx).Scan(&cJur)
	if errors.Is(err, gocql.ErrNotFound) {
		return fmt.Errorf("cassandra keyspace %s: %w", c.Cassandra.Keyspace, ErrNotMigrated)
	}
	if err != nil {
		return fmt.Errorf("cassandra keyspace %s: reading region_info: %w (run herald migrate)", c.Cassandra.Keyspace, err)
	}
	if cJur != c.Jurisdiction {
		return fmt.Errorf("cassandra keyspace %s belongs to jurisdiction %s, not region %s's %s: %w", c.Cassandra.Keyspace, cJur, c.Name, c.Jurisdiction, ErrWrongRegion)
	}
	return checkReplicas(ctx, s, c)
}

// checkReplicas refuses a keyspace whose replicas, as the cluster holds them, are in a data
// centre the region's config does not name: the config's data centres are the ones checked
// against the jurisdiction (CheckJurisdictionReplicas), so one added by hand (ALTER KEYSPACE)
// is caught here whatever the config says.
func checkReplicas(ctx context.Context, s *Stores, c Config) error {
	rep, err := cassandra.KeyspaceReplication(ctx, s.Cass, c.Cassandra.Keyspace)
	if err != nil {
		return err
	}
	dcs := cassandra.ReplicaDCs(rep)
	if len(c.Cassandra.Replication) == 0 {
		return nil // SimpleStrategy: one data centre, the region's own cluster
	}
	if dcs == nil {
		return fmt.Errorf("cassandra keyspace %s is replicated %v, not per data centre as cassandra.replication says (run herald migrate): %w", c.Cassandra.Keyspace, rep, ErrWrongRegion)
	}
	for _, dc := range dcs {
		if _, ok := c.Cassandra.Replication[dc]; !ok {
			return fmt.Errorf("cassandra keyspace %s has replicas in data centre %s, which cassandra.replication does not name: %w", c.Cassandra.Keyspace, dc, ErrWrongRegion)
		}
	}
	return nil
}

// ErrOutsideJurisdiction means a region's config would replicate its stores to a region of
// another jurisdiction.
var ErrOutsideJurisdiction = errors.New("replication outside the jurisdiction")

// checkPolicyReplicas checks the region's Cassandra data centres against the residency policy
// in force. A keyspace replicated to other regions needs the policy to say they are the
// jurisdiction's, so without one the region refuses to start.
func checkPolicyReplicas(ctx context.Context, src residency.Source, c Config) error {
	if len(c.Cassandra.Replication) == 0 {
		return nil
	}
	var h residency.Holder
	if err := h.Load(ctx, src, c.PolicyKey); err != nil {
		return fmt.Errorf("cassandra.replication names other regions: checking them needs the residency policy (%s): %w", c.PolicyKey, err)
	}
	return CheckJurisdictionReplicas(c, h.Current().Regions(c.Jurisdiction))
}

// checkStandbys checks the standbys of the region's Postgres primary against the residency
// policy (CheckStandbys). A primary with standbys needs the policy, so without one the region
// refuses to start.
func checkStandbys(ctx context.Context, db *pgxpool.Pool, src residency.Source, c Config) error {
	sbs, err := postgres.Standbys(ctx, db)
	if err != nil {
		return fmt.Errorf("postgres.url: %w", err)
	}
	if len(sbs) == 0 {
		return nil
	}
	var h residency.Holder
	if err := h.Load(ctx, src, c.PolicyKey); err != nil {
		return fmt.Errorf("postgres.url: the primary streams to standbys; checking they are in jurisdiction %s needs the residency policy (%s): %w", c.Jurisdiction, c.PolicyKey, err)
	}
	return CheckStandbys(sbs, c.Jurisdiction, h.Current().Regions(c.Jurisdiction))
}

// CheckStandbys refuses a primary that streams to a standby outside the jurisdiction: every
// standby reports its region as application_name (its cluster_name), and each must be one of
// the jurisdiction's regions. A standby whose name the region's role cannot read (it needs
// pg_monitor) is refused too.
func CheckStandbys(sbs []postgres.Standby, jurisdiction string, regions []string) error {
	for _, sb := range sbs {
		if !slices.Contains(regions, sb.Name) {
			return fmt.Errorf("postgres.url: the primary streams to a standby at %s named %q (its cluster_name), which is not a region of jurisdiction %s %v: %w",
				sb.Addr, sb.Name, jurisdiction, regions, ErrOutsideJurisdiction)
		}
	}
	return nil
}

// CheckJurisdictionReplicas refuses a config whose Cassandra data centres are not all regions of
// the region's own jurisdiction as the residency policy lists them (regions, in failover order).
func CheckJurisdictionReplicas(c Config, regions []string) error {
	for _, dc := range slices.Sorted(maps.Keys(c.Cassandra.Replication)) {
		if !slices.Contains(regions, dc) {
			return fmt.Errorf("cassandra.replication: data centre %s is not a region of jurisdiction %s (the residency policy lists %v): %w",
				dc, c.Jurisdiction, regions, ErrOutsideJurisdiction)
		}
	}
	return nil
}

// Migrate creates and migrates the region's database, keyspace and topics, and records that
// they belong to this region. It is idempotent.
func Migrate(ctx context.Context, c Config, log *slog.Logger) error {
	cqlMigs, err := migrate.Load(schema.Cassandra(), "cql")
	if err != nil {
		return err
	}

	// Replication to other regions is checked against the residency policy before anything
	// is created or altered.
	disc, err := discovery.Open(c.Discovery)
	if err != nil {
		return err
	}
	if err := checkPolicyReplicas(ctx, disc, c); err != nil {
		return err
	}
	if err := migrate.Database(ctx, c.Postgres, schema.Postgres(), log); err != nil {
		return err
	}
	pool, err := postgres.Connect(ctx, c.Postgres)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := checkStandbys(ctx, pool, disc, c); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, `INSERT INTO region_info (region, jurisdiction) VALUES ($1, $2) ON CONFLICT DO NOTHING`, c.Name, c.Jurisdiction); err != nil {
		return fmt.Errorf("recording region in postgres: %w", err)
	}
	// Joined only when the database is the jurisdiction's: a region of another jurisdiction
	// pointed at it by mistake is refused below and leaves no trace.
	if _, err := pool.Exec(ctx, `INSERT INTO store_regions (region) SELECT $1 FROM region_info WHERE jurisdiction = $2 ON CONFLICT DO NOTHING`, c.Name, c.Jurisdiction); err != nil {
		return fmt.Errorf("recording region in postgres: %w", err)
	}

	if err := cassandra.EnsureKeyspace(ctx, c.Cassandra); err != nil {
		return err
	}
	sess, err := cassandra.Connect(ctx, c.Cassandra.ForSchema())
	if err != nil {
		return err
	}
	defer sess.Close()
	res, err := migrate.Cassandra(ctx, sess, cqlMigs)
	if err != nil {
		return fmt.Errorf("cassandra %s: %w", c.Cassandra.Keyspace, err)
	}
	log.Info("cassandra migrated", "keyspace", c.Cassandra.Keyspace, "applied", res.Applied)
	if err := sess.Query(`INSERT INTO region_info (singleton, region, jurisdiction, created_at) VALUES (true, ?, ?, ?) IF NOT EXISTS`,
		c.Name, c.Jurisdiction, time.Now()).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("recording region in cassandra: %w", err)
	}

	// The stores are the region's jurisdiction's before anything of the region's own is made.
	if err := checkOwner(ctx, &Stores{PG: pool, Cass: sess}, c); err != nil {
		return err
	}
	created, err := kafka.EnsureTopics(ctx, c.Kafka, int16(c.Replication), c.Topics())
	if err != nil {
		return err
	}
	log.Info("kafka topics ready", "created", created)
	return nil
}
