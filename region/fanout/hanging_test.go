package fanout

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

func TestAGroupRefusedItsOffsetsLooksForHangingTransactionsAfterATransactionTimeout(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 15, 30, 0, 0, time.UTC)
	unstable := sarama.ErrUnstableOffsetCommit
	// As the fan-out logged it: "consume failed; retrying ... There are unstable offsets that
	// need to be cleared", whether sarama hands the error over bare, wrapped or as text.
	text := errors.New("kafka server: " + sarama.ErrUnstableOffsetCommit.Error())
	steps := []struct {
		at   time.Duration
		err  error
		want bool
	}{
		{0, unstable, false},
		{5 * time.Second, fmt.Errorf("joining: %w", unstable), false},
		{9 * time.Second, text, false},
		{10 * time.Second, unstable, true},  // refused for 10 s: look
		{15 * time.Second, unstable, false}, // not again within 10 s
		{20 * time.Second, unstable, true},
		{21 * time.Second, nil, false}, // it started: the count starts again
		{22 * time.Second, unstable, false},
		{31 * time.Second, unstable, false},
		{32 * time.Second, unstable, true},
		{33 * time.Second, sarama.ErrOutOfBrokers, false}, // another failure: again from zero
		{40 * time.Second, unstable, false},
	}
	w := unstableWatch{after: hangingAfter}
	for _, s := range steps {
		if got := w.observe(s.err, t0.Add(s.at)); got != s.want {
			t.Fatalf("at +%s with %v: look = %v, want %v", s.at, s.err, got, s.want)
		}
	}
}
