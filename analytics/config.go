package analytics

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/herald-notify/herald/analytics/wire"
	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/platform/pki"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/telemetry"
)

// Config is the analytics service's configuration.
type Config struct {
	// Listen is the operators' listener: the dashboard, the query API and the sign-in, with the
	// operator token (plain HTTP locally; behind a TLS-terminating load balancer on AWS). It
	// serves no ingest: regions post to Ingest.Listen, over mutual TLS.
	Listen string `yaml:"listen" env:"HERALD_ANALYTICS_LISTEN"`
	// Ingest is the regions' listener: POST /v1/aggregates and GET /v1/categories over HTTPS
	// (TLS 1.3) with a region's client certificate.
	Ingest IngestConfig `yaml:"ingest"`
	// K is the k-anonymity threshold central enforces: a cell with fewer distinct recipients
	// is refused. Regions fold with their own k, which must not be lower.
	K int `yaml:"k" env:"HERALD_ANALYTICS_K"`
	// Regions are the regions allowed to post aggregates, each with its bearer token.
	Regions map[string]RegionConfig `yaml:"regions"`
	// Operator is the credential of the people who read analytics: the query API and the
	// dashboard answer nothing without it.
	Operator OperatorConfig `yaml:"operator"`
	// Categories are the notification categories a cell may name: those of every app, and
	// those of one app. Anything else is refused, so no free text reaches the store.
	Categories CategoriesConfig `yaml:"categories"`
	Prices     PriceConfig      `yaml:"prices"`
	SLO        SLOConfig        `yaml:"slo"`
	// MaxBodyBytes caps one ingest request.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MinuteRetention is how long minute cells and histograms are kept (0: for ever). The
	// hourly sums and the batch records stay; older ranges are answered in whole hours.
	MinuteRetention time.Duration `yaml:"minute_retention" env:"HERALD_ANALYTICS_MINUTE_RETENTION"`

	Postgres  postgres.Config  `yaml:"postgres"`
	Discovery discovery.Config `yaml:"discovery"`
	Telemetry telemetry.Config `yaml:"telemetry"`
}

// IngestConfig is the ingest listener: the regions' exporters post over mutual TLS, and the
// client certificate says which region is calling.
type IngestConfig struct {
	// Listen is the HTTPS address of the ingest API; it must differ from listen.
	Listen string `yaml:"listen" env:"HERALD_ANALYTICS_INGEST_LISTEN"`
	// TLS is analytics' server certificate and the CA whose client certificates are accepted.
	TLS IngestTLSConfig `yaml:"tls"`
	// ClientName is the name a region's client certificate carries, as its subject's common
	// name or one of its DNS names, with {region} standing for the region
	// ("exporter-{region}", what `herald-dev pki init` issues; on AWS, say,
	// "{region}.exporters.herald.internal"). A certificate of the CA that names no region of
	// regions is refused (403 unknown_client), one naming another region than its batch too
	// (403 region_mismatch).
	ClientName string `yaml:"client_name" env:"HERALD_ANALYTICS_INGEST_CLIENT_NAME"`
}

// IngestTLSConfig is the ingest listener's side of the regions' mutual TLS.
type IngestTLSConfig struct {
	// CertFile and KeyFile are analytics' server certificate (its SANs name what the exporters
	// dial or their export.tls.server_name) and key.
	CertFile string `yaml:"cert_file" env:"HERALD_ANALYTICS_INGEST_TLS_CERT_FILE"`
	KeyFile  string `yaml:"key_file" env:"HERALD_ANALYTICS_INGEST_TLS_KEY_FILE"`
	// ClientCAFile holds the CA (PEM; several during a rotation) that issues the regions'
	// client certificates. It must issue client certificates naming a region to that
	// region's exporter only.
	ClientCAFile string `yaml:"client_ca_file" env:"HERALD_ANALYTICS_INGEST_TLS_CLIENT_CA_FILE"`
}

// Server is the pki form of the files.
func (t IngestTLSConfig) Server() pki.ServerConfig {
	return pki.ServerConfig{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile}
}

// regionPlaceholder is what ingest.client_name names the region with.
const regionPlaceholder = "{region}"

// DefaultClientName is the client certificate name of `herald-dev pki init`'s exporter certificates.
const DefaultClientName = "exporter-" + regionPlaceholder

// clientNameRE is what a client name may be once {region} is replaced: a common name or DNS
// name of lower-case letters, digits, dots and hyphens.
var clientNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$`)

// certName is the name region's client certificate must carry.
func (c IngestConfig) certName(region string) string {
	return strings.Replace(c.ClientName, regionPlaceholder, region, 1)
}

func (c IngestConfig) validate(operatorListen string) error {
	if err := config.HostPort("listen", c.Listen); err != nil {
		return err
	}
	if c.Listen == operatorListen {
		return config.Errorf("listen", c.Listen, "must differ from the operators' listen: ingest is served over mutual TLS only")
	}
	if strings.Count(c.ClientName, regionPlaceholder) != 1 {
		return config.Errorf("client_name", c.ClientName, "must hold %s exactly once (each region's certificate names its own region)", regionPlaceholder)
	}
	if !clientNameRE.MatchString(c.certName("eu-west-1")) {
		return config.Errorf("client_name", c.ClientName, "is not a lower-case name of letters, digits, dots and hyphens once %s is replaced", regionPlaceholder)
	}
	return config.Prefix("tls", c.TLS.Server().Validate())
}

// RegionConfig is one region's second ingest credential, on top of its client certificate:
// the token itself, or a file holding it (for deployments where secrets are mounted as files,
// not written into config).
type RegionConfig struct {
	// Token is the bearer token the region's exporter sends (at least 16 characters).
	Token string `yaml:"token"`
	// TokenFile holds the token instead (surrounding white space is ignored); read at start.
	TokenFile string `yaml:"token_file"`
}

// regionTokens returns each region's token, reading token files. Errors name the key.
func (c *Config) regionTokens() (map[string]string, error) {
	out := make(map[string]string, len(c.Regions))
	seen := map[string]string{}
	for _, name := range sortedKeys(c.Regions) {
		rc := c.Regions[name]
		key := "regions." + name + ".token"
		tok := rc.Token
		if rc.TokenFile != "" {
			key += "_file"
			raw, err := os.ReadFile(rc.TokenFile)
			if err != nil {
				return nil, config.Errorf(key, rc.TokenFile, "cannot be read: %v", err)
			}
			tok = strings.TrimSpace(string(raw))
		}
		if len(tok) < 16 {
			return nil, config.Errorf(key, "", "the token must be at least 16 characters")
		}
		if other, dup := seen[tok]; dup {
			return nil, config.Errorf(key, "", "is also the token of %s: each region needs its own", other)
		}
		seen[tok] = name
		out[name] = tok
	}
	return out, nil
}

// OperatorConfig is the operators' credential for the query API and the dashboard: one
// bearer token (Authorization: Bearer), which the dashboard's sign-in exchanges for a session
// cookie. No region's token reads the queries, and this one posts no batch.
type OperatorConfig struct {
	// Token is the operator token (at least 32 characters).
	Token string `yaml:"token"`
	// TokenFile holds the token instead (surrounding white space is ignored); read at start.
	TokenFile string `yaml:"token_file"`
	// SessionTTL is how long a dashboard sign-in lasts (default 8h, from 1m to 7 days).
	SessionTTL time.Duration `yaml:"session_ttl"`
}

// minOperatorToken is the shortest operator token: 32 random characters are beyond guessing.
const minOperatorToken = 32

// operatorToken returns the operator token, reading its file; it must differ from every
// region's token (regions), so no region reads the queries. Errors name the key.
func (c *Config) operatorToken(regions map[string]string) (string, error) {
	key, tok := "operator.token", c.Operator.Token
	if c.Operator.TokenFile != "" {
		key = "operator.token_file"
		raw, err := os.ReadFile(c.Operator.TokenFile)
		if err != nil {
			return "", config.Errorf(key, c.Operator.TokenFile, "cannot be read: %v", err)
		}
		tok = strings.TrimSpace(string(raw))
	}
	if len(tok) < minOperatorToken {
		return "", config.Errorf(key, "", "the operator token must be at least %d characters", minOperatorToken)
	}
	for _, name := range sortedKeys(regions) {
		if regions[name] == tok {
			return "", config.Errorf(key, "", "is also the token of region %s: operators need their own", name)
		}
	}
	return tok, nil
}

// CategoriesConfig registers categories, for every app (Global) or one app (Apps).
type CategoriesConfig struct {
	Global []string            `yaml:"global"`
	Apps   map[string][]string `yaml:"apps"`
	// ListedAppsOnly refuses cells of apps not listed under Apps. An app id is otherwise only
	// checked for its shape, which a user id of the same shape would pass.
	ListedAppsOnly bool `yaml:"listed_apps_only"`
}

// AppAllowed reports whether cells of app are accepted.
func (c CategoriesConfig) AppAllowed(app string) bool {
	if !c.ListedAppsOnly {
		return true
	}
	_, ok := c.Apps[app]
	return ok
}

// Allowed reports whether app may report category. "other" (a k-anonymity fold) always is.
// It is the rule exporters apply to the lists GET /v1/categories gives them, so both sides agree.
func (c CategoriesConfig) Allowed(app, category string) bool {
	return wire.Categories{Global: c.Global, Apps: c.Apps}.Allows(app, category)
}

// Wire returns the registered categories as GET /v1/categories answers them (empty lists
// rather than null).
func (c CategoriesConfig) Wire() wire.Categories {
	out := wire.Categories{Global: slices.Clone(c.Global), Apps: make(map[string][]string, len(c.Apps))}
	if out.Global == nil {
		out.Global = []string{}
	}
	for app, cats := range c.Apps {
		out.Apps[app] = slices.Clone(cats)
		if out.Apps[app] == nil {
			out.Apps[app] = []string{}
		}
	}
	return out
}

// PriceConfig is what a delivered message costs, per channel. Push and in-app are free.
type PriceConfig struct {
	Currency string `yaml:"currency"`
	// EmailPerThousand is the price of 1,000 delivered emails.
	EmailPerThousand float64   `yaml:"email_per_thousand"`
	SMS              SMSPrices `yaml:"sms"`
}

// SMSPrices is the price of one delivered SMS by the country of the number, else Default.
type SMSPrices struct {
	Default    float64            `yaml:"default"`
	PerCountry map[string]float64 `yaml:"per_country"`
}

// SLOConfig is the p99 accept-to-delivered latency target per tier (0: no target).
type SLOConfig struct {
	Transactional time.Duration `yaml:"transactional"`
	Social        time.Duration `yaml:"social"`
	Marketing     time.Duration `yaml:"marketing"`
}

// For returns the target of tier (0: none).
func (s SLOConfig) For(tier string) time.Duration {
	switch tier {
	case "transactional":
		return s.Transactional
	case "social":
		return s.Social
	case "marketing":
		return s.Marketing
	}
	return 0
}

// DefaultConfig returns the defaults for local analytics.
func DefaultConfig(discoveryDir string) Config {
	pg := postgres.Defaults()
	pg.Database = "herald_analytics"
	return Config{
		Listen:       "127.0.0.1:8090",
		Ingest:       IngestConfig{Listen: "127.0.0.1:8091", ClientName: DefaultClientName},
		K:            wire.DefaultK,
		Prices:       PriceConfig{Currency: "USD"},
		SLO:          SLOConfig{Transactional: 5 * time.Second, Social: 30 * time.Second},
		MaxBodyBytes: 8 << 20,
		Operator:     OperatorConfig{SessionTTL: 8 * time.Hour},
		// Five weeks: a month of minute detail, and room for an exporter's backlog.
		MinuteRetention: 35 * 24 * time.Hour,
		Postgres:        pg,
		Discovery:       discovery.Defaults(discoveryDir),
		Telemetry:       telemetry.Defaults(),
	}
}

var (
	regionRE   = regexp.MustCompile(`^[a-z]{2}-[a-z]+-[0-9]{1,2}$`)
	appRE      = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{1,62}$`)
	categoryRE = regexp.MustCompile(`^[a-z0-9_.-]{1,64}$`)
	countryRE  = regexp.MustCompile(`^[A-Z]{2}$`)
	currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)
)

// Validate checks every key.
func (c *Config) Validate() error {
	if err := config.HostPort("listen", c.Listen); err != nil {
		return err
	}
	// The shared blocks first, as every component does, then analytics' own keys.
	if err := config.Prefix("postgres", c.Postgres.Validate()); err != nil {
		return err
	}
	if err := config.Prefix("discovery", c.Discovery.Validate()); err != nil {
		return err
	}
	if err := config.Prefix("telemetry", c.Telemetry.Validate()); err != nil {
		return err
	}
	if err := config.Prefix("ingest", c.Ingest.validate(c.Listen)); err != nil {
		return err
	}
	if c.K < 2 {
		return config.Errorf("k", fmt.Sprint(c.K), "must be at least 2")
	}
	if len(c.Regions) == 0 {
		return config.Errorf("regions", "", "must list at least one region with its token")
	}
	tokens := map[string]string{}
	for _, name := range sortedKeys(c.Regions) {
		key := "regions." + name
		if !regionRE.MatchString(name) {
			return config.Errorf(key, name, "must be a region name like eu-west-1")
		}
		rc := c.Regions[name]
		switch {
		case rc.Token != "" && rc.TokenFile != "":
			return config.Errorf(key+".token_file", rc.TokenFile, "set token or token_file, not both")
		case rc.TokenFile != "":
			continue // read at start (regionTokens): Validate touches no file
		case len(rc.Token) < 16:
			return config.Errorf(key+".token", "", "must be at least 16 characters (or use token_file)")
		}
		if other, dup := tokens[rc.Token]; dup {
			return config.Errorf(key+".token", "", "is also the token of %s: each region needs its own", other)
		}
		tokens[rc.Token] = name
	}
	switch op := c.Operator; {
	case op.Token == "" && op.TokenFile == "":
		return config.Errorf("operator.token", "", "is required (or operator.token_file): the query API and the dashboard answer operators only")
	case op.Token != "" && op.TokenFile != "":
		return config.Errorf("operator.token_file", op.TokenFile, "set token or token_file, not both")
	case op.TokenFile == "" && len(op.Token) < minOperatorToken:
		return config.Errorf("operator.token", "", "must be at least %d characters (or use token_file)", minOperatorToken)
	case op.TokenFile == "" && tokens[op.Token] != "":
		return config.Errorf("operator.token", "", "is also the token of region %s: operators need their own", tokens[op.Token])
	case op.SessionTTL < time.Minute || op.SessionTTL > 7*24*time.Hour:
		return config.Errorf("operator.session_ttl", op.SessionTTL.String(), "must be from 1m to 168h")
	}
	if c.Categories.ListedAppsOnly && len(c.Categories.Apps) == 0 {
		return config.Errorf("categories.listed_apps_only", "true", "needs at least one app under categories.apps")
	}
	if err := checkCategories("categories.global", c.Categories.Global); err != nil {
		return err
	}
	for _, app := range sortedKeys(c.Categories.Apps) {
		if !appRE.MatchString(app) {
			return config.Errorf("categories.apps."+app, app, "must be an app id")
		}
		if err := checkCategories("categories.apps."+app, c.Categories.Apps[app]); err != nil {
			return err
		}
	}
	if !currencyRE.MatchString(c.Prices.Currency) {
		return config.Errorf("prices.currency", c.Prices.Currency, "must be an ISO 4217 code like USD")
	}
	if c.Prices.EmailPerThousand < 0 {
		return config.Errorf("prices.email_per_thousand", fmt.Sprint(c.Prices.EmailPerThousand), "must not be negative")
	}
	if c.Prices.SMS.Default < 0 {
		return config.Errorf("prices.sms.default", fmt.Sprint(c.Prices.SMS.Default), "must not be negative")
	}
	for _, cc := range sortedKeys(c.Prices.SMS.PerCountry) {
		if !countryRE.MatchString(cc) {
			return config.Errorf("prices.sms.per_country."+cc, cc, "must be an ISO 3166-1 alpha-2 code like DE")
		}
		if p := c.Prices.SMS.PerCountry[cc]; p < 0 {
			return config.Errorf("prices.sms.per_country."+cc, fmt.Sprint(p), "must not be negative")
		}
	}
	for _, s := range []struct {
		key string
		d   time.Duration
	}{{"slo.transactional", c.SLO.Transactional}, {"slo.social", c.SLO.Social}, {"slo.marketing", c.SLO.Marketing}} {
		if s.d < 0 {
			return config.Errorf(s.key, s.d.String(), "must not be negative (0: no target)")
		}
	}
	if c.MinuteRetention != 0 && c.MinuteRetention < 48*time.Hour {
		return config.Errorf("minute_retention", c.MinuteRetention.String(), "must be 0 (keep for ever) or at least 48h")
	}
	if c.MaxBodyBytes < 1024 {
		return config.Errorf("max_body_bytes", fmt.Sprint(c.MaxBodyBytes), "must be at least 1024")
	}
	return nil
}

func checkCategories(key string, list []string) error {
	for i, cat := range list {
		k := fmt.Sprintf("%s[%d]", key, i)
		if !categoryRE.MatchString(cat) {
			return config.Errorf(k, cat, "must match %s", categoryRE)
		}
		if cat == wire.CategoryOther {
			return config.Errorf(k, cat, "is reserved for cells folded for k-anonymity")
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// RegionNames lists the regions allowed to post, sorted.
func (c *Config) RegionNames() []string { return sortedKeys(c.Regions) }

// Margins around the minute-retention horizon, so a sweep never races an ingest or a query:
// queries answer in whole hours an hour before the sweep deletes, and ingest refuses windows
// two hours before (their replacement could no longer take the deleted minutes out of the
// hourly sums).
const (
	queryMargin  = time.Hour
	ingestMargin = 2 * time.Hour
)

// minuteHorizon returns the time before which minute data may be gone, by at most margin
// ahead of the sweep (zero time: minute data is kept for ever).
func (c *Config) minuteHorizon(now time.Time, margin time.Duration) time.Time {
	if c.MinuteRetention == 0 {
		return time.Time{}
	}
	return now.Add(-c.MinuteRetention + margin)
}
