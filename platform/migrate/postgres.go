package migrate

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/platform/postgres"
)

// Postgres applies migrations to the database behind pool, one transaction per migration, under
// an advisory lock so that two processes migrating at once take turns.
func Postgres(ctx context.Context, pool *pgxpool.Pool, migrations []Migration) (Result, error) {
	var res Result
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return res, fmt.Errorf("acquiring connection: %w", err)
	}
	defer conn.Release()
	const lockKey = 7_368_716_504 // "herald" migrations
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, lockKey); err != nil {
		return res, fmt.Errorf("taking migration lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, lockKey) //nolint:errcheck // released with the session anyway

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version int PRIMARY KEY,
		name text NOT NULL,
		checksum text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return res, fmt.Errorf("creating schema_migrations: %w", err)
	}
	applied := map[int]string{}
	rows, err := conn.Query(ctx, `SELECT version, checksum FROM schema_migrations`)
	if err != nil {
		return res, fmt.Errorf("reading schema_migrations: %w", err)
	}
	for rows.Next() {
		var v int
		var sum string
		if err := rows.Scan(&v, &sum); err != nil {
			return res, err
		}
		applied[v] = sum
	}
	if err := rows.Err(); err != nil {
		return res, err
	}
	for _, m := range migrations {
		if sum, ok := applied[m.Version]; ok {
			if sum != m.Checksum {
				return res, &ChangedError{Version: m.Version, Name: m.Name}
			}
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.Body); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)`, m.Version, m.Name, m.Checksum)
			return err
		})
		if err != nil {
			return res, fmt.Errorf("applying migration %s: %w", label(m), err)
		}
		res.Applied = append(res.Applied, label(m))
	}
	return res, nil
}

// Database creates the database of c if missing and applies the migrations in fsys to it.
func Database(ctx context.Context, c postgres.Config, fsys fs.FS, log *slog.Logger) error {
	migs, err := Load(fsys, "sql")
	if err != nil {
		return err
	}
	if err := postgres.EnsureDatabase(ctx, c); err != nil {
		return err
	}
	pool, err := postgres.Connect(ctx, c)
	if err != nil {
		return err
	}
	defer pool.Close()
	res, err := Postgres(ctx, pool, migs)
	if err != nil {
		return fmt.Errorf("postgres %s: %w", c.Database, err)
	}
	log.Info("postgres migrated", "database", c.Database, "applied", res.Applied)
	return nil
}
