package export

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/herald-notify/herald/analytics/wire"
	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/pki"
	"github.com/herald-notify/herald/region/deadletter"
)

// Config is the exporter role's block (`export` in a region's config).
type Config struct {
	// CentralURL is central analytics' ingest listener, https only, like https://127.0.0.1:8091.
	CentralURL string `yaml:"central_url" env:"HERALD_EXPORT_CENTRAL_URL"`
	// TLS is the exporter's side of the mutual TLS: its client certificate (naming the region,
	// as central's ingest.client_name says) and the CA analytics' certificate must chain to.
	TLS TLSConfig `yaml:"tls"`
	// Token is the region's bearer token at central (its regions.<name>.token); or TokenFile,
	// a file holding it (surrounding white space ignored), read at start.
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	// K is the k-anonymity threshold of the folding; central refuses cells below its own k, so
	// this must not be lower than central's.
	K int `yaml:"k"`
	// Grace is how long after a window ends the closer waits before shipping it, so events
	// still in flight land in it first. Later ones make the window ship again.
	Grace time.Duration `yaml:"grace"`
	// Retention is how long the per-recipient rows are kept in the region. It must exceed the
	// events topic's retention (24 h), so a redelivered record still finds its first row.
	Retention time.Duration `yaml:"retention"`
	// Interval is how often the closer looks for windows to ship.
	Interval time.Duration `yaml:"interval"`
	// FailureRetry bounds the retries of a record whose rows cannot be stored for a transient
	// reason (Postgres down); past it, and at once for a permanent failure, the record goes to
	// "<region>.dlq.export".
	FailureRetry deadletter.Policy `yaml:"failure_retry"`
}

// TLSConfig is how the exporter calls central analytics: HTTPS (TLS 1.3) with a client
// certificate, as the gateway's region_tls calls regions.
type TLSConfig struct {
	// CAFile holds the CA that certified analytics' server certificate; empty trusts the
	// system's roots.
	CAFile string `yaml:"ca_file" env:"HERALD_EXPORT_TLS_CA_FILE"`
	// CertFile and KeyFile are the region's exporter certificate (of the CA analytics'
	// ingest.tls.client_ca_file holds, named as its ingest.client_name says) and its key.
	CertFile string `yaml:"cert_file" env:"HERALD_EXPORT_TLS_CERT_FILE"`
	KeyFile  string `yaml:"key_file" env:"HERALD_EXPORT_TLS_KEY_FILE"`
	// ServerName, when set, is the name analytics' certificate must carry
	// ("analytics.herald.internal"), whatever host central_url names; empty: the certificate
	// must name central_url's host (the local stack's names 127.0.0.1).
	ServerName string `yaml:"server_name" env:"HERALD_EXPORT_TLS_SERVER_NAME"`
}

// Client is the pki form of the files.
func (t TLSConfig) Client() pki.ClientConfig {
	return pki.ClientConfig{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile}
}

func (t TLSConfig) validate() error {
	if t.ServerName != "" && !pki.IsDNSName(t.ServerName) {
		return config.Errorf("server_name", t.ServerName, "must be a lower-case DNS name (the name analytics' certificate carries)")
	}
	return t.Client().Validate()
}

// clientTLS loads the files into the TLS config the exporter dials analytics with.
func (t TLSConfig) clientTLS() (*tls.Config, error) {
	tc, err := t.Client().TLS()
	if err != nil {
		return nil, fmt.Errorf("export.tls: %w", err)
	}
	tc.ServerName = t.ServerName
	return tc, nil
}

// DefaultConfig returns the defaults; CentralURL, the certificate and the token have none.
func DefaultConfig() Config {
	return Config{K: wire.DefaultK, Grace: 30 * time.Second, Retention: 48 * time.Hour, Interval: 5 * time.Second}
}

// Validate checks every key (names relative to the block).
func (c Config) Validate() error {
	u, err := url.Parse(c.CentralURL)
	switch {
	case c.CentralURL == "" || err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
		return config.Errorf("central_url", c.CentralURL, "must be an https URL like https://127.0.0.1:8091 (analytics' ingest listener)")
	case u.Scheme != "https":
		return config.Errorf("central_url", c.CentralURL, "must be https: the exporter posts to analytics' ingest listener over mutual TLS only")
	}
	if err := c.TLS.validate(); err != nil {
		return config.Prefix("tls", err)
	}
	switch {
	case c.Token != "" && c.TokenFile != "":
		return config.Errorf("token_file", c.TokenFile, "set token or token_file, not both")
	case c.Token == "" && c.TokenFile == "":
		return config.Errorf("token", "", "is required (or token_file): the region's token at central analytics")
	case c.Token != "" && len(c.Token) < 16:
		return config.Errorf("token", "", "must be at least 16 characters")
	}
	if c.K < 1 {
		return config.Errorf("k", fmt.Sprint(c.K), "must be at least 1")
	}
	if c.Grace < 0 || c.Grace > time.Hour {
		return config.Errorf("grace", c.Grace.String(), "must be 0-1h")
	}
	if c.Retention < 25*time.Hour {
		return config.Errorf("retention", c.Retention.String(), "must be at least 25h (longer than the events topic keeps records)")
	}
	if c.Interval < 100*time.Millisecond {
		return config.Errorf("interval", c.Interval.String(), "must be at least 100ms")
	}
	if err := c.FailureRetry.Validate(); err != nil {
		return config.Prefix("failure_retry", err)
	}
	return nil
}

// token returns the bearer token, reading TokenFile.
func (c Config) token() (string, error) {
	if c.TokenFile == "" {
		return c.Token, nil
	}
	raw, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return "", config.Errorf("export.token_file", c.TokenFile, "cannot be read: %v", err)
	}
	tok := strings.TrimSpace(string(raw))
	if len(tok) < 16 {
		return "", config.Errorf("export.token_file", c.TokenFile, "the token must be at least 16 characters")
	}
	return tok, nil
}
