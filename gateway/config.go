// Package gateway is Herald's one global endpoint: apps call it, and it forwards each request to
// the home region of the user concerned.
package gateway

import (
	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/redis"
	"github.com/herald-notify/herald/platform/telemetry"
)

// Config is the gateway's configuration.
type Config struct {
	Listen       string `yaml:"listen" env:"HERALD_GATEWAY_LISTEN"`
	Jurisdiction string `yaml:"jurisdiction" env:"HERALD_GATEWAY_JURISDICTION"`

	// Postgres holds the global tier: apps and API keys (no user data).
	Postgres  postgres.Config  `yaml:"postgres"`
	Redis     redis.Config     `yaml:"redis"`
	Discovery discovery.Config `yaml:"discovery"`
	Telemetry telemetry.Config `yaml:"telemetry"`
}

// DefaultConfig returns the defaults for a local gateway.
func DefaultConfig(discoveryDir string) Config {
	pg := postgres.Defaults()
	pg.Database = "herald_global"
	rd := redis.Defaults()
	rd.Prefix = "gateway:"
	return Config{
		Listen:    "127.0.0.1:8080",
		Postgres:  pg,
		Redis:     rd,
		Discovery: discovery.Defaults(discoveryDir),
		Telemetry: telemetry.Defaults(),
	}
}

// Validate checks every key.
func (c *Config) Validate() error {
	if err := config.HostPort("listen", c.Listen); err != nil {
		return err
	}
	if err := config.Prefix("postgres", c.Postgres.Validate()); err != nil {
		return err
	}
	if err := config.Prefix("redis", c.Redis.Validate()); err != nil {
		return err
	}
	if err := config.Prefix("discovery", c.Discovery.Validate()); err != nil {
		return err
	}
	return config.Prefix("telemetry", c.Telemetry.Validate())
}
