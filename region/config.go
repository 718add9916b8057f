// Package region is one region's full stack: its API, fan-out, dispatch and scheduler roles over
// the region's own Kafka, Cassandra, Postgres and Redis. Personal data handled by a region stays
// in the region's stores; nothing here reaches another region's.
package region

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herald-notify/herald/platform/cassandra"
	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/pki"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/redis"
	"github.com/herald-notify/herald/platform/telemetry"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/export"
	"github.com/herald-notify/herald/region/fanout"
	"github.com/herald-notify/herald/region/scheduler"
	"github.com/herald-notify/herald/region/webhooks"
	"github.com/herald-notify/herald/region/workflows"
	"github.com/herald-notify/herald/residency"
)

// Config is a region process's configuration.
type Config struct {
	Name         string   `yaml:"name" env:"HERALD_REGION_NAME"`
	Jurisdiction string   `yaml:"jurisdiction" env:"HERALD_REGION_JURISDICTION"`
	Listen       string   `yaml:"listen" env:"HERALD_REGION_LISTEN"`
	Roles        []string `yaml:"roles" env:"HERALD_REGION_ROLES"`
	// RequestTimeout is the deadline of every API request but the event stream: what is not
	// done by then (a produce Kafka has not acknowledged, a store that does not answer) is a 503
	// with Retry-After. Keep it below the gateway's request_timeout, so the region's own answer
	// reaches the gateway in time.
	RequestTimeout time.Duration `yaml:"request_timeout" env:"HERALD_REGION_REQUEST_TIMEOUT"`
	// KafkaWait is how long a send waits for Kafka's acknowledgement before the API keeps it in
	// the outbox (the region's Postgres) and answers 202 all the same; the scheduler puts it on
	// Kafka. Below request_timeout, leaving time for the outbox's write.
	KafkaWait time.Duration `yaml:"kafka_wait" env:"HERALD_REGION_KAFKA_WAIT"`
	// ConsumerLagInterval is how often a process with a consumer role (fanout, dispatch,
	// exporter) reads the lag of every consumer group of the region from the broker
	// (herald_kafka_consumer_group_lag; region/lagwatch).
	ConsumerLagInterval time.Duration `yaml:"consumer_lag_interval"`

	// TopicPartitions is the partition count of each topic the region creates, but for the
	// two below.
	TopicPartitions int `yaml:"topic_partitions"`
	// RetryTopicPartitions is the partition count of the dispatch retry topics (0: as
	// topic_partitions). A retry partition is worked on with the dispatcher's whole
	// concurrency, so fewer are needed than for the dispatch topics.
	RetryTopicPartitions int `yaml:"retry_topic_partitions"`
	// DeadLetterTopicPartitions is the partition count of the dead-letter topics: few
	// records, kept long.
	DeadLetterTopicPartitions int `yaml:"dead_letter_topic_partitions"`
	// Replication is the replication factor of the region's Kafka topics (min.insync.replicas
	// is 2 from 3 replicas up); the local stack's cluster mode sets 3 in HERALD_KAFKA_REPLICATION.
	Replication int `yaml:"replication" env:"HERALD_KAFKA_REPLICATION"`
	// PolicyKey is the discovery key of the residency policy, the one the gateways follow: the
	// dispatch role takes its jurisdiction's push_content from it.
	PolicyKey string `yaml:"policy_key" env:"HERALD_REGION_POLICY_KEY"`
	// InternalToken, when set, is required from callers (the gateway) as a Bearer token, on
	// top of their client certificate; with tls.insecure_plaintext it is the only credential,
	// so it is required then.
	InternalToken string `yaml:"internal_token" env:"HERALD_REGION_INTERNAL_TOKEN"`
	// TLS is the API listener's transport: mutual TLS, callers proving themselves with a
	// client certificate from the internal CA.
	TLS TLSConfig `yaml:"tls"`
	// LogTTL is how long inbox and delivery-log rows live in Cassandra.
	LogTTL time.Duration `yaml:"log_ttl"`
	// DedupTTL is how long a delivered recipient x channel is remembered.
	DedupTTL time.Duration `yaml:"dedup_ttl"`
	// GCPercent is the Go garbage collector's target (what GOGC sets) for the process running
	// the region; a GOGC in the environment wins. The write path allocates per delivery over a
	// live heap of 10-15 MB, so the default 100 collects about 11 times a second under load.
	GCPercent int              `yaml:"gc_percent"`
	Fanout    fanout.Config    `yaml:"fanout"`
	Scheduler scheduler.Config `yaml:"scheduler"`
	Workflows workflows.Config `yaml:"workflows"`
	Dispatch  dispatch.Config  `yaml:"dispatch"`
	// Export configures the exporter role; checked only when the role is on.
	Export export.Config `yaml:"export"`
	// Webhooks configures the webhooks role (retries, breaker) and the endpoints API's URL rule.
	Webhooks webhooks.Config `yaml:"webhooks"`
	// UserKeys is the master keyring that wraps the users' data keys in Postgres.
	UserKeys UserKeysConfig `yaml:"user_keys"`

	Kafka     kafka.Config     `yaml:"kafka"`
	Cassandra cassandra.Config `yaml:"cassandra"`
	Postgres  postgres.Config  `yaml:"postgres"`
	Redis     redis.Config     `yaml:"redis"`
	Discovery discovery.Config `yaml:"discovery"`
	Telemetry telemetry.Config `yaml:"telemetry"`
}

// TLSConfig is the region API's mutual TLS.
type TLSConfig struct {
	// CertFile and KeyFile are the region's server certificate (its SANs name the addresses
	// the gateway dials) and key; ClientCAFile the CA whose client certificates are accepted.
	CertFile     string `yaml:"cert_file" env:"HERALD_REGION_TLS_CERT_FILE"`
	KeyFile      string `yaml:"key_file" env:"HERALD_REGION_TLS_KEY_FILE"`
	ClientCAFile string `yaml:"client_ca_file" env:"HERALD_REGION_TLS_CLIENT_CA_FILE"`
	// InsecurePlaintext serves plain HTTP: anyone who reaches the port can call the API with
	// the internal token, which is then required. Only for a region whose TLS is terminated
	// in front of it; logged as a warning at every start.
	InsecurePlaintext bool `yaml:"insecure_plaintext" env:"HERALD_REGION_TLS_INSECURE_PLAINTEXT"`
}

// Server is the pki form of the files.
func (t TLSConfig) Server() pki.ServerConfig {
	return pki.ServerConfig{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile}
}

// DefaultConfig returns the defaults for a local region; discoveryDir is the file backend's root.
func DefaultConfig(discoveryDir string) Config {
	return Config{
		Listen:                    "127.0.0.1:8101",
		PolicyKey:                 residency.DefaultKey,
		Roles:                     AllRoles(),
		TopicPartitions:           4,
		DeadLetterTopicPartitions: 1,
		Replication:               1,
		LogTTL:                    90 * 24 * time.Hour,
		DedupTTL:                  24 * time.Hour,
		GCPercent:                 200,
		Fanout:                    fanout.DefaultConfig(),
		Scheduler:                 scheduler.DefaultConfig(),
		Workflows:                 workflows.DefaultConfig(),
		Dispatch:                  dispatch.DefaultConfig(),
		Export:                    export.DefaultConfig(),
		Webhooks:                  webhooks.DefaultConfig(),
		UserKeys:                  DefaultUserKeysConfig(),
		Kafka:                     kafka.Defaults(),
		Cassandra:                 cassandra.Defaults(),
		Postgres:                  postgres.Defaults(),
		Redis:                     redis.Defaults(),
		Discovery:                 discovery.Defaults(discoveryDir),
		Telemetry:                 telemetry.Defaults(),

		RequestTimeout:      4 * time.Second,
		KafkaWait:           2 * time.Second,
		ConsumerLagInterval: 15 * time.Second,
	}
}

// JurisdictionHostsEnv is the environment variable naming the Cassandra nodes of a
// jurisdiction's cluster, HERALD_CASSANDRA_<JURISDICTION>_HOSTS (HERALD_CASSANDRA_EU_HOSTS):
// set, it wins over cassandra.hosts and HERALD_CASSANDRA_HOSTS, so one environment serves the
// regions of several jurisdictions, each on its own cluster.
func JurisdictionHostsEnv(jurisdiction string) string {
	return "HERALD_CASSANDRA_" + jurisdiction + "_HOSTS"
}

// JurisdictionPostgresEnv is the environment variable with the URL of a jurisdiction's
// Postgres servers, HERALD_POSTGRES_<JURISDICTION>_URL (HERALD_POSTGRES_EU_URL): set, it wins
// over postgres.url and HERALD_POSTGRES_URL. List the primary and its standbys with
// target_session_attrs=read-write, and connections follow a promotion.
func JurisdictionPostgresEnv(jurisdiction string) string {
	return "HERALD_POSTGRES_" + jurisdiction + "_URL"
}

// JurisdictionReplicationEnv is the environment variable with the replicas per data centre of
// a jurisdiction's keyspace, HERALD_CASSANDRA_<JURISDICTION>_REPLICATION
// ("eu-west-1:3,eu-central-1:3"): set, it wins over cassandra.replication. The local stack
// writes it from the cluster it runs (one node or three per data centre), the way
// HERALD_KAFKA_REPLICATION follows its brokers: a replica count only the cluster knows.
func JurisdictionReplicationEnv(jurisdiction string) string {
	return "HERALD_CASSANDRA_" + jurisdiction + "_REPLICATION"
}

// ApplyDependentEnv applies JurisdictionHostsEnv, JurisdictionReplicationEnv and
// JurisdictionPostgresEnv (config.Load calls it after the tagged variables).
func (c *Config) ApplyDependentEnv(lookup func(string) (string, bool)) error {
	if !jurisdictionRE.MatchString(c.Jurisdiction) {
		return nil // Validate names the key
	}
	if v, ok := lookup(JurisdictionPostgresEnv(c.Jurisdiction)); ok && strings.TrimSpace(v) != "" {
		c.Postgres.URL = strings.TrimSpace(v) // postgres.url's validation names the key
	}
	if err := c.applyReplicationEnv(lookup); err != nil {
		return err
	}
	name := JurisdictionHostsEnv(c.Jurisdiction)
	v, ok := lookup(name)
	if !ok || strings.TrimSpace(v) == "" {
		return nil
	}
	var hosts []string
	for _, h := range strings.Split(v, ",") {
		hosts = append(hosts, strings.TrimSpace(h))
	}
	if err := config.HostPorts("hosts", hosts); err != nil {
		return config.Errorf("cassandra.hosts", v, "from environment variable %s: %v", name, err)
	}
	c.Cassandra.Hosts = hosts
	return nil
}

// applyReplicationEnv reads JurisdictionReplicationEnv: "dc:replicas" pairs, comma-separated.
// Validate then checks the data centres like those of cassandra.replication.
func (c *Config) applyReplicationEnv(lookup func(string) (string, bool)) error {
	name := JurisdictionReplicationEnv(c.Jurisdiction)
	v, ok := lookup(name)
	if !ok || strings.TrimSpace(v) == "" {
		return nil
	}
	rep := map[string]int{}
	for _, pair := range strings.Split(v, ",") {
		dc, n, ok := strings.Cut(strings.TrimSpace(pair), ":")
		replicas, err := strconv.Atoi(strings.TrimSpace(n))
		dc = strings.TrimSpace(dc)
		switch {
		case !ok || dc == "" || err != nil:
			return config.Errorf("cassandra.replication", v, "from environment variable %s: %q is not data-centre:replicas", name, pair)
		case replicas < 1:
			return config.Errorf("cassandra.replication", v, "from environment variable %s: data centre %s needs at least 1 replica", name, dc)
		}
		if _, dup := rep[dc]; dup {
			return config.Errorf("cassandra.replication", v, "from environment variable %s: data centre %s named twice", name, dc)
		}
		rep[dc] = replicas
	}
	c.Cassandra.Replication = rep
	return nil
}

var (
	nameRE         = regexp.MustCompile(`^[a-z]{2}-[a-z]+-[0-9]$`)
	jurisdictionRE = regexp.MustCompile(`^[A-Z]{2,8}$`)
)

// StoreName turns a jurisdiction into the name of the Postgres database and Cassandra keyspace
// its regions share: "EU" is "herald_eu".
func StoreName(jurisdiction string) string {
	return "herald_" + strings.ToLower(jurisdiction)
}

// Validate fills the names derived from the region name and checks every key.
func (c *Config) Validate() error {
	if !nameRE.MatchString(c.Name) {
		return config.Errorf("name", c.Name, "must be a region name like eu-west-1")
	}
	if !jurisdictionRE.MatchString(c.Jurisdiction) {
		return config.Errorf("jurisdiction", c.Jurisdiction, "must be a jurisdiction code like EU or US")
	}
	if c.Cassandra.Keyspace == "" {
		c.Cassandra.Keyspace = StoreName(c.Jurisdiction)
	}
	if c.Postgres.Database == "" {
		c.Postgres.Database = StoreName(c.Jurisdiction)
	}
	if len(c.Cassandra.Replication) > 0 {
		// One data centre per region, named for it: the region's queries stay in its own.
		if c.Cassandra.LocalDC == "" {
			c.Cassandra.LocalDC = c.Name
		}
		if c.Cassandra.LocalDC != c.Name {
			return config.Errorf("cassandra.local_dc", c.Cassandra.LocalDC, "must be the region's own data centre, %s", c.Name)
		}
		for dc := range c.Cassandra.Replication {
			if !nameRE.MatchString(dc) {
				return config.Errorf("cassandra.replication", dc, "a data centre is a region of the jurisdiction, named like eu-west-1")
			}
		}
	}
	if c.Redis.Prefix == "" {
		c.Redis.Prefix = c.Name + ":"
	}
	if c.Kafka.ClientID == "" || c.Kafka.ClientID == "herald" {
		c.Kafka.ClientID = "herald-" + c.Name
	}
	if err := config.Required("policy_key", c.PolicyKey); err != nil {
		return err
	}
	if err := config.HostPort("listen", c.Listen); err != nil {
		return err
	}
	if c.RequestTimeout < 100*time.Millisecond || c.RequestTimeout > time.Minute {
		return config.Errorf("request_timeout", c.RequestTimeout.String(), "must be 100ms-1m")
	}
	if c.KafkaWait < 50*time.Millisecond || c.KafkaWait > c.RequestTimeout*3/4 {
		return config.Errorf("kafka_wait", c.KafkaWait.String(), "must be 50ms to three quarters of request_timeout (%s), leaving time for the outbox", c.RequestTimeout*3/4)
	}
	if c.ConsumerLagInterval < time.Second || c.ConsumerLagInterval > 5*time.Minute {
		return config.Errorf("consumer_lag_interval", c.ConsumerLagInterval.String(), "must be 1s-5m")
	}
	if len(c.Roles) == 0 {
		return config.Errorf("roles", "", "must name at least one of %s", strings.Join(KnownRoles(), ","))
	}
	for _, r := range c.Roles {
		if !slices.Contains(KnownRoles(), r) {
			return config.Errorf("roles", r, "unknown role (known: %s)", strings.Join(KnownRoles(), ","))
		}
	}
	if c.TopicPartitions < 1 || c.TopicPartitions > 1024 {
		return config.Errorf("topic_partitions", fmt.Sprint(c.TopicPartitions), "must be 1-1024")
	}
	if c.RetryTopicPartitions < 0 || c.RetryTopicPartitions > 1024 {
		return config.Errorf("retry_topic_partitions", fmt.Sprint(c.RetryTopicPartitions), "must be 1-1024, or 0 for topic_partitions")
	}
	if c.DeadLetterTopicPartitions < 1 || c.DeadLetterTopicPartitions > 1024 {
		return config.Errorf("dead_letter_topic_partitions", fmt.Sprint(c.DeadLetterTopicPartitions), "must be 1-1024")
	}
	if c.Replication < 1 {
		return config.Errorf("replication", fmt.Sprint(c.Replication), "must be at least 1")
	}
	if c.LogTTL < time.Hour {
		return config.Errorf("log_ttl", c.LogTTL.String(), "must be at least 1h")
	}
	if c.DedupTTL < time.Minute {
		return config.Errorf("dedup_ttl", c.DedupTTL.String(), "must be at least 1m")
	}
	if c.GCPercent < 50 || c.GCPercent > 1000 {
		return config.Errorf("gc_percent", fmt.Sprint(c.GCPercent), "must be 50-1000")
	}
	if err := c.Webhooks.Validate(); err != nil {
		return config.Prefix("webhooks", err)
	}
	if err := c.Fanout.Validate(); err != nil {
		return config.Prefix("fanout", err)
	}
	if err := c.Scheduler.Validate(); err != nil {
		return config.Prefix("scheduler", err)
	}
	if err := c.Workflows.Validate(); err != nil {
		return config.Prefix("workflows", err)
	}
	checks := []struct {
		key string
		err error
	}{
		{"kafka", c.Kafka.Validate()},
		{"cassandra", c.Cassandra.Validate()},
		{"postgres", c.Postgres.Validate()},
		{"redis", c.Redis.Validate()},
		{"discovery", c.Discovery.Validate()},
		{"telemetry", c.Telemetry.Validate()},
		{"dispatch", c.Dispatch.Validate()},
	}
	for _, ch := range checks {
		if ch.err != nil {
			return config.Prefix(ch.key, ch.err)
		}
	}
	if slices.Contains(c.Roles, RoleExporter) {
		if err := c.Export.Validate(); err != nil {
			return config.Prefix("export", err)
		}
	}
	if c.TLS.InsecurePlaintext {
		if c.InternalToken == "" {
			return config.Errorf("tls.insecure_plaintext", "true", "requires internal_token: a plain-HTTP region needs another credential from its callers")
		}
	} else if err := c.TLS.Server().Validate(); err != nil {
		return config.Prefix("tls", err)
	}
	if err := c.UserKeys.validate(); err != nil {
		return config.Prefix("user_keys", err)
	}
	return nil
}
