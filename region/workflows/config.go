package workflows

import (
	"fmt"
	"time"

	"github.com/herald-notify/herald/platform/config"
)

// Config tunes each tier's runner (the region config's workflows section).
type Config struct {
	// Batch is how many runs one transaction takes; Workers how many transactions each tier's
	// runner has at once; Poll how long a worker waits when nothing is due.
	Batch   int           `yaml:"batch"`
	Workers int           `yaml:"workers"`
	Poll    time.Duration `yaml:"poll"`
	// Retention is how long a finished run (and a closed digest with its events) is kept after
	// it finished; a trigger sent again within it starts nothing. SweepInterval is how often the
	// region's sweeper deletes what is past it, and throttle rows past their step's window.
	Retention     time.Duration `yaml:"retention"`
	SweepInterval time.Duration `yaml:"sweep_interval"`
}

// MinRetention and MaxRetention bound Config.Retention.
const (
	MinRetention = 24 * time.Hour
	MaxRetention = 400 * 24 * time.Hour
)

// DefaultConfig is what a region runs with unless its config says otherwise.
func DefaultConfig() Config {
	return Config{Batch: 2000, Workers: 4, Poll: 250 * time.Millisecond, Retention: 30 * 24 * time.Hour, SweepInterval: time.Hour}
}

// Validate checks c, naming the bad key (relative to the section).
func (c Config) Validate() error {
	if c.Batch < 1 || c.Batch > 10000 {
		return config.Errorf("batch", fmt.Sprint(c.Batch), "must be 1-10000")
	}
	if c.Workers < 1 || c.Workers > 64 {
		return config.Errorf("workers", fmt.Sprint(c.Workers), "must be 1-64")
	}
	if c.Poll < 10*time.Millisecond || c.Poll > time.Minute {
		return config.Errorf("poll", c.Poll.String(), "must be 10ms-1m")
	}
	if c.Retention < MinRetention || c.Retention > MaxRetention {
		return config.Errorf("retention", c.Retention.String(), "must be 24h-9600h (1-400 days)")
	}
	if c.SweepInterval < time.Second || c.SweepInterval > 24*time.Hour {
		return config.Errorf("sweep_interval", c.SweepInterval.String(), "must be 1s-24h")
	}
	return nil
}
