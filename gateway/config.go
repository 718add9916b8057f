// Package gateway is Herald's one global endpoint: apps call it, and it forwards each request to
// the home region of the user concerned.
package gateway

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/platform/pki"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/redis"
	"github.com/herald-notify/herald/platform/telemetry"
)

// Config is the gateway's configuration.
type Config struct {
	Listen string `yaml:"listen" env:"HERALD_GATEWAY_LISTEN"`
	// Jurisdiction is where this gateway runs. Requests for users of a jurisdiction that does
	// not allow transit through other jurisdictions' gateways are redirected (307) to theirs.
	Jurisdiction string `yaml:"jurisdiction" env:"HERALD_GATEWAY_JURISDICTION"`
	// PublicURL is this gateway's URL as clients reach it (default http://<listen>). A
	// jurisdiction whose gateway_url in the policy is this URL is served here, not redirected.
	PublicURL string `yaml:"public_url" env:"HERALD_GATEWAY_PUBLIC_URL"`
	// PolicyKey is the discovery key holding the residency policy.
	PolicyKey string `yaml:"policy_key" env:"HERALD_GATEWAY_POLICY_KEY"`
	// RegionToken is sent to regions as a Bearer token (their internal_token), on top of the
	// client certificate.
	RegionToken string `yaml:"region_token" env:"HERALD_GATEWAY_REGION_TOKEN"`
	// RegionTLS is how the gateway calls regions: HTTPS (TLS 1.3) with a client certificate.
	RegionTLS RegionTLSConfig `yaml:"region_tls"`
	// RequestTimeout is the deadline of every API request but the event stream: a client gets
	// its answer by then, a 503 deadline_exceeded with Retry-After when a region (or a store)
	// did not answer in time. Keep it above the regions' request_timeout, so their own answer
	// arrives first.
	RequestTimeout time.Duration `yaml:"request_timeout" env:"HERALD_GATEWAY_REQUEST_TIMEOUT"`

	// Receipts are the providers' event feeds the gateway takes (SendGrid's Event Webhook).
	Receipts ReceiptsConfig `yaml:"receipts"`

	Directory DirectoryConfig `yaml:"directory"`
	Health    HealthConfig    `yaml:"health"`
	RateLimit RateLimitConfig `yaml:"rate_limit"`

	// Postgres holds the global tier: apps, API keys, the keyed-hash user directory and the
	// parts of split sends (no user identifier).
	Postgres  postgres.Config  `yaml:"postgres"`
	Redis     redis.Config     `yaml:"redis"`
	Discovery discovery.Config `yaml:"discovery"`
	Telemetry telemetry.Config `yaml:"telemetry"`
}

// RegionTLSConfig is the gateway's side of the regions' mutual TLS.
type RegionTLSConfig struct {
	// CAFile holds the CA that certified the regions' server certificates; empty trusts the
	// system's roots.
	CAFile string `yaml:"ca_file" env:"HERALD_GATEWAY_REGION_TLS_CA_FILE"`
	// CertFile and KeyFile are the gateway's client certificate (of the CA the regions'
	// client_ca_file holds) and its key.
	CertFile string `yaml:"cert_file" env:"HERALD_GATEWAY_REGION_TLS_CERT_FILE"`
	KeyFile  string `yaml:"key_file" env:"HERALD_GATEWAY_REGION_TLS_KEY_FILE"`
	// ServerName, when set, is the name every region's certificate must carry, with {region}
	// standing for the region of the endpoint dialled ("{region}.regions.herald.internal"):
	// the gateway verifies a region by its name, not by the address discovery listed, which
	// on ECS is a task's changing IP no certificate can name. Empty: the certificate must name
	// the dialled address (the local stack's certificates name 127.0.0.1).
	ServerName string `yaml:"server_name" env:"HERALD_GATEWAY_REGION_TLS_SERVER_NAME"`
}

// Client is the pki form of the files.
func (r RegionTLSConfig) Client() pki.ClientConfig {
	return pki.ClientConfig{CAFile: r.CAFile, CertFile: r.CertFile, KeyFile: r.KeyFile}
}

// DirectoryConfig configures the user directory.
type DirectoryConfig struct {
	// SecretFile holds the HMAC secret that turns (app, user) into the directory's key
	// (residency.UserKey). Losing it orphans every directory entry; rotating it needs a re-key.
	SecretFile string `yaml:"secret_file" env:"HERALD_GATEWAY_DIRECTORY_SECRET_FILE"`
	// CacheSize is how many lookups the gateway keeps in memory; CacheTTL how long.
	CacheSize int           `yaml:"cache_size"`
	CacheTTL  time.Duration `yaml:"cache_ttl"`
}

// HealthConfig says how the gateway follows the regions' health.
type HealthConfig struct {
	// Interval between two probes of every region endpoint (file backend), or two reads of the
	// healthy set (Consul).
	Interval time.Duration `yaml:"interval"`
	// Timeout of one probe of /readyz: longer than a region's own check of its stores (2 s,
	// platform/health), so a slow store reads as the region's 503, not as a probe given up.
	Timeout time.Duration `yaml:"timeout"`
}

// RateLimitConfig is the per-key token bucket.
type RateLimitConfig struct {
	// PerMinute is the default for keys without their own limit.
	PerMinute int `yaml:"per_minute" env:"HERALD_GATEWAY_RATE_LIMIT_PER_MINUTE"`
}

// DefaultConfig returns the defaults for a local gateway.
func DefaultConfig(discoveryDir string) Config {
	pg := postgres.Defaults()
	pg.Database = "herald_global"
	rd := redis.Defaults()
	rd.Prefix = "gateway:"
	return Config{
		Listen:    "127.0.0.1:8080",
		PolicyKey: "herald/residency/policy",
		Directory: DirectoryConfig{CacheSize: 100_000, CacheTTL: time.Minute},
		Health:    HealthConfig{Interval: time.Second, Timeout: 2500 * time.Millisecond},
		RateLimit: RateLimitConfig{PerMinute: 1000},
		Postgres:  pg,
		Redis:     rd,
		Discovery: discovery.Defaults(discoveryDir),
		Telemetry: telemetry.Defaults(),

		// Regions answer within 4 s; the gateway's own steps around a region's answer fit in the rest.
		RequestTimeout: 5 * time.Second,
	}
}

// Validate checks every key.
func (c *Config) Validate() error {
	if err := config.HostPort("listen", c.Listen); err != nil {
		return err
	}
	if c.Jurisdiction == "" || strings.ToUpper(c.Jurisdiction) != c.Jurisdiction {
		return config.Errorf("jurisdiction", c.Jurisdiction, "must be the code of the jurisdiction this gateway runs in, like EU")
	}
	if c.RequestTimeout < 100*time.Millisecond || c.RequestTimeout > time.Minute {
		return config.Errorf("request_timeout", c.RequestTimeout.String(), "must be 100ms-1m")
	}
	if err := config.Required("policy_key", c.PolicyKey); err != nil {
		return err
	}
	if err := config.Required("directory.secret_file", c.Directory.SecretFile); err != nil {
		return err
	}
	if c.Directory.CacheSize < 0 {
		return config.Errorf("directory.cache_size", fmt.Sprint(c.Directory.CacheSize), "must not be negative")
	}
	if c.Directory.CacheTTL < 0 {
		return config.Errorf("directory.cache_ttl", c.Directory.CacheTTL.String(), "must not be negative")
	}
	if c.Health.Interval < 100*time.Millisecond {
		return config.Errorf("health.interval", c.Health.Interval.String(), "must be at least 100ms")
	}
	if c.Health.Timeout <= 0 || c.Health.Timeout > c.Health.Interval*10 {
		return config.Errorf("health.timeout", c.Health.Timeout.String(), "must be positive and at most ten intervals")
	}
	if c.RateLimit.PerMinute <= 0 {
		return config.Errorf("rate_limit.per_minute", fmt.Sprint(c.RateLimit.PerMinute), "must be positive")
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
	if err := config.Prefix("telemetry", c.Telemetry.Validate()); err != nil {
		return err
	}
	if err := config.Prefix("receipts.sendgrid", c.Receipts.SendGrid.validate()); err != nil {
		return err
	}
	if err := c.RegionTLS.validateServerName(); err != nil {
		return config.Prefix("region_tls", err)
	}
	return config.Prefix("region_tls", c.RegionTLS.Client().Validate())
}

// DirectorySecret reads the directory's HMAC secret, refusing one shorter than 32 bytes.
func (c *Config) DirectorySecret() ([]byte, error) {
	b, err := os.ReadFile(c.Directory.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("directory.secret_file: %w", err)
	}
	s := []byte(strings.TrimSpace(string(b)))
	if len(s) < 32 {
		return nil, fmt.Errorf("directory.secret_file: %s holds %d bytes; at least 32 are required", c.Directory.SecretFile, len(s))
	}
	return s, nil
}
