package region

import (
	"strings"
	"testing"

	"github.com/herald-notify/herald/region/dispatch"
)

func TestTopicsTakeTheirPartitionCountsByKind(t *testing.T) {
	tests := []struct {
		name                         string
		topics, retry, dlq           int
		wantMain, wantRetry, wantDLQ int32
	}{
		{"retry as topic_partitions when unset", 4, 0, 1, 4, 4, 1},
		{"retry and dead letters on their own", 12, 2, 3, 12, 2, 3},
		{"one partition everywhere", 1, 1, 1, 1, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Name: "eu-west-1", TopicPartitions: tt.topics, RetryTopicPartitions: tt.retry, DeadLetterTopicPartitions: tt.dlq}
			seen := map[string]bool{}
			var retries, dlqs int
			for _, tp := range c.Topics() {
				if seen[tp.Name] {
					t.Fatalf("topic %s listed twice", tp.Name)
				}
				seen[tp.Name] = true
				want := tt.wantMain
				switch {
				case strings.Contains(tp.Name, ".retry."):
					want = tt.wantRetry
					retries++
				case strings.Contains(tp.Name, ".dlq"):
					want = tt.wantDLQ
					dlqs++
				}
				if tp.Partitions != want {
					t.Errorf("%s: %d partitions, want %d", tp.Name, tp.Partitions, want)
				}
			}
			if want := len(Tiers) * len(DispatchChannels) * dispatch.RetryLevels; retries != want {
				t.Errorf("%d retry topics, want %d", retries, want)
			}
			if want := len(DeadLetterStages()) + len(DispatchChannels); dlqs != want {
				t.Errorf("%d dead-letter topics, want %d", dlqs, want)
			}
		})
	}
}
