package analytics

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/pki"
	"github.com/herald-notify/herald/platform/testenv"
)

func validConfig(t testing.TB) Config {
	t.Helper()
	c := DefaultConfig("/tmp/discovery")
	srv := testenv.PKI(t).Server("analytics")
	c.Ingest.TLS = IngestTLSConfig{CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: srv.ClientCAFile}
	c.Regions = map[string]RegionConfig{"eu-west-1": {Token: "0123456789abcdef-eu"}, "us-east-1": {Token: "0123456789abcdef-us"}}
	c.Operator.Token = testOperatorToken
	c.Categories = CategoriesConfig{Global: []string{"security"}, Apps: map[string][]string{"shop": {"order"}}}
	c.Prices.SMS = SMSPrices{Default: 0.05, PerCountry: map[string]float64{"DE": 0.08}}
	return c
}

func TestValidateNamesTheBadKey(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *Config)
		key  string
	}{
		{"k below 2", func(c *Config) { c.K = 1 }, "k"},
		{"no region", func(c *Config) { c.Regions = nil }, "regions"},
		{"a region name that is not one", func(c *Config) { c.Regions["EU"] = RegionConfig{Token: "0123456789abcdef-xx"} }, "regions.EU"},
		{"a short token", func(c *Config) { c.Regions["eu-west-1"] = RegionConfig{Token: "short"} }, "regions.eu-west-1.token"},
		{"two regions sharing a token", func(c *Config) { c.Regions["us-east-1"] = c.Regions["eu-west-1"] }, "regions.us-east-1.token"},
		{"a token and a token file", func(c *Config) {
			c.Regions["eu-west-1"] = RegionConfig{Token: "0123456789abcdef-eu", TokenFile: "/run/secrets/eu"}
		}, "regions.eu-west-1.token_file"},
		{"other registered as a category", func(c *Config) { c.Categories.Global = append(c.Categories.Global, "other") }, "categories.global[1]"},
		{"a category with spaces", func(c *Config) { c.Categories.Apps["shop"] = []string{"big sale"} }, "categories.apps.shop[0]"},
		{"an app id that is not one", func(c *Config) { c.Categories.Apps["Shop!"] = nil }, "categories.apps.Shop!"},
		{"listed apps only without apps", func(c *Config) { c.Categories.Apps = nil; c.Categories.ListedAppsOnly = true }, "categories.listed_apps_only"},
		{"a lowercase currency", func(c *Config) { c.Prices.Currency = "usd" }, "prices.currency"},
		{"a negative email price", func(c *Config) { c.Prices.EmailPerThousand = -1 }, "prices.email_per_thousand"},
		{"a country that is not a code", func(c *Config) { c.Prices.SMS.PerCountry["Germany"] = 0.1 }, "prices.sms.per_country.Germany"},
		{"a negative SLO", func(c *Config) { c.SLO.Social = -time.Second }, "slo.social"},
		{"a tiny body limit", func(c *Config) { c.MaxBodyBytes = 10 }, "max_body_bytes"},
		{"a retention under two days", func(c *Config) { c.MinuteRetention = time.Hour }, "minute_retention"},
		{"a bad listen address", func(c *Config) { c.Listen = "8090" }, "listen"},
		{"a bad ingest listen address", func(c *Config) { c.Ingest.Listen = "8091" }, "ingest.listen"},
		{"ingest on the operators' listener", func(c *Config) { c.Ingest.Listen = c.Listen }, "ingest.listen"},
		{"no ingest certificate", func(c *Config) { c.Ingest.TLS.CertFile = "" }, "ingest.tls.cert_file"},
		{"an ingest key that is not there", func(c *Config) { c.Ingest.TLS.KeyFile = "/nonexistent/analytics-key.pem" }, "ingest.tls.key_file"},
		{"no client CA", func(c *Config) { c.Ingest.TLS.ClientCAFile = "" }, "ingest.tls.client_ca_file"},
		{"a client name without the region", func(c *Config) { c.Ingest.ClientName = "exporter" }, "ingest.client_name"},
		{"a client name with the region twice", func(c *Config) { c.Ingest.ClientName = "{region}.{region}" }, "ingest.client_name"},
		{"a client name with spaces", func(c *Config) { c.Ingest.ClientName = "exporter of {region}" }, "ingest.client_name"},
		{"no operator token", func(c *Config) { c.Operator.Token = "" }, "operator.token"},
		{"a short operator token", func(c *Config) { c.Operator.Token = "0123456789abcdef0123456789abcde" }, "operator.token"},
		{"an operator token and a file", func(c *Config) { c.Operator.TokenFile = "/run/secrets/op" }, "operator.token_file"},
		{"a region's token as the operator's", func(c *Config) {
			c.Regions["eu-west-1"] = RegionConfig{Token: testOperatorToken}
		}, "operator.token"},
		{"no session lifetime", func(c *Config) { c.Operator.SessionTTL = 0 }, "operator.session_ttl"},
		{"a session of a month", func(c *Config) { c.Operator.SessionTTL = 30 * 24 * time.Hour }, "operator.session_ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.edit(&c)
			err := c.Validate()
			ke, ok := err.(*config.KeyError)
			if !ok {
				t.Fatalf("err = %v, want a KeyError for %s", err, tt.key)
			}
			if ke.Key != tt.key {
				t.Errorf("key = %q, want %q (%v)", ke.Key, tt.key, err)
			}
		})
	}
	c := validConfig(t)
	if err := c.Validate(); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}

func TestLocalConfigLoadsStrictly(t *testing.T) {
	local, err := filepath.Abs(filepath.Join("..", "config", "local", "analytics.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The config names its certificates relative to the repository root, as `make up` runs
	// it; here herald-dev pki init's plan issues them in a fresh root.
	t.Chdir(t.TempDir())
	if _, err := pki.Dir(filepath.Join(".herald", "pki")).Ensure(pki.LocalPlan([]string{"eu-west-1"}, []string{"127.0.0.1"}), time.Now()); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig(t.TempDir())
	if err := config.Load(local, &c); err != nil {
		t.Fatalf("config/local/analytics.yaml: %v", err)
	}
	if c.K != 10 || len(c.Regions) != 3 || c.SLO.Transactional != 5*time.Second || c.Prices.SMS.PerCountry["US"] == 0 {
		t.Errorf("loaded %+v", c)
	}
	if c.Ingest.Listen != "127.0.0.1:8091" || c.Ingest.ClientName != DefaultClientName || c.Ingest.TLS.CertFile != ".herald/pki/analytics.pem" {
		t.Errorf("ingest: %+v", c.Ingest)
	}
	// The operator token is the file stack/herald.sh makes (48 base64url characters).
	if c.Operator.TokenFile != ".herald/analytics/operator-token" || c.Operator.Token != "" {
		t.Errorf("operator: %+v", c.Operator)
	}
	made := filepath.Join(t.TempDir(), "operator-token")
	if err := os.WriteFile(made, []byte("q7WkP2-x_9s3LmZ0aB4cD5eF6gH7iJ8kL9mN0oP1qR2sT3uV\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Operator.TokenFile = made
	tokens, err := c.regionTokens()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.operatorToken(tokens); err != nil {
		t.Errorf("a token as stack/herald.sh makes it: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("prices:\n  push_per_message: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c = DefaultConfig(t.TempDir())
	if err := config.Load(bad, &c); err == nil || !strings.Contains(err.Error(), "push_per_message") {
		t.Errorf("unknown key: err = %v, want it named", err)
	}
}

const testOperatorToken = "test-operator-token-0123456789abcdef"

func TestOperatorTokenComesFromTheConfigOrAFileAndNameTheKeyWhenBad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	regions := map[string]string{"eu-west-1": "0123456789abcdef-eu-0123456789abcdef"}
	c := validConfig(t)
	c.Operator = OperatorConfig{TokenFile: write("op", "  operator-token-from-a-file-0123456789\n"), SessionTTL: time.Hour}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if tok, err := c.operatorToken(regions); err != nil || tok != "operator-token-from-a-file-0123456789" {
		t.Errorf("token %q, %v", tok, err)
	}
	for _, tt := range []struct {
		name string
		op   OperatorConfig
		key  string
	}{
		{"a missing file", OperatorConfig{TokenFile: filepath.Join(dir, "nope")}, "operator.token_file"},
		{"an empty file", OperatorConfig{TokenFile: write("empty", "\n")}, "operator.token_file"},
		{"a short token in the file", OperatorConfig{TokenFile: write("short", "abc\n")}, "operator.token_file"},
		{"a region's token in the file", OperatorConfig{TokenFile: write("dup", regions["eu-west-1"])}, "operator.token_file"},
		{"a region's token inline", OperatorConfig{Token: regions["eu-west-1"]}, "operator.token"},
	} {
		c := validConfig(t)
		c.Operator = tt.op
		_, err := c.operatorToken(regions)
		ke, ok := err.(*config.KeyError)
		if !ok || ke.Key != tt.key {
			t.Errorf("%s: err = %v, want a KeyError for %s", tt.name, err, tt.key)
		}
	}
}

func TestRegionTokensComeFromTheConfigOrAFileAndNameTheKeyWhenBad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := validConfig(t)
	c.Regions["us-east-1"] = RegionConfig{TokenFile: write("us", "  us-token-from-a-file-0123\n")}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	tokens, err := c.regionTokens()
	if err != nil {
		t.Fatal(err)
	}
	if tokens["us-east-1"] != "us-token-from-a-file-0123" || tokens["eu-west-1"] != "0123456789abcdef-eu" {
		t.Errorf("tokens = %v", tokens)
	}
	tests := []struct {
		name string
		rc   RegionConfig
		key  string
	}{
		{"a missing file", RegionConfig{TokenFile: filepath.Join(dir, "nope")}, "regions.us-east-1.token_file"},
		{"a short token in the file", RegionConfig{TokenFile: write("short", "abc\n")}, "regions.us-east-1.token_file"},
		{"the other region's token in the file", RegionConfig{TokenFile: write("dup", "0123456789abcdef-eu")}, "regions.us-east-1.token_file"},
	}
	for _, tt := range tests {
		c := validConfig(t)
		c.Regions["us-east-1"] = tt.rc
		_, err := c.regionTokens()
		ke, ok := err.(*config.KeyError)
		if !ok || ke.Key != tt.key {
			t.Errorf("%s: err = %v, want a KeyError for %s", tt.name, err, tt.key)
		}
	}
}
