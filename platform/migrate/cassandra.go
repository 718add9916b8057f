package migrate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/gocql/gocql"

	"github.com/herald-notify/herald/platform/retry"
)

// schemaAttempts is how often a schema statement that timed out is sent again.
const schemaAttempts = 4

// execSchema runs one schema statement. One that timed out may still be applied by the server
// (a busy node pushing the change to its peers): since statements are idempotent it is sent
// again, after the cluster agrees on its schema, and any other error is final.
func execSchema(ctx context.Context, s *gocql.Session, stmt string) error {
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		err := s.Query(stmt).WithContext(ctx).Exec()
		if err != nil && !timedOut(err) {
			return struct{}{}, backoff.Permanent(err)
		}
		if err != nil {
			_ = s.AwaitSchemaAgreement(ctx) // best effort: the retry says whether it worked
		}
		return struct{}{}, err
	}, backoff.WithBackOff(retry.Backoff{Initial: time.Second, Max: 5 * time.Second, Jitter: 0.2}.BackOff()),
		backoff.WithMaxTries(schemaAttempts), backoff.WithMaxElapsedTime(0))
	return err
}

// timedOut reports whether err says the statement's outcome is unknown, not that it failed.
func timedOut(err error) bool {
	var wt *gocql.RequestErrWriteTimeout
	return errors.Is(err, gocql.ErrTimeoutNoResponse) || errors.As(err, &wt)
}

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
			if err := execSchema(ctx, s, stmt); err != nil {
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
