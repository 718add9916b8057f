// Package sim runs local stand-ins for the providers Herald delivers through: APNs (HTTP/2 over
// TLS with provider-token auth), FCM HTTP v1 with its OAuth2 token endpoint, an SMTP server with
// STARTTLS and AUTH, and a Twilio-compatible SMS API. They speak the wire protocols closely
// enough that the real client libraries talk to them unchanged, record what they receive, and
// inject faults on demand (config or admin API).
//
// The package imports no Herald part, only platform helpers: a bug in the dispatch code must not
// be hidden by the same bug in the simulator it is tested against.
package sim

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/health"
	"github.com/herald-notify/herald/platform/httpserver"
	"github.com/herald-notify/herald/platform/lifecycle"
	"github.com/herald-notify/herald/platform/telemetry"
)

// Names are the simulators, as used in the admin API paths.
var Names = []string{"apns", "fcm", "smtp", "sms", "webhook"}

// Config is the configuration of `herald-dev sim`.
type Config struct {
	// Dir holds the CA, the keys and the credentials clients need; what is missing is created.
	Dir string `yaml:"dir" env:"HERALD_SIM_DIR"`
	// CAFile is where the CA certificate (PEM) is written for clients to trust (default
	// <dir>/ca.pem). Its key stays in <dir>/ca-key.pem.
	CAFile string `yaml:"ca_file" env:"HERALD_SIM_CA_FILE"`
	// Seed seeds the fault RNGs so runs repeat (0: random). A simulator's faults.seed wins.
	Seed    int64         `yaml:"seed" env:"HERALD_SIM_SEED"`
	Records RecordsConfig `yaml:"records"`
	Admin   AdminConfig   `yaml:"admin"`
	APNs    APNsConfig    `yaml:"apns"`
	FCM     FCMConfig     `yaml:"fcm"`
	SMTP    SMTPConfig    `yaml:"smtp"`
	SMS     SMSConfig     `yaml:"sms"`
	// Webhook is the receiver standing in for an app's webhook endpoints.
	Webhook WebhookConfig `yaml:"webhook"`
	// Drain is how long shutdown waits for in-flight requests and SMTP sessions.
	Drain     time.Duration    `yaml:"drain" env:"HERALD_SIM_DRAIN"`
	Telemetry telemetry.Config `yaml:"telemetry"`
}

// RecordsConfig bounds what each simulator remembers.
type RecordsConfig struct {
	// Capacity is the number of records each simulator keeps; the oldest go first.
	Capacity int `yaml:"capacity" env:"HERALD_SIM_RECORDS_CAPACITY"`
	// MaxPayloadBytes cuts stored payloads (mail bodies mostly) to this size.
	MaxPayloadBytes int `yaml:"max_payload_bytes" env:"HERALD_SIM_RECORDS_MAX_PAYLOAD_BYTES"`
}

// AdminConfig is the admin listener: health, records and faults.
type AdminConfig struct {
	Listen string `yaml:"listen" env:"HERALD_SIM_ADMIN_LISTEN"`
}

// APNsConfig configures the APNs simulator.
type APNsConfig struct {
	Listen string `yaml:"listen" env:"HERALD_SIM_APNS_LISTEN"`
	// TeamID and KeyID are what provider tokens must carry (iss and kid).
	TeamID string `yaml:"team_id" env:"HERALD_SIM_APNS_TEAM_ID"`
	KeyID  string `yaml:"key_id" env:"HERALD_SIM_APNS_KEY_ID"`
	// KeyFile is the .p8 signing key clients use (default <dir>/apns-auth-key.p8); created
	// when missing. Its public half verifies the tokens.
	KeyFile string `yaml:"key_file" env:"HERALD_SIM_APNS_KEY_FILE"`
	// PublicKeyFile, when set, verifies tokens with this PEM public key instead, so a client
	// can keep a .p8 the simulator never sees.
	PublicKeyFile string `yaml:"public_key_file" env:"HERALD_SIM_APNS_PUBLIC_KEY_FILE"`
	// Topics are the accepted apns-topic values (bundle ids; their .voip, .complication and
	// .push-type.liveactivity forms too). Empty accepts any.
	Topics []string `yaml:"topics" env:"HERALD_SIM_APNS_TOPICS"`
	Faults Faults   `yaml:"faults"`
}

// FCMConfig configures the FCM simulator.
type FCMConfig struct {
	Listen    string `yaml:"listen" env:"HERALD_SIM_FCM_LISTEN"`
	ProjectID string `yaml:"project_id" env:"HERALD_SIM_FCM_PROJECT_ID"`
	// CredentialsFile is the service-account JSON clients load (default
	// <dir>/fcm-service-account.json). Its key is created when missing; project_id and
	// token_uri are rewritten at every start to match this config and the listen address.
	CredentialsFile string `yaml:"credentials_file" env:"HERALD_SIM_FCM_CREDENTIALS_FILE"`
	Faults          Faults `yaml:"faults"`
}

// SMTPConfig configures the SMTP simulator.
type SMTPConfig struct {
	Listen   string `yaml:"listen" env:"HERALD_SIM_SMTP_LISTEN"`
	Domain   string `yaml:"domain" env:"HERALD_SIM_SMTP_DOMAIN"`
	Username string `yaml:"username" env:"HERALD_SIM_SMTP_USERNAME"`
	Password string `yaml:"password" env:"HERALD_SIM_SMTP_PASSWORD"`
	// MaxMessageBytes is the SIZE limit; larger messages get 552.
	MaxMessageBytes int `yaml:"max_message_bytes" env:"HERALD_SIM_SMTP_MAX_MESSAGE_BYTES"`
	// AllowInsecureAuth offers AUTH before STARTTLS. Real providers do not; keep it off.
	AllowInsecureAuth bool `yaml:"allow_insecure_auth" env:"HERALD_SIM_SMTP_ALLOW_INSECURE_AUTH"`
	// DKIM is the signing domain and selector senders sign with, whose key pair the simulator
	// makes (the private half at DKIMKeyFile, default <dir>/dkim-private.pem) and whose public
	// record it resolves when it checks arriving mail, as a receiving MTA queries DNS.
	DKIMDomain   string `yaml:"dkim_domain"`
	DKIMSelector string `yaml:"dkim_selector"`
	DKIMKeyFile  string `yaml:"dkim_key_file"`
	// Events posts SendGrid's signed Event Webhook batches for each mail taken (off unless
	// events.url is set).
	Events SMTPEventsConfig `yaml:"events"`
	Faults Faults           `yaml:"faults"`
}

// SMSConfig configures the Twilio-compatible SMS simulator.
type SMSConfig struct {
	Listen     string `yaml:"listen" env:"HERALD_SIM_SMS_LISTEN"`
	AccountSID string `yaml:"account_sid" env:"HERALD_SIM_SMS_ACCOUNT_SID"`
	AuthToken  string `yaml:"auth_token" env:"HERALD_SIM_SMS_AUTH_TOKEN"`
	Faults     Faults `yaml:"faults"`
}

// DefaultConfig returns the local defaults; dir is where credentials go ($HERALD_HOME/sim).
func DefaultConfig(dir string) Config {
	return Config{
		Dir:     dir,
		Records: RecordsConfig{Capacity: 100_000, MaxPayloadBytes: 64 << 10},
		Admin:   AdminConfig{Listen: "127.0.0.1:8446"},
		APNs:    APNsConfig{Listen: "127.0.0.1:8443", TeamID: "HERALDSIM1", KeyID: "SIMKEY0001"},
		FCM:     FCMConfig{Listen: "127.0.0.1:8444", ProjectID: "herald-local"},
		SMTP: SMTPConfig{Listen: "127.0.0.1:2525", Domain: "localhost", Username: "herald",
			Password: "herald-sim", MaxMessageBytes: 10 << 20},
		SMS: SMSConfig{Listen: "127.0.0.1:8445", AccountSID: "AC00000000000000000000000000000001",
			AuthToken: "00000000000000000000000000000001"},
		Webhook:   WebhookConfig{Listen: "127.0.0.1:8447"},
		Drain:     5 * time.Second,
		Telemetry: telemetry.Defaults(),
	}
}

var (
	appleIDRE    = regexp.MustCompile(`^[A-Z0-9]{10}$`)
	gcpProjectRE = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	accountSIDRE = regexp.MustCompile(`^AC[0-9a-f]{32}$`)
)

// Validate checks every key.
func (c *Config) Validate() error {
	if err := config.Required("dir", c.Dir); err != nil {
		return err
	}
	if c.Records.Capacity < 1 || c.Records.Capacity > 10_000_000 {
		return config.Errorf("records.capacity", strconv.Itoa(c.Records.Capacity), "must be 1-10000000")
	}
	if c.Records.MaxPayloadBytes < 0 {
		return config.Errorf("records.max_payload_bytes", strconv.Itoa(c.Records.MaxPayloadBytes), "must not be negative")
	}
	listens := []struct{ key, addr string }{
		{"admin.listen", c.Admin.Listen}, {"apns.listen", c.APNs.Listen}, {"fcm.listen", c.FCM.Listen},
		{"smtp.listen", c.SMTP.Listen}, {"sms.listen", c.SMS.Listen}, {"webhook.listen", c.Webhook.Listen},
	}
	seen := map[string]string{}
	for _, l := range listens {
		if err := hostPortOrZero(l.key, l.addr); err != nil {
			return err
		}
		if _, port, _ := net.SplitHostPort(l.addr); port != "0" {
			if other, dup := seen[l.addr]; dup {
				return config.Errorf(l.key, l.addr, "same address as %s", other)
			}
			seen[l.addr] = l.key
		}
	}
	if !appleIDRE.MatchString(c.APNs.TeamID) {
		return config.Errorf("apns.team_id", c.APNs.TeamID, "must be 10 upper-case letters or digits, like an Apple team id")
	}
	if !appleIDRE.MatchString(c.APNs.KeyID) {
		return config.Errorf("apns.key_id", c.APNs.KeyID, "must be 10 upper-case letters or digits, like an Apple key id")
	}
	if !gcpProjectRE.MatchString(c.FCM.ProjectID) {
		return config.Errorf("fcm.project_id", c.FCM.ProjectID, "must be 6-30 lower-case letters, digits or hyphens, starting with a letter")
	}
	if err := config.Required("smtp.domain", c.SMTP.Domain); err != nil {
		return err
	}
	if err := config.Required("smtp.username", c.SMTP.Username); err != nil {
		return err
	}
	if err := config.Required("smtp.password", c.SMTP.Password); err != nil {
		return err
	}
	if u := c.SMTP.Events.URL; u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return config.Errorf("smtp.events.url", u, "must be an http(s) URL")
	}
	if c.SMTP.Events.Later < 0 {
		return config.Errorf("smtp.events.later", c.SMTP.Events.Later.String(), "must not be negative")
	}
	if c.SMTP.MaxMessageBytes < 1024 {
		return config.Errorf("smtp.max_message_bytes", strconv.Itoa(c.SMTP.MaxMessageBytes), "must be at least 1024")
	}
	if !accountSIDRE.MatchString(c.SMS.AccountSID) {
		return config.Errorf("sms.account_sid", c.SMS.AccountSID, `must be "AC" and 32 lower-case hex digits`)
	}
	if err := config.Required("sms.auth_token", c.SMS.AuthToken); err != nil {
		return err
	}
	for _, f := range []struct {
		key string
		f   Faults
	}{{"apns", c.APNs.Faults}, {"fcm", c.FCM.Faults}, {"smtp", c.SMTP.Faults}, {"sms", c.SMS.Faults}, {"webhook", c.Webhook.Faults}} {
		if err := config.Prefix(f.key, config.Prefix("faults", f.f.Validate())); err != nil {
			return err
		}
	}
	if c.Drain < 0 {
		return config.Errorf("drain", c.Drain.String(), "must not be negative")
	}
	return config.Prefix("telemetry", c.Telemetry.Validate())
}

// hostPortOrZero is config.HostPort that also takes port 0 (tests listen on any free port).
func hostPortOrZero(key, value string) error {
	if host, port, err := net.SplitHostPort(value); err == nil && host != "" && port == "0" {
		return nil
	}
	return config.HostPort(key, value)
}

func (c *Config) caFile() string       { return orDefault(c.CAFile, filepath.Join(c.Dir, "ca.pem")) }
func (c *Config) accountsFile() string { return filepath.Join(c.Dir, "accounts.json") }
func (c *Config) dkimKeyFile() string {
	return orDefault(c.SMTP.DKIMKeyFile, filepath.Join(c.Dir, "dkim-private.pem"))
}

func (c *Config) dkimDomain() string   { return orDefault(c.SMTP.DKIMDomain, "herald.local") }
func (c *Config) dkimSelector() string { return orDefault(c.SMTP.DKIMSelector, "herald") }

func (c *Config) apnsKeyFile() string {
	return orDefault(c.APNs.KeyFile, filepath.Join(c.Dir, "apns-auth-key.p8"))
}
func (c *Config) fcmCredentialsFile() string {
	return orDefault(c.FCM.CredentialsFile, filepath.Join(c.Dir, "fcm-service-account.json"))
}

func orDefault(v, def string) string {
	if v != "" {
		return v
	}
	return def
}

// Info tells clients where each simulator listens and where its credentials are. The admin API
// serves it at GET /sim/info.
type Info struct {
	CAFile string `json:"ca_file"`
	Admin  string `json:"admin"`
	// AccountsFile keeps the accounts made over the admin API (POST /sim/apns/keys, ...).
	AccountsFile string `json:"accounts_file"`
	APNs         struct {
		URL     string `json:"url"`
		TeamID  string `json:"team_id"`
		KeyID   string `json:"key_id"`
		KeyFile string `json:"key_file,omitempty"`
	} `json:"apns"`
	FCM struct {
		Endpoint        string `json:"endpoint"`
		TokenURI        string `json:"token_uri"`
		ProjectID       string `json:"project_id"`
		CredentialsFile string `json:"credentials_file"`
	} `json:"fcm"`
	SMTP struct {
		Addr     string `json:"addr"`
		Username string `json:"username"`
		// DKIMKeyFile is the private key senders sign with (d=DKIMDomain, s=DKIMSelector);
		// DKIMRecord is the DNS record the simulator checks signatures against.
		DKIMDomain   string `json:"dkim_domain"`
		DKIMSelector string `json:"dkim_selector"`
		DKIMKeyFile  string `json:"dkim_key_file"`
		DKIMRecord   string `json:"dkim_record"`
		// EventsURL is where SendGrid event batches are posted ("": off); EventsPublicKey
		// verifies them (base64 DER, as SendGrid's console shows it), also written to
		// EventsPublicKeyFile.
		EventsURL           string `json:"events_url,omitempty"`
		EventsPublicKey     string `json:"events_public_key,omitempty"`
		EventsPublicKeyFile string `json:"events_public_key_file,omitempty"`
	} `json:"smtp"`
	SMS struct {
		URL        string `json:"url"`
		AccountSID string `json:"account_sid"`
	} `json:"sms"`
	// Webhook is the receiver's base: an endpoint is <url>/hooks/<name>.
	Webhook struct {
		URL string `json:"url"`
	} `json:"webhook"`
}

// Sim is the four simulators and the admin API, listening but not yet serving.
type Sim struct {
	cfg  Config
	log  *slog.Logger
	ca   *CA
	info Info
	lns  struct{ admin, apns, fcm, smtp, sms, webhook net.Listener }

	apns *apnsServer
	fcm  *fcmServer
	smtp *smtpServer
	sms  *smsServer
	hook *webhookServer
	// sims maps the admin API's names to each simulator's records and faults.
	sims   map[string]simulator
	health *health.Health
	// accounts are the provider accounts made over the admin API, beside the configured ones.
	accounts *accountStore
}

type simulator struct {
	records *Ring
	faults  *Injector
}

// New prepares the simulators: it loads or creates the CA and credentials, listens on every
// port (so Info holds real addresses even for port 0) and writes the client files.
func New(cfg Config, log *slog.Logger, version string) (_ *Sim, err error) {
	// Not the named result: a failing return sets that to nil before the deferred cleanup runs.
	s := &Sim{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			s.closeListeners()
		}
	}()
	s.ca, err = loadOrCreateCA(cfg.caFile(), filepath.Join(cfg.Dir, "ca-key.pem"))
	if err != nil {
		return nil, err
	}
	for _, l := range []struct {
		dst  *net.Listener
		addr string
	}{{&s.lns.admin, cfg.Admin.Listen}, {&s.lns.apns, cfg.APNs.Listen}, {&s.lns.fcm, cfg.FCM.Listen},
		{&s.lns.smtp, cfg.SMTP.Listen}, {&s.lns.sms, cfg.SMS.Listen}, {&s.lns.webhook, cfg.Webhook.Listen}} {
		if *l.dst, err = net.Listen("tcp", l.addr); err != nil {
			return nil, fmt.Errorf("listening on %s: %w", l.addr, err)
		}
	}
	cert, err := s.ca.ServerCert()
	if err != nil {
		return nil, err
	}
	seed := uint64(cfg.Seed)
	newRing := func() *Ring { return NewRing(cfg.Records.Capacity, cfg.Records.MaxPayloadBytes) }
	// Each simulator gets its own seed so one's draws do not shift another's.
	seedFor := func(i uint64) uint64 {
		if seed == 0 {
			return 0
		}
		return seed + i
	}

	s.apns, err = newAPNsServer(cfg.APNs, cfg.apnsKeyFile(), newRing(), NewInjector(cfg.APNs.Faults, seedFor(1)), log)
	if err != nil {
		return nil, err
	}
	fcmURL := "http://" + s.lns.fcm.Addr().String()
	s.fcm, err = newFCMServer(cfg.FCM, cfg.fcmCredentialsFile(), fcmURL+"/token", newRing(), NewInjector(cfg.FCM.Faults, seedFor(2)), log)
	if err != nil {
		return nil, err
	}
	s.smtp = newSMTPServer(cfg.SMTP, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		newRing(), NewInjector(cfg.SMTP.Faults, seedFor(3)), log)
	if s.smtp.dkim, err = loadOrCreateDKIM(cfg.dkimKeyFile(), cfg.dkimDomain(), cfg.dkimSelector()); err != nil {
		return nil, err
	}
	if cfg.SMTP.Events.URL != "" {
		if s.smtp.events, err = newEventPoster(cfg.SMTP.Events, cfg.sendGridKeyFile(), log); err != nil {
			return nil, err
		}
		s.info.SMTP.EventsURL, s.info.SMTP.EventsPublicKey = cfg.SMTP.Events.URL, s.smtp.events.public
		s.info.SMTP.EventsPublicKeyFile = sendGridPublicKeyFile(cfg.sendGridKeyFile())
	}
	s.sms = newSMSServer(cfg.SMS, newRing(), NewInjector(cfg.SMS.Faults, seedFor(4)), log)
	s.hook = newWebhookServer(newRing(), NewInjector(cfg.Webhook.Faults, seedFor(5)), log)
	s.apns.tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"}} // APNs speaks HTTP/2 only

	if s.accounts, err = loadAccountStore(cfg.accountsFile()); err != nil {
		return nil, err
	}
	if err := s.restoreAccounts(); err != nil {
		return nil, err
	}

	s.sims = map[string]simulator{
		"apns": {s.apns.records, s.apns.faults}, "fcm": {s.fcm.records, s.fcm.faults},
		"smtp": {s.smtp.records, s.smtp.faults}, "sms": {s.sms.records, s.sms.faults},
		"webhook": {s.hook.records, s.hook.faults},
	}
	s.health = health.New(map[string]string{"component": "sim", "version": version})

	s.info.CAFile = cfg.caFile()
	s.info.Admin = "http://" + s.lns.admin.Addr().String()
	s.info.AccountsFile = cfg.accountsFile()
	s.info.APNs.URL = "https://" + s.lns.apns.Addr().String()
	s.info.APNs.TeamID, s.info.APNs.KeyID = cfg.APNs.TeamID, cfg.APNs.KeyID
	if s.apns.keyWritten {
		s.info.APNs.KeyFile = cfg.apnsKeyFile()
	}
	s.info.FCM.Endpoint = fcmURL + "/v1"
	s.info.FCM.TokenURI = fcmURL + "/token"
	s.info.FCM.ProjectID = cfg.FCM.ProjectID
	s.info.FCM.CredentialsFile = cfg.fcmCredentialsFile()
	s.info.SMTP.Addr = s.lns.smtp.Addr().String()
	s.info.SMTP.Username = cfg.SMTP.Username
	s.info.SMTP.DKIMDomain, s.info.SMTP.DKIMSelector, s.info.SMTP.DKIMKeyFile = cfg.dkimDomain(), cfg.dkimSelector(), cfg.dkimKeyFile()
	s.info.SMTP.DKIMRecord = s.smtp.dkim.name() + " TXT " + s.smtp.dkim.record
	s.info.SMS.URL = "http://" + s.lns.sms.Addr().String()
	s.info.SMS.AccountSID = cfg.SMS.AccountSID
	s.info.Webhook.URL = "http://" + s.lns.webhook.Addr().String()
	return s, nil
}

// Info returns the addresses and credential files.
func (s *Sim) Info() Info { return s.info }

// CA returns the local CA clients must trust.
func (s *Sim) CA() *CA { return s.ca }

func (s *Sim) closeListeners() {
	for _, l := range []net.Listener{s.lns.admin, s.lns.apns, s.lns.fcm, s.lns.smtp, s.lns.sms, s.lns.webhook} {
		if l != nil {
			l.Close()
		}
	}
}

// Run serves every simulator until ctx ends, then drains them all; the first to fail stops the
// others.
func (s *Sim) Run(ctx context.Context) error {
	drain := s.cfg.Drain
	if drain == 0 {
		drain = time.Nanosecond // httpserver treats 0 as its default; 0 here means "do not wait"
	}
	httpTask := func(name string, ln net.Listener, h http.Handler, before func()) lifecycle.Task {
		srv := &httpserver.Server{Name: name, Handler: h, Log: s.log, Listener: ln, Drain: drain, BeforeShutdown: before}
		return lifecycle.Task{Name: name, Run: srv.Run}
	}
	s.log.Info("simulators starting", "apns", s.info.APNs.URL, "fcm", s.info.FCM.Endpoint, "smtp", s.info.SMTP.Addr,
		"sms", s.info.SMS.URL, "webhook", s.info.Webhook.URL, "admin", s.info.Admin, "ca_file", s.info.CAFile)
	return lifecycle.Run(ctx, s.log,
		httpTask("sim-admin", s.lns.admin, s.adminHandler(), s.health.Drain),
		httpTask("sim-apns", tls.NewListener(s.lns.apns, s.apns.tlsConfig), s.apns, nil),
		httpTask("sim-fcm", s.lns.fcm, s.fcm.handler(), nil),
		httpTask("sim-sms", s.lns.sms, s.sms.handler(), nil),
		httpTask("sim-webhook", s.lns.webhook, s.hook.handler(), nil),
		lifecycle.Task{Name: "sim-sms-callbacks", Run: s.sms.runCallbacks},
		lifecycle.Task{Name: "sim-smtp-events", Run: func(ctx context.Context) error {
			if s.smtp.events == nil {
				<-ctx.Done()
				return nil
			}
			return s.smtp.events.run(ctx)
		}},
		lifecycle.Task{Name: "sim-smtp", Run: func(ctx context.Context) error { return s.smtp.run(ctx, s.lns.smtp, drain) }},
	)
}

// Run prepares and serves the simulators until ctx ends: the `herald-dev sim` command.
func Run(ctx context.Context, cfg Config, log *slog.Logger, version string) error {
	s, err := New(cfg, log, version)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}
