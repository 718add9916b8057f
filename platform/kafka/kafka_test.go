package kafka

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/eapache/go-resiliency/breaker"
)

func TestProducerRetriesOutlastABrokerFailover(t *testing.T) {
	sc, err := Config{Brokers: []string{"127.0.0.1:9092"}, Version: "4.0.0"}.Sarama()
	if err != nil {
		t.Fatal(err)
	}
	var total time.Duration
	for i := range sc.Producer.Retry.Max {
		d := sc.Producer.Retry.BackoffFunc(i, sc.Producer.Retry.Max)
		if d <= 0 || d > 500*time.Millisecond {
			t.Errorf("retry %d waits %v: want (0, 500ms], so a send finds the new leader soon after a failover", i, d)
		}
		total += d
	}
	// A dead broker is fenced after its session (3 s locally, 9 s by default) and its
	// partitions move: the retries must span several sessions.
	if total < 25*time.Second {
		t.Errorf("the retries span %v, want at least 25s", total)
	}
}

func TestRetriableTellsAFailoverFromARecordRefusedForWhatItIs(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"no leader while a broker is fenced", sarama.ErrLeaderNotAvailable, true},
		{"leader moved", sarama.ErrNotLeaderForPartition, true},
		{"too few in-sync replicas", sarama.ErrNotEnoughReplicas, true},
		{"no broker reachable", sarama.ErrOutOfBrokers, true},
		{"breaker open", breaker.ErrBreakerOpen, true},
		{"connection closed by a stopping broker", io.EOF, true},
		{"connection refused, wrapped", fmt.Errorf("dial: %w", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}), true},
		{"connection reset", syscall.ECONNRESET, true},
		{"record too large", sarama.ErrMessageSizeTooLarge, false},
		{"unknown topic", sarama.ErrUnknownTopicOrPartition, false},
		{"topic forbidden", sarama.ErrTopicAuthorizationFailed, false},
		{"producer closed", sarama.ErrClosedClient, false},
		{"producer shutting down", sarama.ErrShuttingDown, false},
		{"anything else", errors.New("boom"), false},
	}
	for _, tt := range tests {
		if got := Retriable(tt.err); got != tt.want {
			t.Errorf("%s: Retriable(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestValidateNamesABadRetryWindow(t *testing.T) {
	for _, tt := range []struct {
		window time.Duration
		ok     bool
	}{{0, true}, {time.Second, true}, {10 * time.Minute, true}, {999 * time.Millisecond, false}, {-time.Second, false}, {11 * time.Minute, false}} {
		c := Defaults()
		c.RetryWindow = tt.window
		err := c.Validate()
		if (err == nil) != tt.ok || (err != nil && !strings.Contains(err.Error(), "retry_window")) {
			t.Errorf("retry_window %v: %v", tt.window, err)
		}
	}
}
