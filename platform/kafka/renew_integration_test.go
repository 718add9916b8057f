//go:build integration

package kafka_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/eapache/go-resiliency/breaker"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/testenv"
)

// sarama opens a topic's breaker after three failures in a row and then refuses every record
// of the topic for 10 s, also once the cause is gone. The producer replaces its sarama producer
// as soon as the cluster answers: records of a topic whose metadata failed three times (here, a
// topic that did not exist yet) are taken within a few seconds of the topic appearing, not
// after the breaker's 10 s.
func TestAProducerWhoseBreakerOpenedProducesAgainSoonAfterTheCauseIsGone(t *testing.T) {
	c := testenv.Kafka(t)
	ctx := testenv.Context(t, time.Minute)
	topic := "test.renew." + testenv.Suffix()
	testenv.DeleteTopics(t, c, topic)
	p, err := kafka.NewProducer(c)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var open bool
	for i := 0; i < 10 && !open; i++ {
		err := p.Send(ctx, kafka.Message{Topic: topic, Value: []byte("x")})
		if err == nil {
			t.Fatal("a record to a topic that does not exist was acknowledged")
		}
		open = errors.Is(err, breaker.ErrBreakerOpen)
	}
	if !open {
		t.Fatal("the topic's breaker did not open after ten failures: the test no longer shows what it is for")
	}
	if _, err := kafka.EnsureTopics(ctx, c, 1, []kafka.Topic{{Name: topic, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	deadline := created.Add(5 * time.Second) // half the breaker's 10 s
	for {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := p.Send(sctx, kafka.Message{Topic: topic, Value: []byte("y")})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused %s after the topic was created: %v", time.Since(created).Round(time.Millisecond), err)
		}
		time.Sleep(100 * time.Millisecond) // pacing the retries of a producer, not synchronisation
	}
	if p.Renewals() < 1 {
		t.Fatal("acknowledged without a renewal: the breaker was not what held the records")
	}
	t.Logf("taken %s after the topic was created (%d renewals)", time.Since(created).Round(time.Millisecond), p.Renewals())
}
