package webhooks

import (
	"fmt"
	"strconv"
	"time"

	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/region/deadletter"
)

// Config is the webhooks block of a region's config.
type Config struct {
	// Horizon is how long an event is retried, counted from its first attempt; past it the
	// delivery is a dead letter (replayable through the API).
	Horizon time.Duration `yaml:"horizon" env:"HERALD_WEBHOOKS_HORIZON"`
	// InitialInterval, Multiplier and MaxInterval shape the exponential backoff between
	// attempts; Jitter (0-1) spreads each wait by up to that share either way.
	InitialInterval time.Duration `yaml:"initial_interval" env:"HERALD_WEBHOOKS_INITIAL_INTERVAL"`
	Multiplier      float64       `yaml:"multiplier"`
	MaxInterval     time.Duration `yaml:"max_interval" env:"HERALD_WEBHOOKS_MAX_INTERVAL"`
	Jitter          float64       `yaml:"jitter"`
	// Timeout bounds one delivery attempt (connect, send, answer).
	Timeout time.Duration `yaml:"timeout"`
	// PollInterval is how often the deliverer looks for due deliveries when it found none.
	PollInterval time.Duration `yaml:"poll_interval" env:"HERALD_WEBHOOKS_POLL_INTERVAL"`
	// Batch is how many due deliveries one pass claims; Concurrency how many are sent at once.
	Batch       int `yaml:"batch"`
	Concurrency int `yaml:"concurrency"`
	// Breaker is the circuit breaker each endpoint has.
	Breaker BreakerConfig `yaml:"breaker"`
	// AllowLoopbackHTTP lets endpoints use http:// to a loopback host (127.0.0.1, ::1,
	// localhost): the local stack and its simulator receiver. Production endpoints are https.
	AllowLoopbackHTTP bool `yaml:"allow_loopback_http" env:"HERALD_WEBHOOKS_ALLOW_LOOPBACK_HTTP"`
	// EndpointCacheTTL is how long the consumer keeps an app's endpoint list before reading it
	// again (a new endpoint receives the events consumed after that).
	EndpointCacheTTL time.Duration `yaml:"endpoint_cache_ttl"`
	// TakeoverAfter is how long another region's pending delivery must be overdue before this
	// region of the same jurisdiction delivers it (the other is down).
	TakeoverAfter time.Duration `yaml:"takeover_after"`
	// FailureRetry bounds the retries of an events record whose deliveries cannot be stored for
	// a transient reason (Postgres down); past it, and at once for a permanent one (a record
	// that does not decode, data Postgres refuses), the record goes to "<region>.dlq.webhooks"
	// and the partition moves on.
	FailureRetry deadletter.Policy `yaml:"failure_retry"`
	// DeliveredRetention is how long a delivered delivery's row is kept after it was delivered,
	// DeadLetterRetention how long a dead letter is kept (replayable) after it died; the
	// retention sweeper deletes them after that. A row is what makes a redelivered events
	// record insert nothing: both must outlast anything that can make the consumer read an
	// event again (MinRetention).
	DeliveredRetention  time.Duration `yaml:"delivered_retention" env:"HERALD_WEBHOOKS_DELIVERED_RETENTION"`
	DeadLetterRetention time.Duration `yaml:"dead_letter_retention" env:"HERALD_WEBHOOKS_DEAD_LETTER_RETENTION"`
	// SweepInterval is how often the sweeper looks for rows past their retention; each sweep
	// deletes them SweepBatch at a time until none is left.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	SweepBatch    int           `yaml:"sweep_batch"`
}

// EventsTopicRetention is how long Kafka keeps the records of a region's events topic, the
// topic the consumer reads: Herald creates the topic with it (retention.ms), whatever the
// brokers' default (24 h in stack/kafka and terraform/modules/region/kafka.tf; a week on a Kafka
// left as installed). Past it a record can no longer be read again.
const EventsTopicRetention = 24 * time.Hour

// retentionMargin is added to the longest window in which an event can be read again.
const retentionMargin = time.Hour

// maxRetention bounds both retentions: far beyond it the table only grows.
const maxRetention = 90 * 24 * time.Hour

// MinRetention is the shortest retention of a delivered or dead delivery: the consumer may read
// an events record again (a crash or rebalance before its offset was committed, offsets reset
// to the oldest) for as long as Kafka keeps it, and a delivery is retried for up to the horizon
// before it is done; a row deleted before either ends would be inserted, and sent, again. The
// longer of the two plus an hour.
func (c Config) MinRetention() time.Duration {
	return max(EventsTopicRetention, c.Horizon) + retentionMargin
}

// BreakerConfig opens an endpoint's breaker after ConsecutiveFailures failed attempts in a row;
// while open, its deliveries wait OpenFor, then one probe is sent.
type BreakerConfig struct {
	ConsecutiveFailures uint32        `yaml:"consecutive_failures"`
	OpenFor             time.Duration `yaml:"open_for"`
}

// DefaultConfig is the production schedule: 5 s, doubling, at most an hour apart, for 24 h.
func DefaultConfig() Config {
	return Config{
		Horizon: 24 * time.Hour, InitialInterval: 5 * time.Second, Multiplier: 2, MaxInterval: time.Hour, Jitter: 0.2,
		Timeout: 10 * time.Second, PollInterval: 500 * time.Millisecond, Batch: 200, Concurrency: 32,
		Breaker:          BreakerConfig{ConsecutiveFailures: 5, OpenFor: 30 * time.Second},
		EndpointCacheTTL: 5 * time.Second, TakeoverAfter: 2 * time.Minute,
		DeliveredRetention: 72 * time.Hour, DeadLetterRetention: 14 * 24 * time.Hour,
		SweepInterval: time.Minute, SweepBatch: 5000,
	}
}

// CheckTopicRetention refuses a delivered_retention or dead_letter_retention that does not
// outlast, by the margin, the retention the brokers apply to the events topic (read at start:
// Validate knows only the 24 h Herald's brokers are set up with); forever is a topic that keeps
// its records for ever, which no retention outlasts.
func (c Config) CheckTopicRetention(topic string, retention time.Duration, forever bool) error {
	if forever {
		return config.Errorf("delivered_retention", c.DeliveredRetention.String(),
			"cannot outlast the retention of topic %s, which keeps its records for ever (retention.ms -1): a record read again after its row is deleted is delivered again; give the topic a retention", topic)
	}
	need := retention + retentionMargin
	switch {
	case c.DeliveredRetention < need:
		return config.Errorf("delivered_retention", c.DeliveredRetention.String(),
			"must be at least %s: topic %s keeps its records %s (retention.ms), plus %s, so a redelivered events record still finds its row", need, topic, retention, retentionMargin)
	case c.DeadLetterRetention < need:
		return config.Errorf("dead_letter_retention", c.DeadLetterRetention.String(),
			"must be at least %s: topic %s keeps its records %s (retention.ms), plus %s, so a redelivered events record still finds its row", need, topic, retention, retentionMargin)
	}
	return nil
}

// Validate checks every key (names relative to the block).
func (c Config) Validate() error {
	switch {
	case c.Horizon < time.Second || c.Horizon > 7*24*time.Hour:
		return config.Errorf("horizon", c.Horizon.String(), "must be 1s-168h")
	case c.InitialInterval < time.Millisecond || c.InitialInterval > c.Horizon:
		return config.Errorf("initial_interval", c.InitialInterval.String(), "must be 1ms up to the horizon")
	case c.Multiplier < 1 || c.Multiplier > 10:
		return config.Errorf("multiplier", strconv.FormatFloat(c.Multiplier, 'g', -1, 64), "must be 1-10")
	case c.MaxInterval < c.InitialInterval:
		return config.Errorf("max_interval", c.MaxInterval.String(), "must be at least initial_interval (%s)", c.InitialInterval)
	case c.Jitter < 0 || c.Jitter >= 1:
		return config.Errorf("jitter", strconv.FormatFloat(c.Jitter, 'g', -1, 64), "must be 0 up to (not including) 1")
	case c.Timeout < 100*time.Millisecond || c.Timeout > time.Minute:
		return config.Errorf("timeout", c.Timeout.String(), "must be 100ms-1m")
	case c.PollInterval < 10*time.Millisecond || c.PollInterval > time.Minute:
		return config.Errorf("poll_interval", c.PollInterval.String(), "must be 10ms-1m")
	case c.Batch < 1 || c.Batch > 10_000:
		return config.Errorf("batch", fmt.Sprint(c.Batch), "must be 1-10000")
	case c.Concurrency < 1 || c.Concurrency > 1024:
		return config.Errorf("concurrency", fmt.Sprint(c.Concurrency), "must be 1-1024")
	case c.Breaker.ConsecutiveFailures < 1:
		return config.Errorf("breaker.consecutive_failures", fmt.Sprint(c.Breaker.ConsecutiveFailures), "must be at least 1")
	case c.Breaker.OpenFor < 10*time.Millisecond || c.Breaker.OpenFor > time.Hour:
		return config.Errorf("breaker.open_for", c.Breaker.OpenFor.String(), "must be 10ms-1h")
	case c.FailureRetry.Validate() != nil:
		return config.Prefix("failure_retry", c.FailureRetry.Validate())
	case c.TakeoverAfter < 6*c.Timeout+5*time.Second || c.TakeoverAfter > 24*time.Hour:
		return config.Errorf("takeover_after", c.TakeoverAfter.String(), "must be from 6 x timeout + 5s (a claimed delivery's lease, %s) to 24h", 6*c.Timeout+5*time.Second)
	case c.EndpointCacheTTL < 0 || c.EndpointCacheTTL > time.Minute:
		return config.Errorf("endpoint_cache_ttl", c.EndpointCacheTTL.String(), "must be 0-1m")
	case c.DeliveredRetention < c.MinRetention() || c.DeliveredRetention > maxRetention:
		return config.Errorf("delivered_retention", c.DeliveredRetention.String(),
			"must be from %s (the events topic's retention, %s, or the horizon, whichever is longer, plus %s: a redelivered events record must still find its row) to %s",
			c.MinRetention(), EventsTopicRetention, retentionMargin, maxRetention)
	case c.DeadLetterRetention < c.MinRetention() || c.DeadLetterRetention > maxRetention:
		return config.Errorf("dead_letter_retention", c.DeadLetterRetention.String(),
			"must be from %s (as delivered_retention: a redelivered events record must still find its row) to %s", c.MinRetention(), maxRetention)
	case c.SweepInterval < time.Second || c.SweepInterval > time.Hour:
		return config.Errorf("sweep_interval", c.SweepInterval.String(), "must be 1s-1h")
	case c.SweepBatch < 1 || c.SweepBatch > 50_000:
		return config.Errorf("sweep_batch", fmt.Sprint(c.SweepBatch), "must be 1-50000")
	}
	return nil
}
