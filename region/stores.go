package region

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
	"github.com/gocql/gocql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"

	"github.com/herald-notify/herald/platform/cassandra"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/migrate"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/redis"
	"github.com/herald-notify/herald/region/schema"
)

// ErrWrongRegion means a store is recorded as belonging to another region.
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

func checkOwner(ctx context.Context, s *Stores, c Config) error {
	var pgRegion string
	err := s.PG.QueryRow(ctx, `SELECT region FROM region_info`).Scan(&pgRegion)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres database %s: %w", c.Postgres.Database, ErrNotMigrated)
	}
	if err != nil {
		return fmt.Errorf("postgres database %s: reading region_info: %w (run herald migrate)", c.Postgres.Database, err)
	}
	if pgRegion != c.Name {
		return fmt.Errorf("postgres database %s is region %s's, not %s: %w", c.Postgres.Database, pgRegion, c.Name, ErrWrongRegion)
	}
	var cRegion string
	err = s.Cass.Query(`SELECT region FROM region_info WHERE singleton = true`).WithContext(ctx).Scan(&cRegion)
	if errors.Is(err, gocql.ErrNotFound) {
		return fmt.Errorf("cassandra keyspace %s: %w", c.Cassandra.Keyspace, ErrNotMigrated)
	}
	if err != nil {
		return fmt.Errorf("cassandra keyspace %s: reading region_info: %w (run herald migrate)", c.Cassandra.Keyspace, err)
	}
	if cRegion != c.Name {
		return fmt.Errorf("cassandra keyspace %s is region %s's, not %s: %w", c.Cassandra.Keyspace, cRegion, c.Name, ErrWrongRegion)
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

	if err := migrate.Database(ctx, c.Postgres, schema.Postgres(), log); err != nil {
		return err
	}
	pool, err := postgres.Connect(ctx, c.Postgres)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `INSERT INTO region_info (region, jurisdiction) VALUES ($1, $2) ON CONFLICT DO NOTHING`, c.Name, c.Jurisdiction); err != nil {
		return fmt.Errorf("recording region in postgres: %w", err)
	}

	if err := cassandra.EnsureKeyspace(ctx, c.Cassandra); err != nil {
		return err
	}
	sess, err := cassandra.Connect(ctx, c.Cassandra)
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

	created, err := kafka.EnsureTopics(ctx, c.Kafka, int16(c.Replication), c.Topics())
	if err != nil {
		return err
	}
	log.Info("kafka topics ready", "created", created)

	return checkOwner(ctx, &Stores{PG: pool, Cass: sess}, c)
}
