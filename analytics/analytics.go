// Package analytics is Herald's central analytics service. It receives only anonymised,
// thresholded aggregates from the regions, never a user id, token, address or content.
package analytics

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/platform/health"
	"github.com/herald-notify/herald/platform/httpserver"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/telemetry"
)

// ServiceName is the discovery name of central analytics.
const ServiceName = "herald-analytics"

// Config is the analytics service's configuration.
type Config struct {
	Listen    string           `yaml:"listen" env:"HERALD_ANALYTICS_LISTEN"`
	Postgres  postgres.Config  `yaml:"postgres"`
	Discovery discovery.Config `yaml:"discovery"`
	Telemetry telemetry.Config `yaml:"telemetry"`
}

// DefaultConfig returns the defaults for local analytics.
func DefaultConfig(discoveryDir string) Config {
	pg := postgres.Defaults()
	pg.Database = "herald_analytics"
	return Config{Listen: "127.0.0.1:8090", Postgres: pg, Discovery: discovery.Defaults(discoveryDir), Telemetry: telemetry.Defaults()}
}

// Validate checks every key.
func (c *Config) Validate() error {
	if err := config.HostPort("listen", c.Listen); err != nil {
		return err
	}
	if err := config.Prefix("postgres", c.Postgres.Validate()); err != nil {
		return err
	}
	if err := config.Prefix("discovery", c.Discovery.Validate()); err != nil {
		return err
	}
	return config.Prefix("telemetry", c.Telemetry.Validate())
}

// Migrate creates the analytics database.
func Migrate(ctx context.Context, c Config, log *slog.Logger) error {
	if err := postgres.EnsureDatabase(ctx, c.Postgres); err != nil {
		return err
	}
	log.Info("postgres ready", "database", c.Postgres.Database)
	return nil
}

// Run serves analytics until ctx ends, then drains.
func Run(ctx context.Context, c Config, log *slog.Logger, version string) error {
	pool, err := postgres.Connect(ctx, c.Postgres)
	if err != nil {
		return err
	}
	defer pool.Close()
	disc, err := discovery.Open(c.Discovery)
	if err != nil {
		return err
	}
	h := health.New(map[string]string{"component": "analytics", "version": version})
	h.Add("postgres", func(ctx context.Context) error { return pool.Ping(ctx) })

	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", c.Listen, err)
	}
	inst, stopDiscovery, err := discovery.RegisterListener(ctx, disc, ServiceName, "analytics", ln, nil, c.Discovery.TTL)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopDiscovery()

	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())
	h.Mount(r)

	srv := &httpserver.Server{
		Name: "analytics-http", Handler: r, Log: log, Listener: ln,
		BeforeShutdown: func() { stopDiscovery(); h.Drain() },
		ReadyDelay:     500 * time.Millisecond,
	}
	log.Info("analytics started", "addr", inst.Address)
	return srv.Run(ctx)
}
