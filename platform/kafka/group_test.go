package kafka

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// sessions is a consumer group whose sessions end as results says, one after another.
type sessions struct {
	sarama.ConsumerGroup // only Consume is called
	results              []error
	calls                int
}

func (s *sessions) Consume(ctx context.Context, _ []string, _ sarama.ConsumerGroupHandler) error {
	s.calls++
	if s.calls > len(s.results) {
		return sarama.ErrClosedConsumerGroup
	}
	return s.results[s.calls-1]
}

func TestConsumeBeginsSessionsAgainUntilTheGroupIsClosedAndTellsObserveEachEnd(t *testing.T) {
	old := ConsumeRetry
	ConsumeRetry.Initial, ConsumeRetry.Max = time.Millisecond, time.Millisecond
	defer func() { ConsumeRetry = old }()
	down := errors.New("broker down")
	g := &sessions{results: []error{nil, down, down, nil}}
	var seen []error
	done := make(chan struct{})
	go func() {
		defer close(done)
		Consume(context.Background(), g, []string{"t"}, nil, slog.New(slog.DiscardHandler), func(err error) { seen = append(seen, err) })
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Consume did not return once the group was closed")
	}
	if g.calls != 5 || len(seen) != 5 || seen[1] != down || seen[3] != nil || !errors.Is(seen[4], sarama.ErrClosedConsumerGroup) {
		t.Fatalf("%d sessions, observed %v; want 5: a rebalance, two failures, a rebalance, then closed", g.calls, seen)
	}
}

func TestConsumeReturnsWhenItsContextEndsDuringAWait(t *testing.T) {
	old := ConsumeRetry
	ConsumeRetry.Initial, ConsumeRetry.Max = time.Hour, time.Hour
	defer func() { ConsumeRetry = old }()
	ctx, cancel := context.WithCancel(context.Background())
	g := &sessions{results: []error{errors.New("broker down")}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Consume(ctx, g, nil, nil, slog.New(slog.DiscardHandler), func(error) { cancel() })
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Consume waited its hour after the context ended")
	}
}
