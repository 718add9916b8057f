package migrate

import (
	"context"
	"fmt"
	"time"

	"github.com/gocql/gocql"
)

// Cassandra applies migrations to the session's keyspace. CQL has no transactions, so each
// statement should be idempotent (IF NOT EXISTS); a migration that failed half-way is rerun
// whole on the next attempt, and the record is written only after every statement succeeded.
func Cassandra(ctx context.Context, s *gocql.Session, migrations []Migration) (Result, error) {
	var res Result
	if err := s.Query(`CREATE TABLE IF NOT EXISTS schema_migrations (
		version int PRIMARY KEY, name text, checksum text, applied_at timestamp)`).WithContext(ctx).Exec(); err != nil {
		return res, fmt.Errorf("creating schema_migrations: %w", err)
	}
	applied := map[int]string{}
	iter := s.Query(`SELECT version, checksum FROM schema_migrations`).WithContext(ctx).Iter()
	var v int
	var sum string
	for iter.Scan(&v, &sum) {
		applied[v] = sum
	}
	if err := iter.Close(); err != nil {
		return res, fmt.Errorf("reading schema_migrations: %w", err)
	}
	for _, m := range migrations {
		if sum, ok := applied[m.Version]; ok {
			if sum != m.Checksum {
				return res, &ChangedError{Version: m.Version, Name: m.Name}
			}
			continue
		}
		for _, stmt := range Statements(m.Body) {
			if err := s.Query(stmt).WithContext(ctx).Exec(); err != nil {
				return res, fmt.Errorf("applying migration %s: %w\nstatement: %s", label(m), err, stmt)
			}
		}
		if err := s.Query(`INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)`,
			m.Version, m.Name, m.Checksum, time.Now()).WithContext(ctx).Exec(); err != nil {
			return res, fmt.Errorf("recording migration %s: %w", label(m), err)
		}
		res.Applied = append(res.Applied, label(m))
	}
	return res, nil
}
