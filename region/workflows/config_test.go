package workflows

import (
	"strings"
	"testing"
	"time"
)

func TestConfigRefusesARunnerThatCouldNotWorkNamingTheKey(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(*Config)
		key    string
	}{
		{"no batch", func(c *Config) { c.Batch = 0 }, "batch"},
		{"a huge batch", func(c *Config) { c.Batch = 10001 }, "batch"},
		{"no workers", func(c *Config) { c.Workers = 0 }, "workers"},
		{"too many workers", func(c *Config) { c.Workers = 65 }, "workers"},
		{"a busy poll", func(c *Config) { c.Poll = time.Millisecond }, "poll"},
		{"a poll of an hour", func(c *Config) { c.Poll = time.Hour }, "poll"},
		{"no retention", func(c *Config) { c.Retention = 0 }, "retention"},
		{"a retention of an hour", func(c *Config) { c.Retention = time.Hour }, "retention"},
		{"a retention of years", func(c *Config) { c.Retention = 5 * 365 * 24 * time.Hour }, "retention"},
		{"no sweep interval", func(c *Config) { c.SweepInterval = 0 }, "sweep_interval"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.change(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.key) {
				t.Fatalf("Validate() = %v, want an error naming %q", err, tt.key)
			}
		})
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
}
