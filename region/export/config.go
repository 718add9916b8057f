package export

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/herald-notify/herald/analytics/wire"
	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/region/deadletter"
)

// Config is the exporter role's block (`export` in a region's config).
type Config struct {
	// CentralURL is central analytics' address, like http://127.0.0.1:8090.
	CentralURL string `yaml:"central_url"`
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

// DefaultConfig returns the defaults; CentralURL and the token have none.
func DefaultConfig() Config {
	return Config{K: wire.DefaultK, Grace: 30 * time.Second, Retention: 48 * time.Hour, Interval: 5 * time.Second}
}

// Validate checks every key (names relative to the block).
func (c Config) Validate() error {
	u, err := url.Parse(c.CentralURL)
	if c.CentralURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return config.Errorf("central_url", c.CentralURL, "must be an http(s) URL like http://127.0.0.1:8090")
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
