package fanout

import (
	"fmt"
	"time"

	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/region/deadletter"
	"github.com/herald-notify/herald/region/notify"
)

// Config sizes the fan-out stage (a region's `fanout` section).
type Config struct {
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
	InboxBatch int                   `yaml:"inbox_batch"`
	Tiers      map[string]TierConfig `yaml:"tiers"`
}

// SingleNodeInboxBatch is InboxBatch's automatic value on a single-node cluster.
const SingleNodeInboxBatch = 10

// DefaultConfig returns the defaults: transactional gets the most concurrency and the
// shortest maximum age; marketing is capped hard so a blast cannot crowd the others.
func DefaultConfig() Config {
	return Config{
		ChunkSize:           500,
		TopicThreshold:      10_000,
		TopicPacePerSec:     25_000,
		TopicChunksInFlight: 4,
		Tiers: map[string]TierConfig{
			notify.Transactional: {Concurrency: 8, MaxPollRecords: 256, MaxAge: 10 * time.Minute, PartitionWindow: 8},
			notify.Social:        {Concurrency: 4, MaxPollRecords: 256, MaxAge: 6 * time.Hour, PartitionWindow: 8, TxnLinger: 100 * time.Millisecond},
			notify.Marketing:     {Concurrency: 2, MaxPollRecords: 64, MaxAge: 72 * time.Hour, PartitionWindow: 2, TxnLinger: 100 * time.Millisecond},
		},
	}
}

// Validate checks f, naming the bad key (relative to the section).
func (f Config) Validate() error {
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

// TierConfig sizes one tier's consumer. Each tier has its own consumer group and its own
// goroutines: a marketing backlog cannot take transactional capacity.
type TierConfig struct {
	// Concurrency caps the events of this tier processed at once by this process.
	Concurrency int `yaml:"concurrency"`
	// MaxPollRecords bounds how many records the consumer buffers per partition.
	MaxPollRecords int `yaml:"max_poll_records"`
	// MaxAge is how old a delivery may be before it is suppressed as expired (0: no limit).
	MaxAge time.Duration `yaml:"max_age"`
	// FailureRetry bounds the retries of an event that fails transiently (a store down); past
	// it, and at once for a permanent failure, the event goes to "<region>.dlq.fanout.<tier>".
	FailureRetry deadletter.Policy `yaml:"failure_retry"`
	// PartitionWindow is how many events of one partition are handled at once (1: one after
	// another). Events still finish in offset order: each is handed on in the transaction that
	// commits its offset, so a crash repeats only events none of whose records were visible.
	PartitionWindow int `yaml:"partition_window"`
	// TxnLinger is how long a hand-off transaction waits after its first finished event for
	// more (0: it takes what finished while the previous one committed). Fewer, larger
	// transactions cost Kafka less; the tier's tasks wait up to this much longer.
	TxnLinger time.Duration `yaml:"txn_linger"`
}

// Settings is what the stage runs with: c's sizes for region, with inboxBatch, the inbox batch
// size chosen at start when c.InboxBatch is 0 (automatic).
func (c Config) Settings(region string, inboxBatch int) Settings {
	maxAge := make(map[string]time.Duration, len(c.Tiers))
	for tier, t := range c.Tiers {
		maxAge[tier] = t.MaxAge
	}
	return Settings{Region: region, ChunkSize: c.ChunkSize, MaxAge: maxAge, TopicPacePerSec: c.TopicPacePerSec,
		TopicChunksInFlight: c.TopicChunksInFlight, InboxBatch: inboxBatch}
}
