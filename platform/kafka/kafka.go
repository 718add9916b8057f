// Package kafka holds Herald's Kafka client settings (IBM/sarama) and topic administration.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/config"
)

// Config is the Kafka block of every component's config.
type Config struct {
	Brokers []string `yaml:"brokers" env:"HERALD_KAFKA_BROKERS"`
	// Version is the protocol version sarama speaks. Kafka 4.x dropped everything older than 2.1
	// (KIP-896); sarama negotiates per request through ApiVersions from there.
	Version  string `yaml:"version" env:"HERALD_KAFKA_VERSION"`
	ClientID string `yaml:"client_id"`
}

// Defaults returns a Config for a local broker.
func Defaults() Config {
	return Config{Brokers: []string{"127.0.0.1:9092"}, Version: "4.0.0", ClientID: "herald"}
}

// Validate checks the block; keys are relative ("brokers"), callers prefix them.
func (c Config) Validate() error {
	if err := config.HostPorts("brokers", c.Brokers); err != nil {
		return err
	}
	v, err := sarama.ParseKafkaVersion(c.Version)
	if err != nil {
		return config.Errorf("version", c.Version, "not a Kafka version: %v", err)
	}
	if !v.IsAtLeast(sarama.V2_1_0_0) {
		return config.Errorf("version", c.Version, "Kafka 4 brokers need protocol version 2.1.0 or newer")
	}
	return nil
}

// Sarama returns a sarama config for this block: an idempotent producer that waits for every
// in-sync replica (so a successful send is durable), and consumers that commit offsets only when
// the caller marks and commits them.
func (c Config) Sarama() (*sarama.Config, error) {
	v, err := sarama.ParseKafkaVersion(c.Version)
	if err != nil {
		return nil, fmt.Errorf("kafka version %q: %w", c.Version, err)
	}
	sc := sarama.NewConfig()
	sc.Version = v
	sc.ClientID = c.ClientID
	if sc.ClientID == "" {
		sc.ClientID = "herald"
	}
	sc.Net.DialTimeout = 5 * time.Second
	sc.Metadata.Retry.Max = 5
	sc.Metadata.Retry.Backoff = 250 * time.Millisecond

	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Idempotent = true
	sc.Net.MaxOpenRequests = 1 // required by the idempotent producer
	sc.Producer.Retry.Max = 10
	sc.Producer.Retry.Backoff = 100 * time.Millisecond
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	sc.Producer.Compression = sarama.CompressionSnappy

	// Fan-out hands tasks and delivery events on in transactions with its offsets: a consumer
	// must not see the records of a transaction that was aborted (and will be repeated).
	sc.Consumer.IsolationLevel = sarama.ReadCommitted
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Offsets.AutoCommit.Enable = false
	sc.Consumer.Return.Errors = true
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	return sc, nil
}

// Topic describes a topic Herald needs.
type Topic struct {
	Name       string
	Partitions int32
	// Retention is how long records are kept; zero keeps the broker default.
	Retention time.Duration
}

// EnsureTopics creates the topics that do not exist yet and leaves existing ones untouched
// (partition counts only ever grow by hand, since growing them moves keys between partitions).
func EnsureTopics(ctx context.Context, c Config, replication int16, topics []Topic) (created []string, err error) {
	sc, err := c.Sarama()
	if err != nil {
		return nil, err
	}
	admin, err := sarama.NewClusterAdmin(c.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("connecting to kafka %v: %w", c.Brokers, err)
	}
	defer admin.Close()
	existing, err := admin.ListTopics()
	if err != nil {
		return nil, fmt.Errorf("listing topics: %w", err)
	}
	for _, t := range topics {
		if err := ctx.Err(); err != nil {
			return created, err
		}
		if _, ok := existing[t.Name]; ok {
			continue
		}
		detail := &sarama.TopicDetail{NumPartitions: t.Partitions, ReplicationFactor: replication, ConfigEntries: map[string]*string{}}
		if t.Retention > 0 {
			ms := fmt.Sprint(t.Retention.Milliseconds())
			detail.ConfigEntries["retention.ms"] = &ms
		}
		minISR := "1"
		if replication > 2 {
			minISR = "2"
		}
		detail.ConfigEntries["min.insync.replicas"] = &minISR
		if err := admin.CreateTopic(t.Name, detail, false); err != nil {
			if errors.Is(err, sarama.ErrTopicAlreadyExists) {
				continue
			}
			return created, fmt.Errorf("creating topic %s: %w", t.Name, err)
		}
		created = append(created, t.Name)
	}
	return created, nil
}

// TopicRetention reads how long topic keeps its records, as the brokers apply it (the topic's
// retention.ms, or the brokers' default it inherits); forever is true for -1 (kept for ever).
func TopicRetention(ctx context.Context, c Config, topic string) (d time.Duration, forever bool, err error) {
	sc, err := c.Sarama()
	if err != nil {
		return 0, false, err
	}
	admin, err := sarama.NewClusterAdmin(c.Brokers, sc)
	if err != nil {
		return 0, false, fmt.Errorf("connecting to kafka %v: %w", c.Brokers, err)
	}
	defer admin.Close()
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	results, err := admin.DescribeConfigs([]*sarama.ConfigResource{{Type: sarama.TopicResource, Name: topic, ConfigNames: []string{"retention.ms"}}},
		sarama.DescribeConfigsOptions{})
	if err != nil {
		return 0, false, fmt.Errorf("reading the retention of topic %s: %w", topic, err)
	}
	for _, r := range results {
		if r.Name != topic {
			continue
		}
		if r.ErrorCode != sarama.ErrNoError {
			return 0, false, fmt.Errorf("reading the retention of topic %s: %w (%s)", topic, r.ErrorCode, r.ErrorMsg)
		}
		for _, e := range r.Configs {
			if e.Name == "retention.ms" {
				return parseRetention(topic, e.Value)
			}
		}
	}
	return 0, false, fmt.Errorf("reading the retention of topic %s: the brokers did not report retention.ms", topic)
}

// parseRetention reads a retention.ms value; -1 (any negative) keeps records for ever.
func parseRetention(topic, value string) (time.Duration, bool, error) {
	ms, err := strconv.ParseInt(value, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("reading the retention of topic %s: retention.ms %q: %w", topic, value, err)
	}
	if ms < 0 {
		return 0, true, nil
	}
	return time.Duration(ms) * time.Millisecond, false, nil
}

// Ping checks that the cluster answers a metadata request.
func Ping(ctx context.Context, client sarama.Client) error {
	done := make(chan error, 1)
	go func() { done <- client.RefreshMetadata() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
