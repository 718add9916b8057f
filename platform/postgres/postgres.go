// Package postgres holds Herald's PostgreSQL pool settings (pgx).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/platform/config"
)

// Config is the Postgres block: a server URL and the database this component owns on it.
type Config struct {
	URL      string `yaml:"url" env:"HERALD_POSTGRES_URL"`
	Database string `yaml:"database"`
	MaxConns int    `yaml:"max_conns"`
}

// Defaults returns a Config for a local server.
func Defaults() Config {
	return Config{URL: "postgres://herald@127.0.0.1:5432/postgres?sslmode=disable", MaxConns: 10}
}

var dbRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// Validate checks the block; keys are relative, callers prefix them.
func (c Config) Validate() error {
	if _, err := pgx.ParseConfig(c.URL); err != nil {
		return config.Errorf("url", redact(c.URL), "not a postgres URL: %v", err)
	}
	if !dbRE.MatchString(c.Database) {
		return config.Errorf("database", c.Database, "must match %s", dbRE)
	}
	if c.MaxConns < 1 {
		return config.Errorf("max_conns", fmt.Sprint(c.MaxConns), "must be at least 1")
	}
	return nil
}

// redact hides a password in a URL for error messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// DatabaseURL returns the server URL pointed at the component's database.
func (c Config) DatabaseURL() (string, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return "", fmt.Errorf("parsing postgres url: %w", err)
	}
	u.Path = "/" + c.Database
	return u.String(), nil
}

// Connect opens a pool on the component's database.
func Connect(ctx context.Context, c Config) (*pgxpool.Pool, error) {
	dbURL, err := c.DatabaseURL()
	if err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("postgres config: %w", err)
	}
	pc.MaxConns = int32(c.MaxConns)
	pc.ConnConfig.ConnectTimeout = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connecting to postgres database %s: %w", c.Database, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to postgres database %s: %w", c.Database, err)
	}
	return pool, nil
}

// EnsureDatabase creates the component's database on the server if it does not exist.
func EnsureDatabase(ctx context.Context, c Config) error {
	if !dbRE.MatchString(c.Database) {
		return fmt.Errorf("invalid database name %q", c.Database)
	}
	conn, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		return fmt.Errorf("connecting to postgres server: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, c.Database).Scan(&exists); err != nil {
		return fmt.Errorf("looking up database %s: %w", c.Database, err)
	}
	if exists {
		return nil
	}
	// The name was checked against dbRE above, so it is safe to splice.
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+c.Database); err != nil {
		var pgErr *pgconn.PgError
		// Created concurrently: 42P04 when the other creation committed first, 23505 (the
		// catalogue's unique index) when both were under way.
		if errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "23505") {
			return nil
		}
		return fmt.Errorf("creating database %s: %w", c.Database, err)
	}
	return nil
}

// Standby is a standby streaming from a primary, as pg_stat_replication shows it.
type Standby struct {
	// Name is its application_name: the standby's cluster_name unless its primary_conninfo
	// sets one. Empty when the connected role may not see it (it needs pg_monitor).
	Name  string
	Addr  string // client address, "local" for a Unix socket
	State string // streaming, catchup, ...
}

// Standbys lists the standbys streaming from the server db is connected to (none on a standby
// or a server without replication).
func Standbys(ctx context.Context, db interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}) ([]Standby, error) {
	rows, err := db.Query(ctx, `SELECT coalesce(application_name, ''), coalesce(client_addr::text, 'local'), coalesce(state, '') FROM pg_stat_replication`)
	if err != nil {
		return nil, fmt.Errorf("listing standbys: %w", err)
	}
	var out []Standby
	var sb Standby
	if _, err := pgx.ForEachRow(rows, []any{&sb.Name, &sb.Addr, &sb.State}, func() error { out = append(out, sb); return nil }); err != nil {
		return nil, fmt.Errorf("listing standbys: %w", err)
	}
	return out, nil
}
