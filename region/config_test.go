package region

import (
	"encoding/base64"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/masterkey"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/export"
)

// localConfig is a valid local region config: the defaults, a name, and the test certificates.
func localConfig(t *testing.T) Config {
	c := DefaultConfig("/tmp/d")
	c.Name, c.Jurisdiction = "eu-west-1", "EU"
	d := testenv.PKI(t)
	c.TLS = TLSConfig{CertFile: d.CertFile("region"), KeyFile: d.KeyFile("region"), ClientCAFile: d.CAFile()}
	c.UserKeys = testUserKeys(t)
	return c
}

// testUserKeys is a keyring of one new master key, "k1", in a file of the test's.
func testUserKeys(t *testing.T) UserKeysConfig {
	t.Helper()
	path := filepath.Join(t.TempDir(), "k1.key")
	if _, err := masterkey.CreateFile(path); err != nil {
		t.Fatal(err)
	}
	u := DefaultUserKeysConfig()
	u.Current, u.MasterKeys = "k1", map[string]string{"k1": path}
	return u
}

func TestConfigValidateNamesTheBadMasterKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	k2 := filepath.Join(dir, "k2.key")
	if _, err := masterkey.CreateFile(k2); err != nil {
		t.Fatal(err)
	}
	short := write("short.key", base64.StdEncoding.EncodeToString(make([]byte, 16))+"\n", 0o600)
	raw := write("raw.key", strings.Repeat("\x01", 32), 0o600)
	unreadable := write("unreadable.key", "", 0o000)
	tests := []struct {
		name           string
		mutate         func(*UserKeysConfig)
		wantKey, wants string
	}{
		{"no master key", func(u *UserKeysConfig) { u.MasterKeys = nil }, "user_keys.master_keys", "at least one"},
		{"missing file", func(u *UserKeysConfig) { u.MasterKeys["k1"] = filepath.Join(dir, "nope.key") }, "user_keys.master_keys.k1", "missing"},
		{"empty path", func(u *UserKeysConfig) { u.MasterKeys["k1"] = "" }, "user_keys.master_keys.k1", "path"},
		{"a directory", func(u *UserKeysConfig) { u.MasterKeys["k1"] = dir }, "user_keys.master_keys.k1", "unusable"},
		{"wrong length", func(u *UserKeysConfig) { u.MasterKeys["k1"] = short }, "user_keys.master_keys.k1", "16 bytes, want 32"},
		{"raw bytes, not base64", func(u *UserKeysConfig) { u.MasterKeys["k1"] = raw }, "user_keys.master_keys.k1", "base64"},
		{"an older key's file is bad", func(u *UserKeysConfig) { u.MasterKeys["k0"] = short }, "user_keys.master_keys.k0", "16 bytes"},
		{"bad id", func(u *UserKeysConfig) { u.MasterKeys["k 2"] = k2 }, "user_keys.master_keys", "id"},
		{"no current", func(u *UserKeysConfig) { u.Current = "" }, "user_keys.current", "must name"},
		{"unknown current", func(u *UserKeysConfig) { u.Current = "k2" }, "user_keys.current", "not an id of master_keys (k1)"},
		{"rewrap too often", func(u *UserKeysConfig) { u.RewrapInterval = 0 }, "user_keys.rewrap_interval", "1s-24h"},
	}
	if os.Geteuid() != 0 { // root reads a 0000 file
		tests = append(tests, struct {
			name           string
			mutate         func(*UserKeysConfig)
			wantKey, wants string
		}{"unreadable file", func(u *UserKeysConfig) { u.MasterKeys["k1"] = unreadable }, "user_keys.master_keys.k1", "permission denied"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := localConfig(t)
			tt.mutate(&c.UserKeys)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), `"`+tt.wantKey+`"`) || !strings.Contains(err.Error(), tt.wants) {
				t.Fatalf("want error naming %q with %q, got %v", tt.wantKey, tt.wants, err)
			}
		})
	}
	// A rotation: both keys, the new one current.
	c := localConfig(t)
	c.UserKeys.MasterKeys["k2"] = k2
	c.UserKeys.Current = "k2"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ring, err := c.Keyring()
	if err != nil || ring.Current() != "k2" || !ring.Has("k1") {
		t.Fatalf("keyring %v (%v), want k1 and k2, k2 current", ring.IDs(), err)
	}
}

func TestConfigFileSetsTheMasterKeyring(t *testing.T) {
	u := testUserKeys(t)
	path := filepath.Join(t.TempDir(), "region.yaml")
	body := "name: eu-west-1\njurisdiction: EU\nuser_keys:\n  current: k1\n  master_keys:\n    k1: " + u.MasterKeys["k1"] + "\n  rewrap_interval: 1m\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c := localConfig(t)
	c.UserKeys = DefaultUserKeysConfig()
	if err := config.Load(path, &c); err != nil {
		t.Fatal(err)
	}
	if c.UserKeys.Current != "k1" || c.UserKeys.MasterKeys["k1"] != u.MasterKeys["k1"] || c.UserKeys.RewrapInterval != time.Minute {
		t.Fatalf("user_keys %+v", c.UserKeys)
	}
}

func TestConfigValidateDerivesSharedStoreNamesFromTheJurisdiction(t *testing.T) {
	c := localConfig(t)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// The database and keyspace are the jurisdiction's, shared by its regions; the Redis
	// prefix and the topics are the region's own.
	if c.Postgres.Database != "herald_eu" || c.Cassandra.Keyspace != "herald_eu" || c.Redis.Prefix != "eu-west-1:" {
		t.Fatalf("derived names: %s %s %s", c.Postgres.Database, c.Cassandra.Keyspace, c.Redis.Prefix)
	}
	if got := IngressTopic(c.Name, "transactional"); got != "eu-west-1.notify.transactional" {
		t.Fatalf("topic %s", got)
	}
}

func TestConfigValidateNamesTheBadKey(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantKey string
	}{
		{"bad region name", func(c *Config) { c.Name = "Europe" }, "name"},
		{"bad jurisdiction", func(c *Config) { c.Jurisdiction = "eu" }, "jurisdiction"},
		{"bad listen", func(c *Config) { c.Listen = "8101" }, "listen"},
		{"no request deadline", func(c *Config) { c.RequestTimeout = 0 }, "request_timeout"},
		{"request deadline over a minute", func(c *Config) { c.RequestTimeout = 2 * time.Minute }, "request_timeout"},
		{"no Kafka wait", func(c *Config) { c.KafkaWait = 0 }, "kafka_wait"},
		{"Kafka wait leaving no time for the outbox", func(c *Config) { c.KafkaWait = c.RequestTimeout }, "kafka_wait"},
		{"lag read too often", func(c *Config) { c.ConsumerLagInterval = 100 * time.Millisecond }, "consumer_lag_interval"},
		{"no policy key", func(c *Config) { c.PolicyKey = "" }, "policy_key"},
		{"unknown role", func(c *Config) { c.Roles = []string{"api", "coffee"} }, "roles"},
		{"no roles", func(c *Config) { c.Roles = nil }, "roles"},
		{"bad broker", func(c *Config) { c.Kafka.Brokers = []string{"localhost"} }, "kafka.brokers"},
		{"old kafka protocol", func(c *Config) { c.Kafka.Version = "0.10.2.0" }, "kafka.version"},
		{"bad protocol version", func(c *Config) { c.Cassandra.ProtocolVersion = 3 }, "cassandra.protocol_version"},
		{"bad consistency", func(c *Config) { c.Cassandra.Consistency = "MOST" }, "cassandra.consistency"},
		{"another region's data centre as the local one", func(c *Config) {
			c.Cassandra.Replication = map[string]int{"eu-west-1": 1, "eu-central-1": 1}
			c.Cassandra.LocalDC = "eu-central-1"
		}, "cassandra.local_dc"},
		{"a data centre that is not a region", func(c *Config) {
			c.Cassandra.Replication = map[string]int{"eu-west-1": 1, "dc1": 1}
		}, "cassandra.replication"},
		{"bad postgres url", func(c *Config) { c.Postgres.URL = "mysql://x" }, "postgres.url"},
		{"bad redis prefix", func(c *Config) { c.Redis.Prefix = "nocolon" }, "redis.prefix"},
		{"bad log level", func(c *Config) { c.Telemetry.LogLevel = "loud" }, "telemetry.log_level"},
		{"zero partitions", func(c *Config) { c.TopicPartitions = 0 }, "topic_partitions"},
		{"negative retry partitions", func(c *Config) { c.RetryTopicPartitions = -1 }, "retry_topic_partitions"},
		{"too many retry partitions", func(c *Config) { c.RetryTopicPartitions = 1025 }, "retry_topic_partitions"},
		{"zero dead-letter partitions", func(c *Config) { c.DeadLetterTopicPartitions = 0 }, "dead_letter_topic_partitions"},
		{"collector off", func(c *Config) { c.GCPercent = -1 }, "gc_percent"},
		{"collector target too high", func(c *Config) { c.GCPercent = 5000 }, "gc_percent"},
		{"no certificate", func(c *Config) { c.TLS.CertFile = "" }, "tls.cert_file"},
		{"missing key file", func(c *Config) { c.TLS.KeyFile = "/nonexistent/region-key.pem" }, "tls.key_file"},
		{"missing client CA", func(c *Config) { c.TLS.ClientCAFile = "/nonexistent/ca.pem" }, "tls.client_ca_file"},
		{"no TLS at all", func(c *Config) { c.TLS = TLSConfig{} }, "tls.cert_file"},
		{"plain HTTP without a token", func(c *Config) { c.TLS = TLSConfig{InsecurePlaintext: true} }, "tls.insecure_plaintext"},
		{"the exporter posting to central over plain HTTP", func(c *Config) {
			withLocalExporter(t, c)
			c.Export.CentralURL = "http://127.0.0.1:8090"
		}, "export.central_url"},
		{"the exporter without its client certificate", func(c *Config) {
			withLocalExporter(t, c)
			c.Export.TLS.CertFile = ""
		}, "export.tls.cert_file"},
		{"the exporter with a key that is not there", func(c *Config) {
			withLocalExporter(t, c)
			c.Export.TLS.KeyFile = "/nonexistent/exporter-key.pem"
		}, "export.tls.key_file"},
		{"fan-out chunk of zero", func(c *Config) { c.Fanout.ChunkSize = 0 }, "fanout.chunk_size"},
		{"fan-out tier unknown", func(c *Config) { c.Fanout.Tiers["urgent"] = c.Fanout.Tiers["social"] }, "fanout.tiers.urgent"},
		{"fan-out tier missing", func(c *Config) { delete(c.Fanout.Tiers, "marketing") }, "fanout.tiers.marketing"},
		{"fan-out tier without concurrency", func(c *Config) {
			tc := c.Fanout.Tiers["social"]
			tc.Concurrency = 0
			c.Fanout.Tiers["social"] = tc
		}, "fanout.tiers.social.concurrency"},
		{"fan-out tier retry without attempts", func(c *Config) {
			tc := c.Fanout.Tiers["transactional"]
			tc.FailureRetry.MaxAttempts = -1
			c.Fanout.Tiers["transactional"] = tc
		}, "fanout.tiers.transactional.failure_retry.max_attempts"},
		{"scheduler interval too short", func(c *Config) { c.Scheduler.Interval = time.Millisecond }, "scheduler.interval"},
		{"scheduler batch of zero", func(c *Config) { c.Scheduler.Batch = 0 }, "scheduler.batch"},
		{"scheduler retry backing off below its start", func(c *Config) {
			c.Scheduler.FailureRetry.InitialBackoff, c.Scheduler.FailureRetry.MaxBackoff = time.Second, time.Millisecond
		}, "scheduler.failure_retry.max_backoff"},
		{"the exporter with a CA that is not there", func(c *Config) {
			withLocalExporter(t, c)
			c.Export.TLS.CAFile = "/nonexistent/ca.pem"
		}, "export.tls.ca_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := localConfig(t)
			tt.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), `"`+tt.wantKey+`"`) {
				t.Fatalf("want error naming %q, got %v", tt.wantKey, err)
			}
		})
	}
}

// withLocalExporter turns the exporter role on, as the local configs do: https to central's
// ingest listener with the region's exporter certificate of the test PKI.
func withLocalExporter(t *testing.T, c *Config) {
	t.Helper()
	c.Roles = append(AllRoles(), RoleExporter)
	cc := testenv.Exporter(t, c.Name)
	c.Export.CentralURL, c.Export.Token = "https://127.0.0.1:8091", "local-analytics-eu-west-1-token"
	c.Export.TLS = export.TLSConfig{CAFile: cc.CAFile, CertFile: cc.CertFile, KeyFile: cc.KeyFile}
}

func TestConfigWithTheExporterIsValidOverMutualTLS(t *testing.T) {
	c := localConfig(t)
	withLocalExporter(t, &c)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigAllowsPlainHTTPOnlyWithTheInternalToken(t *testing.T) {
	c := DefaultConfig("/tmp/d")
	c.Name, c.Jurisdiction = "eu-west-1", "EU"
	c.TLS = TLSConfig{InsecurePlaintext: true}
	c.InternalToken = "a-long-shared-secret"
	c.UserKeys = testUserKeys(t)
	if err := c.Validate(); err != nil {
		t.Fatalf("plain HTTP with a token: %v", err)
	}
}

func TestGCPercentFromConfigUnlessGOGCIsSet(t *testing.T) {
	c := DefaultConfig("/tmp/d")
	c.GCPercent = 300
	for _, tt := range []struct {
		name   string
		gogc   string
		want   int
		wantOK bool
	}{
		{"config applies", "", 300, true},
		{"the environment wins", "100", 0, false},
		{"even off", "off", 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := gcPercent(c, func(k string) string {
				if k == "GOGC" {
					return tt.gogc
				}
				return ""
			})
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("gcPercent = %d, %v; want %d, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// A config file sets one tier's pool and keeps the other pools' defaults; the per-channel key of
// the layout before tiers is refused, naming it.
func TestConfigFileSetsATiersDispatchPoolAndRefusesThePerChannelKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := localConfig(t)
	if err := config.Load(write("tiers.yaml", "dispatch:\n  tiers:\n    marketing:\n      push:\n        concurrency: 32\n"), &c); err != nil {
		t.Fatal(err)
	}
	def := dispatch.DefaultConfig().Tiers
	if c.Dispatch.Tiers.Marketing.Push.Concurrency != 32 || c.Dispatch.Tiers.Marketing.Email != def.Marketing.Email ||
		c.Dispatch.Tiers.Transactional != def.Transactional {
		t.Fatalf("tiers %+v", c.Dispatch.Tiers)
	}
	old := localConfig(t)
	err := config.Load(write("old.yaml", "dispatch:\n  push:\n    concurrency: 128\n"), &old)
	if err == nil || !strings.Contains(err.Error(), "concurrency") {
		t.Fatalf("the old per-channel key: %v", err)
	}
}

func TestJurisdictionHostsEnvPicksTheJurisdictionsClusterOnly(t *testing.T) {
	env := map[string]string{"HERALD_CASSANDRA_EU_HOSTS": "127.0.0.2:9042, 127.0.0.3:9042"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	eu := localConfig(t)
	if err := eu.ApplyDependentEnv(lookup); err != nil {
		t.Fatal(err)
	}
	if strings.Join(eu.Cassandra.Hosts, ",") != "127.0.0.2:9042,127.0.0.3:9042" {
		t.Fatalf("EU hosts %v", eu.Cassandra.Hosts)
	}
	us := localConfig(t)
	us.Name, us.Jurisdiction = "us-east-1", "US"
	before := strings.Join(us.Cassandra.Hosts, ",")
	if err := us.ApplyDependentEnv(lookup); err != nil || strings.Join(us.Cassandra.Hosts, ",") != before {
		t.Fatalf("US region took the EU cluster: %v %v", us.Cassandra.Hosts, err)
	}
	env["HERALD_CASSANDRA_EU_HOSTS"] = "127.0.0.2"
	bad := localConfig(t)
	if err := bad.ApplyDependentEnv(lookup); err == nil || !strings.Contains(err.Error(), "cassandra.hosts") || !strings.Contains(err.Error(), "HERALD_CASSANDRA_EU_HOSTS") {
		t.Fatalf("a bad variable: want an error naming the key and the variable, got %v", err)
	}
}

func TestJurisdictionReplicationEnvSetsTheReplicasPerDataCentre(t *testing.T) {
	lookupOf := func(v string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			if k == "HERALD_CASSANDRA_EU_REPLICATION" {
				return v, true
			}
			return "", false
		}
	}
	eu := localConfig(t)
	if err := eu.ApplyDependentEnv(lookupOf(" eu-west-1:3, eu-central-1 : 3 ")); err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"eu-west-1": 3, "eu-central-1": 3}; !maps.Equal(eu.Cassandra.Replication, want) {
		t.Fatalf("replication %v, want %v", eu.Cassandra.Replication, want)
	}
	us := localConfig(t)
	us.Name, us.Jurisdiction = "us-east-1", "US"
	before := maps.Clone(us.Cassandra.Replication)
	if err := us.ApplyDependentEnv(lookupOf("eu-west-1:3")); err != nil || !maps.Equal(us.Cassandra.Replication, before) {
		t.Fatalf("a US region took the EU replication: %v %v", us.Cassandra.Replication, err)
	}
	for _, bad := range []string{"eu-west-1", "eu-west-1:x", "eu-west-1:0", "eu-west-1:-1", ":3", "eu-west-1:3,eu-west-1:3", "eu-west-1:3,,", "eu-west-1:3\x00"} {
		c := localConfig(t)
		err := c.ApplyDependentEnv(lookupOf(bad))
		if err == nil || !strings.Contains(err.Error(), "cassandra.replication") || !strings.Contains(err.Error(), "HERALD_CASSANDRA_EU_REPLICATION") {
			t.Errorf("%q: want an error naming the key and the variable, got %v", bad, err)
		}
	}
	// A data centre outside the residency rules is Validate's to refuse, as from the file.
	c := localConfig(t)
	if err := c.ApplyDependentEnv(lookupOf("EU-WEST-1:3")); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "cassandra.replication") {
		t.Fatalf("a data centre not named like a region: %v", err)
	}
}
