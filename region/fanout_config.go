package region

import (
	"fmt"
	"time"

	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/region/deadletter"
	"github.com/herald-notify/herald/region/fanout"
	"github.com/herald-notify/herald/region/notify"
)

// FanoutConfig sizes the fan-out stage.
type FanoutConfig struct {
	// ChunkSize is how many recipients are decided together (one profile query, one batch).
	ChunkSize int `yaml:"chunk_size"`
	// TopicThreshold is the subscriber count above which a topic send fans out on read; it can
	// also be changed at run time through the discovery key herald/regions/<name>/topic_threshold.
	TopicThreshold  int64 `yaml:"topic_threshold"`
	TopicPacePerSec int   `yaml:"topic_pace_per_sec"`
	// TopicChunksInFlight is how many chunks of one topic's subscribers are decided at once.
	TopicChunksInFlight int `yaml:"topic_chunks_in_flight"`
	// InboxBatch is how many in-app rows of different users go in one unlogged batch; 0 picks
	// at start: 10 when Cassandra is one node (the coordinator holds every replica, and
	// Cassandra warns past 10 partitions in a batch), else 1, since across a larger cluster
	// a coordinator would forward most rows of a batch.
	InboxBatch int                          `yaml:"inbox_batch"`
	Tiers      map[string]fanout.TierConfig `yaml:"tiers"`
}

// singleNodeInboxBatch is InboxBatch's automatic value on a single-node cluster.
const singleNodeInboxBatch = 10

// SchedulerConfig sizes the scheduler.
type SchedulerConfig struct {
	Interval time.Duration `yaml:"interval"`
	Batch    int           `yaml:"batch"`
	// FailureRetry bounds how long a due event that fails transiently is tried again; past it,
	// and at once for a permanent failure, it goes to "<region>.dlq.scheduler".
	FailureRetry deadletter.Policy `yaml:"failure_retry"`
}

// DefaultFanoutConfig returns the defaults: transactional gets the most concurrency and the
// shortest maximum age; marketing is capped hard so a blast cannot crowd the others.
func DefaultFanoutConfig() FanoutConfig {
	return FanoutConfig{
		ChunkSize:           500,
		TopicThreshold:      10_000,
		TopicPacePerSec:     25_000,
		TopicChunksInFlight: 4,
		Tiers: map[string]fanout.TierConfig{
			notify.Transactional: {Concurrency: 8, MaxPollRecords: 256, MaxAge: 10 * time.Minute, PartitionWindow: 8},
			notify.Social:        {Concurrency: 4, MaxPollRecords: 256, MaxAge: 6 * time.Hour, PartitionWindow: 8, TxnLinger: 100 * time.Millisecond},
			notify.Marketing:     {Concurrency: 2, MaxPollRecords: 64, MaxAge: 72 * time.Hour, PartitionWindow: 2, TxnLinger: 100 * time.Millisecond},
		},
	}
}

func (f FanoutConfig) validate() error {
	if f.ChunkSize < 1 || f.ChunkSize > 10_000 {
		return config.Errorf("chunk_size", fmt.Sprint(f.ChunkSize), "must be 1-10000")
	}
	if f.TopicThreshold < 0 {
		return config.Errorf("topic_threshold", fmt.Sprint(f.TopicThreshold), "must not be negative")
	}
	if f.TopicChunksInFlight < 1 || f.TopicChunksInFlight > 64 {
		return config.Errorf("topic_chunks_in_flight", fmt.Sprint(f.TopicChunksInFlight), "must be 1-64")
	}
	if f.InboxBatch < 0 || f.InboxBatch > 100 {
		return config.Errorf("inbox_batch", fmt.Sprint(f.InboxBatch), "must be 0-100 (0: automatic)")
	}
	if f.TopicPacePerSec < 0 {
		return config.Errorf("topic_pace_per_sec", fmt.Sprint(f.TopicPacePerSec), "must not be negative")
	}
	for name, t := range f.Tiers {
		key := "tiers." + name
		known := false
		for _, tier := range notify.Tiers {
			known = known || tier == name
		}
		if !known {
			return config.Errorf(key, name, "unknown tier (transactional, social, marketing)")
		}
		if t.Concurrency < 1 || t.Concurrency > 1024 {
			return config.Errorf(key+".concurrency", fmt.Sprint(t.Concurrency), "must be 1-1024")
		}
		if t.PartitionWindow < 0 || t.PartitionWindow > 1024 {
			return config.Errorf(key+".partition_window", fmt.Sprint(t.PartitionWindow), "must be 0-1024 (0 or 1: one event at a time)")
		}
		if t.MaxPollRecords < 1 || t.MaxPollRecords > 100_000 {
			return config.Errorf(key+".max_poll_records", fmt.Sprint(t.MaxPollRecords), "must be 1-100000")
		}
		if t.TxnLinger < 0 || t.TxnLinger > time.Second {
			return config.Errorf(key+".txn_linger", t.TxnLinger.String(), "must be 0-1s")
		}
		if t.MaxAge < 0 {
			return config.Errorf(key+".max_age", t.MaxAge.String(), "must not be negative")
		}
		if err := t.FailureRetry.Validate(); err != nil {
			return config.Prefix(key+".failure_retry", err)
		}
	}
	for _, tier := range notify.Tiers {
		if _, ok := f.Tiers[tier]; !ok {
			return config.Errorf("tiers."+tier, "", "is required")
		}
	}
	return nil
}
