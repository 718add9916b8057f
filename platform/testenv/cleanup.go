package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"

	"github.com/herald-notify/herald/platform/cassandra"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/postgres"
)

// DropDatabase drops a test database (WITH FORCE closes leftover connections).
func DropDatabase(t testing.TB, c postgres.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		t.Errorf("dropping database %s: %v", c.Database, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+c.Database+" WITH (FORCE)"); err != nil {
		t.Errorf("dropping database %s: %v", c.Database, err)
	}
}

// DropKeyspace drops a test keyspace.
func DropKeyspace(t testing.TB, c cassandra.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := cassandra.DropKeyspace(ctx, c, c.Keyspace); err != nil {
		t.Errorf("dropping keyspace %s: %v", c.Keyspace, err)
	}
}

// DeleteTopics deletes test topics when the test ends.
func DeleteTopics(t testing.TB, c kafka.Config, topics ...string) {
	t.Cleanup(func() {
		sc, err := c.Sarama()
		if err != nil {
			t.Errorf("deleting topics: %v", err)
			return
		}
		admin, err := sarama.NewClusterAdmin(c.Brokers, sc)
		if err != nil {
			t.Errorf("deleting topics: %v", err)
			return
		}
		defer admin.Close()
		for _, tp := range topics {
			if err := admin.DeleteTopic(tp); err != nil && err != sarama.ErrUnknownTopicOrPartition {
				t.Errorf("deleting topic %s: %v", tp, err)
			}
		}
	})
}
