//go:build integration

package kafka_test

import (
	"testing"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/kafka"
)

// newClient connects a sarama client with c's settings; the caller closes it.
func newClient(t *testing.T, c kafka.Config) sarama.Client {
	t.Helper()
	sc, err := c.Sarama()
	if err != nil {
		t.Fatal(err)
	}
	client, err := sarama.NewClient(c.Brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	return client
}
