// Package testenv gives integration tests the real servers that `make test` starts, and names
// that no other test run uses, so tests can run in parallel and be rerun. A missing server fails
// the test: integration tests never skip silently.
package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/cassandra"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/redis"
)

var loadOnce sync.Once

// Root is the repository root (the directory holding go.mod).
func Root() string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// load reads .herald/stack.env (written by make up) for variables not already set.
func load() {
	loadOnce.Do(func() {
		home := os.Getenv("HERALD_HOME")
		if home == "" {
			home = filepath.Join(Root(), ".herald")
		}
		f, err := os.Open(filepath.Join(home, "stack.env"))
		if err != nil {
			return
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
			if ok && os.Getenv(k) == "" {
				os.Setenv(k, v)
			}
		}
	})
}

func require(t testing.TB, name string) string {
	t.Helper()
	load()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set and .herald/stack.env has no value: start the servers with `make up` (or run `make test`)", name)
	}
	return v
}

// Suffix returns a short random lowercase suffix for names private to one test.
func Suffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Context returns a context that ends with the test or after d.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Kafka returns the Kafka block for the running broker.
func Kafka(t testing.TB) kafka.Config {
	c := kafka.Defaults()
	c.Brokers = strings.Split(require(t, "HERALD_KAFKA_BROKERS"), ",")
	c.ClientID = "herald-test"
	return c
}

// Postgres returns a Postgres block with a database private to this test, created now and
// dropped when the test ends.
func Postgres(t testing.TB) postgres.Config {
	t.Helper()
	c := postgres.Defaults()
	c.URL = require(t, "HERALD_POSTGRES_URL")
	c.Database = "test_" + Suffix()
	ctx := Context(t, 30*time.Second)
	if err := postgres.EnsureDatabase(ctx, c); err != nil {
		t.Fatalf("creating test database: %v", err)
	}
	t.Cleanup(func() { DropDatabase(t, c) })
	return c
}

// Cassandra returns a Cassandra block with a keyspace private to this test, created now and
// dropped when the test ends.
func Cassandra(t testing.TB) cassandra.Config {
	t.Helper()
	c := cassandra.Defaults()
	c.Hosts = strings.Split(require(t, "HERALD_CASSANDRA_HOSTS"), ",")
	c.Keyspace = "test_" + Suffix()
	c.Consistency = "ONE"
	c.Timeout = 20 * time.Second
	ctx := Context(t, time.Minute)
	if err := cassandra.EnsureKeyspace(ctx, c); err != nil {
		t.Fatalf("creating test keyspace: %v", err)
	}
	t.Cleanup(func() { DropKeyspace(t, c) })
	return c
}

// Redis returns a Redis block with a key prefix private to this test; its keys are removed
// when the test ends.
func Redis(t testing.TB) redis.Config {
	c := redis.Defaults()
	c.Addr = require(t, "HERALD_REDIS_ADDR")
	c.Prefix = "test-" + Suffix() + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rdb, err := redis.Connect(ctx, c)
		if err != nil {
			t.Errorf("cleaning test keys: %v", err)
			return
		}
		defer rdb.Close()
		iter := rdb.Scan(ctx, 0, c.Prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Unlink(ctx, iter.Val())
		}
	})
	return c
}
