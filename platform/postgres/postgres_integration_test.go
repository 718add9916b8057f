//go:build integration

package postgres_test

import (
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/testenv"
)

func TestPostgresQueryOnOwnDatabase(t *testing.T) {
	c := testenv.Postgres(t)
	ctx := testenv.Context(t, 30*time.Second)
	pool, err := postgres.Connect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var db string
	var sum int
	if err := pool.QueryRow(ctx, `SELECT current_database(), $1::int + $2::int`, 40, 2).Scan(&db, &sum); err != nil {
		t.Fatal(err)
	}
	if db != c.Database || sum != 42 {
		t.Fatalf("got database %q sum %d", db, sum)
	}
	// Creating an existing database is not an error.
	if err := postgres.EnsureDatabase(ctx, c); err != nil {
		t.Fatal(err)
	}
}
