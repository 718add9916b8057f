package scheduler

import (
	"fmt"
	"time"

	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/region/deadletter"
)

// Config sizes the scheduler (a region's `scheduler` section).
type Config struct {
	// Interval is how often due events are looked for.
	Interval time.Duration `yaml:"interval"`
	// Batch caps the due events claimed in one transaction.
	Batch int `yaml:"batch"`
	// FailureRetry bounds how long a due event that fails transiently is tried again; past it,
	// and at once for a permanent failure, it goes to "<region>.dlq.scheduler".
	FailureRetry deadletter.Policy `yaml:"failure_retry"`
}

// DefaultConfig returns the defaults: every half second, up to 500 events a claim.
func DefaultConfig() Config { return Config{Interval: 500 * time.Millisecond, Batch: 500} }

// Validate checks c, naming the bad key (relative to the section).
func (c Config) Validate() error {
	if c.Interval < 10*time.Millisecond {
		return config.Errorf("interval", c.Interval.String(), "must be at least 10ms")
	}
	if c.Batch < 1 || c.Batch > 10000 {
		return config.Errorf("batch", fmt.Sprint(c.Batch), "must be 1-10000")
	}
	if err := c.FailureRetry.Validate(); err != nil {
		return config.Prefix("failure_retry", err)
	}
	return nil
}
