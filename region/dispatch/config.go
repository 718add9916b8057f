package dispatch

import (
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/deadletter"
	"github.com/herald-notify/herald/region/notify"
)

// Config is the dispatch role's block. A provider is configured when its endpoint (APNs, FCM,
// Twilio) or address (SMTP) is set; a channel with no provider configured is not consumed.
type Config struct {
	Push  PushConfig  `yaml:"push"`
	Email EmailConfig `yaml:"email"`
	SMS   SMSConfig   `yaml:"sms"`
	// Breaker applies to every provider; each provider has its own breaker.
	Breaker BreakerConfig `yaml:"breaker"`
	Retry   RetryConfig   `yaml:"retry"`
	// SendTimeout bounds one provider call (including the client library's own retries).
	SendTimeout time.Duration `yaml:"send_timeout"`
	// Tiers sizes the pool of each tier and channel: every tier x channel has its own dispatch
	// topic, consumer group and in-flight window, so one tier's backlog never takes another's.
	Tiers TiersConfig `yaml:"tiers"`
	// FailureRetry bounds the retries of recording a task's outcome (the delivery log, Kafka)
	// while a store fails transiently; past it, and at once for a task that can never be
	// handled, the record goes to "<region>.dlq.dispatch.<channel>". Provider failures follow
	// Retry instead.
	FailureRetry deadletter.Policy `yaml:"failure_retry"`
	// Suppression is when soft bounces put an address on the suppression list.
	Suppression SuppressionConfig `yaml:"suppression"`
	// AppCredentials is how apps' own provider credentials (PUT .../credentials/{kind},
	// region/credentials) are used.
	AppCredentials AppCredentialsConfig `yaml:"app_credentials"`
}

// AppCredentialsConfig: an app that stored its own credential of a provider kind has its sends
// of that kind made with it, through the region's provider of the kind (its endpoint, CA,
// timeouts and retry schedule), behind a breaker of its own; the region's own account is never
// used for that app's sends of the kind, nor the app's for another app's.
type AppCredentialsConfig struct {
	// Refresh is how long a dispatcher sends with a credential it read before reading it again:
	// a rotation or a delete takes effect within it.
	Refresh time.Duration `yaml:"refresh"`
	// Required lists the kinds (apns, fcm, smtp, twilio) an app must have its own credential
	// of: its sends of a kind it has none of fail (failed: no_credentials) rather than go
	// through the region's account.
	Required []string `yaml:"required"`
	// FCMTokenURIs are the OAuth token endpoints an app's service account may name (its
	// token_uri), which the region calls with the account's signed assertion. Default:
	// Google's, https://oauth2.googleapis.com/token.
	FCMTokenURIs []string `yaml:"fcm_token_uris"`
	// MaxCached bounds the apps' clients a dispatcher keeps (an APNs client holds an HTTP/2
	// connection); the least recently used beyond it are dropped.
	MaxCached int `yaml:"max_cached"`
}

// GoogleTokenURI is the token endpoint of Google's service accounts.
const GoogleTokenURI = "https://oauth2.googleapis.com/token"

func (a AppCredentialsConfig) validate() error {
	if a.Refresh < 100*time.Millisecond || a.Refresh > time.Hour {
		return config.Errorf("refresh", a.Refresh.String(), "must be 100ms to 1h")
	}
	for i, k := range a.Required {
		if !wire.ValidCredentialKind(k) || slices.Contains(a.Required[:i], k) {
			return config.Errorf(fmt.Sprintf("required[%d]", i), k, "must be one of %s, each listed once", strings.Join(wire.CredentialKinds, ", "))
		}
	}
	if len(a.FCMTokenURIs) == 0 {
		return config.Errorf("fcm_token_uris", "", "must list at least one token endpoint (Google's: %s)", GoogleTokenURI)
	}
	for i, u := range a.FCMTokenURIs {
		if err := checkURL(fmt.Sprintf("fcm_token_uris[%d]", i), u); err != nil {
			return err
		}
	}
	if a.MaxCached < 1 || a.MaxCached > 1_000_000 {
		return config.Errorf("max_cached", fmt.Sprint(a.MaxCached), "must be 1-1000000")
	}
	return nil
}

// Check is the region's own rule for a credential an app stores, beyond its shape
// (wire.Credential.Validate): a service account's token endpoint must be one the region calls.
func (a AppCredentialsConfig) Check(c wire.Credential) *wire.Error {
	if c.Kind == wire.CredentialFCM && c.FCM != nil && !slices.Contains(a.FCMTokenURIs, c.FCM.ServiceAccount.TokenURI) {
		return &wire.Error{Code: wire.CodeInvalidField, Field: "service_account.token_uri",
			Message: "this region calls only these token endpoints: " + strings.Join(a.FCMTokenURIs, ", ")}
	}
	return nil
}

// SuppressionConfig: an address is suppressed as bounced once SoftBounceLimit different
// notifications soft-bounced on it (a full mailbox) within SoftBounceWindow of the first.
// Hard bounces suppress at once.
type SuppressionConfig struct {
	SoftBounceLimit  int           `yaml:"soft_bounce_limit"`
	SoftBounceWindow time.Duration `yaml:"soft_bounce_window"`
}

// TiersConfig is the pools of each tier.
type TiersConfig struct {
	Transactional TierConfig `yaml:"transactional"`
	Social        TierConfig `yaml:"social"`
	Marketing     TierConfig `yaml:"marketing"`
}

// TierConfig is one tier's pool per channel.
type TierConfig struct {
	Push  PoolConfig `yaml:"push"`
	Email PoolConfig `yaml:"email"`
	SMS   PoolConfig `yaml:"sms"`
}

// PoolConfig is one tier x channel's pool.
type PoolConfig struct {
	// Concurrency caps the tier's tasks of the channel handled at once per partition this
	// process consumes (and the same again per retry level): a process holding 4 partitions of
	// the topic has up to 4 x Concurrency tasks of the tier in flight. The pools are separate:
	// a full marketing window never holds back a transactional task.
	Concurrency int `yaml:"concurrency"`
}

// Tier returns the pools of tier (marketing's for a tier Herald does not know).
func (t TiersConfig) Tier(tier string) TierConfig {
	switch tier {
	case notify.Transactional:
		return t.Transactional
	case notify.Social:
		return t.Social
	}
	return t.Marketing
}

// Pool returns the tier's pool of channel.
func (t TierConfig) Pool(channel string) PoolConfig {
	switch channel {
	case notify.Push:
		return t.Push
	case notify.Email:
		return t.Email
	}
	return t.SMS
}

// PushConfig is the push channel: APNs for iOS devices, FCM for Android and web.
type PushConfig struct {
	APNs APNsConfig `yaml:"apns"`
	FCM  FCMConfig  `yaml:"fcm"`
}

// EmailConfig is the email channel.
type EmailConfig struct {
	SMTP SMTPConfig `yaml:"smtp"`
}

// SMSConfig is the SMS channel.
type SMSConfig struct {
	Twilio TwilioConfig `yaml:"twilio"`
}

// APNsConfig is one APNs provider with token (.p8) authentication.
type APNsConfig struct {
	// Name labels the provider in attempts, metrics and logs (default "apns", "apns-secondary").
	Name string `yaml:"name"`
	// Endpoint is the APNs host: https://api.push.apple.com, or the simulator.
	Endpoint string `yaml:"endpoint" env:"HERALD_DISPATCH_APNS_ENDPOINT"`
	TeamID   string `yaml:"team_id" env:"HERALD_DISPATCH_APNS_TEAM_ID"`
	KeyID    string `yaml:"key_id" env:"HERALD_DISPATCH_APNS_KEY_ID"`
	// KeyFile is the .p8 signing key.
	KeyFile string `yaml:"key_file" env:"HERALD_DISPATCH_APNS_KEY_FILE"`
	// Topic is the app's bundle id (apns-topic).
	Topic string `yaml:"topic" env:"HERALD_DISPATCH_APNS_TOPIC"`
	// CAFile, when set, is the only CA trusted for the endpoint (the simulator's local CA).
	CAFile string `yaml:"ca_file" env:"HERALD_DISPATCH_APNS_CA_FILE"`
	// RateLimit is this provider's token bucket, shared by the region's dispatchers
	// through Redis (unlimited by default).
	RateLimit RateLimitConfig `yaml:"rate_limit"`
	Secondary *APNsConfig     `yaml:"secondary"`
}

// FCMConfig is one FCM HTTP v1 provider with a service-account credential.
type FCMConfig struct {
	Name string `yaml:"name"`
	// Endpoint replaces https://fcm.googleapis.com/v1 (the simulator's /v1 base).
	Endpoint string `yaml:"endpoint" env:"HERALD_DISPATCH_FCM_ENDPOINT"`
	// CredentialsFile is the service-account JSON; the project is read from it.
	CredentialsFile string `yaml:"credentials_file" env:"HERALD_DISPATCH_FCM_CREDENTIALS_FILE"`
	// RateLimit is this provider's token bucket, shared by the region's dispatchers
	// through Redis (unlimited by default).
	RateLimit RateLimitConfig `yaml:"rate_limit"`
	Secondary *FCMConfig      `yaml:"secondary"`
}

// SMTPConfig is one SMTP relay reached with STARTTLS and AUTH PLAIN.
type SMTPConfig struct {
	Name     string `yaml:"name"`
	Addr     string `yaml:"addr" env:"HERALD_DISPATCH_SMTP_ADDR"`
	Username string `yaml:"username" env:"HERALD_DISPATCH_SMTP_USERNAME"`
	Password string `yaml:"password" env:"HERALD_DISPATCH_SMTP_PASSWORD"`
	// From is the sender address (envelope and header).
	From string `yaml:"from" env:"HERALD_DISPATCH_SMTP_FROM"`
	// CAFile, when set, is the only CA trusted for STARTTLS.
	CAFile string `yaml:"ca_file" env:"HERALD_DISPATCH_SMTP_CA_FILE"`
	// UnsubscribeMailto, when set, is a mailbox that List-Unsubscribe names beside the
	// one-click link (mailto:<it>?subject=unsubscribe%20<token>): whoever reads it posts the
	// subject's token to POST /v1/unsubscribe/{token}. Herald receives no mail itself.
	UnsubscribeMailto string `yaml:"unsubscribe_mailto"`
	// DKIM signs every message (RFC 6376), as Gmail and Yahoo require of bulk senders.
	DKIM DKIMConfig `yaml:"dkim"`
	// Events names the relay's delivery event feed: "sendgrid" (SendGrid's SMTP relay, its
	// signed Event Webhook pointed at the gateway's /v1/receipts/sendgrid) gives each message
	// an X-SMTPAPI header whose unique_args carry a sealed receipt token, and the email stays
	// dispatched until its delivered (or bounce) event. Empty: none; an email counts as
	// delivered once the relay took it.
	Events string `yaml:"events" env:"HERALD_DISPATCH_SMTP_EVENTS"`
	// RateLimit is this provider's token bucket, shared by the region's dispatchers
	// through Redis (unlimited by default).
	RateLimit RateLimitConfig `yaml:"rate_limit"`
	Secondary *SMTPConfig     `yaml:"secondary"`
}

// TwilioConfig is one Twilio-compatible SMS provider.
type TwilioConfig struct {
	Name string `yaml:"name"`
	// BaseURL is https://api.twilio.com or the simulator.
	BaseURL    string `yaml:"base_url" env:"HERALD_DISPATCH_TWILIO_BASE_URL"`
	AccountSID string `yaml:"account_sid" env:"HERALD_DISPATCH_TWILIO_ACCOUNT_SID"`
	AuthToken  string `yaml:"auth_token" env:"HERALD_DISPATCH_TWILIO_AUTH_TOKEN"`
	From       string `yaml:"from" env:"HERALD_DISPATCH_TWILIO_FROM"`
	// RateLimit is this provider's token bucket, shared by the region's dispatchers
	// through Redis (unlimited by default).
	RateLimit RateLimitConfig `yaml:"rate_limit"`
	Secondary *TwilioConfig   `yaml:"secondary"`
}

// BreakerConfig sizes the circuit breaker of each provider.
type BreakerConfig struct {
	// ConsecutiveFailures opens the breaker after this many provider failures in a row.
	ConsecutiveFailures uint32 `yaml:"consecutive_failures"`
	// FailureRatio opens it when this share of the calls in Window failed, once at least
	// MinRequests were made (0 turns the ratio rule off).
	FailureRatio float64       `yaml:"failure_ratio"`
	MinRequests  uint32        `yaml:"min_requests"`
	Window       time.Duration `yaml:"window"`
	// OpenFor is how long the breaker stays open before half-opening.
	OpenFor time.Duration `yaml:"open_for"`
	// HalfOpenProbes is how many calls may probe a half-open provider.
	HalfOpenProbes uint32 `yaml:"half_open_probes"`
}

// RetryConfig is the retry schedule of transient failures.
type RetryConfig struct {
	// Delays are the base delays of the first retries; retry k waits Delays[k-1] (the last
	// delay doubled for each retry past the list), plus up to Jitter of it, and never less
	// than the provider's Retry-After. Retry k goes through retry topic level min(k, len(Delays)).
	Delays []time.Duration `yaml:"delays"`
	// MaxDelay caps one delay.
	MaxDelay time.Duration `yaml:"max_delay"`
	// Jitter is the share (0..1) of a delay added at random, so retries spread out.
	Jitter float64 `yaml:"jitter"`
	// MaxAttempts counts the first attempt: after it the task is dead-lettered.
	MaxAttempts int `yaml:"max_attempts"`
}

// RetryLevels is the number of retry topics per tier and channel; Retry.Delays has at most this many.
const RetryLevels = 3

// DefaultConfig returns the defaults, with no provider configured.
func DefaultConfig() Config {
	return Config{
		// Transactional has pools of its own that no other tier uses; marketing, which drains
		// the large backlogs, has the largest push window (the push throughput is the same from
		// 64 to 1024 per partition on a 2-core machine, docs/benchmarks.md).
		Tiers: TiersConfig{
			Transactional: TierConfig{Push: PoolConfig{128}, Email: PoolConfig{8}, SMS: PoolConfig{16}},
			Social:        TierConfig{Push: PoolConfig{128}, Email: PoolConfig{8}, SMS: PoolConfig{16}},
			Marketing:     TierConfig{Push: PoolConfig{256}, Email: PoolConfig{8}, SMS: PoolConfig{16}},
		},
		Breaker: BreakerConfig{ConsecutiveFailures: 5, FailureRatio: 0.5, MinRequests: 20, Window: 30 * time.Second,
			OpenFor: 10 * time.Second, HalfOpenProbes: 1},
		Retry:          RetryConfig{Delays: []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute}, MaxDelay: 10 * time.Minute, Jitter: 0.2, MaxAttempts: 6},
		SendTimeout:    15 * time.Second,
		Suppression:    SuppressionConfig{SoftBounceLimit: 3, SoftBounceWindow: 30 * 24 * time.Hour},
		AppCredentials: AppCredentialsConfig{Refresh: 10 * time.Second, FCMTokenURIs: []string{GoogleTokenURI}, MaxCached: 10_000},
	}
}

// Validate checks the block; keys are relative ("push.apns.team_id"), callers prefix them.
func (c Config) Validate() error {
	if err := c.FailureRetry.Validate(); err != nil {
		return config.Prefix("failure_retry", err)
	}
	if err := c.AppCredentials.validate(); err != nil {
		return config.Prefix("app_credentials", err)
	}
	if n := c.Suppression.SoftBounceLimit; n < 1 || n > 100 {
		return config.Errorf("suppression.soft_bounce_limit", fmt.Sprint(n), "must be 1-100")
	}
	if w := c.Suppression.SoftBounceWindow; w < time.Hour || w > 365*24*time.Hour {
		return config.Errorf("suppression.soft_bounce_window", w.String(), "must be 1h to 8760h")
	}
	for _, tier := range notify.Tiers {
		for _, ch := range Channels {
			if n := c.Tiers.Tier(tier).Pool(ch).Concurrency; n < 1 || n > 4096 {
				return config.Errorf("tiers."+tier+"."+ch+".concurrency", fmt.Sprint(n), "must be 1-4096")
			}
		}
	}
	for i, a := 0, &c.Push.APNs; a != nil; i, a = i+1, a.Secondary {
		if err := config.Prefix("push.apns"+secondaryKey(i), a.validate(i)); err != nil {
			return err
		}
	}
	for i, f := 0, &c.Push.FCM; f != nil; i, f = i+1, f.Secondary {
		if err := config.Prefix("push.fcm"+secondaryKey(i), f.validate(i)); err != nil {
			return err
		}
	}
	for i, s := 0, &c.Email.SMTP; s != nil; i, s = i+1, s.Secondary {
		if err := config.Prefix("email.smtp"+secondaryKey(i), s.validate(i)); err != nil {
			return err
		}
	}
	for i, s := 0, &c.SMS.Twilio; s != nil; i, s = i+1, s.Secondary {
		if err := config.Prefix("sms.twilio"+secondaryKey(i), s.validate(i)); err != nil {
			return err
		}
	}
	b := c.Breaker
	if b.ConsecutiveFailures < 1 {
		return config.Errorf("breaker.consecutive_failures", fmt.Sprint(b.ConsecutiveFailures), "must be at least 1")
	}
	if b.FailureRatio < 0 || b.FailureRatio > 1 {
		return config.Errorf("breaker.failure_ratio", fmt.Sprint(b.FailureRatio), "must be between 0 and 1")
	}
	if b.Window <= 0 {
		return config.Errorf("breaker.window", b.Window.String(), "must be positive")
	}
	if b.OpenFor <= 0 {
		return config.Errorf("breaker.open_for", b.OpenFor.String(), "must be positive")
	}
	if b.HalfOpenProbes < 1 {
		return config.Errorf("breaker.half_open_probes", fmt.Sprint(b.HalfOpenProbes), "must be at least 1")
	}
	r := c.Retry
	if len(r.Delays) < 1 || len(r.Delays) > RetryLevels {
		return config.Errorf("retry.delays", fmt.Sprint(r.Delays), "must list 1-%d delays (one retry topic each)", RetryLevels)
	}
	for i, d := range r.Delays {
		if d <= 0 {
			return config.Errorf(fmt.Sprintf("retry.delays[%d]", i), d.String(), "must be positive")
		}
	}
	if r.MaxDelay < r.Delays[len(r.Delays)-1] {
		return config.Errorf("retry.max_delay", r.MaxDelay.String(), "must be at least the last delay")
	}
	if r.Jitter < 0 || r.Jitter > 1 {
		return config.Errorf("retry.jitter", fmt.Sprint(r.Jitter), "must be between 0 and 1")
	}
	if r.MaxAttempts < 1 || r.MaxAttempts > 100 {
		return config.Errorf("retry.max_attempts", fmt.Sprint(r.MaxAttempts), "must be 1-100")
	}
	if c.SendTimeout <= 0 {
		return config.Errorf("send_timeout", c.SendTimeout.String(), "must be positive")
	}
	return nil
}

// providerNameRE bounds a provider's name: it labels metrics and logs, and rides in every
// receipt token (an email's X-SMTPAPI header must stay on one 998-character line).
var providerNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{0,64}$`)

func validProviderName(name string) error {
	if !providerNameRE.MatchString(name) {
		return config.Errorf("name", name, "must be at most 64 letters, digits, '_', '.' or '-' (empty: the default)")
	}
	if strings.HasPrefix(name, appProviderPrefix) {
		return config.Errorf("name", name, "must not start with %q (the names of apps' own accounts)", appProviderPrefix)
	}
	return nil
}

func secondaryKey(depth int) string {
	if depth == 0 {
		return ""
	}
	if depth > 1 {
		return ".secondary.secondary"
	}
	return ".secondary"
}

func checkURL(key, v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return config.Errorf(key, v, "must be an http(s) URL")
	}
	return nil
}

func depthErr(depth int) error {
	if depth > 1 {
		return config.Errorf("secondary", "", "a secondary provider cannot have its own secondary")
	}
	return nil
}

func (a *APNsConfig) validate(depth int) error {
	if err := depthErr(depth); err != nil {
		return err
	}
	if err := validProviderName(a.Name); err != nil {
		return err
	}
	if err := config.Prefix("rate_limit", a.RateLimit.validate()); err != nil {
		return err
	}
	if a.Endpoint == "" {
		if depth > 0 {
			return config.Required("endpoint", a.Endpoint)
		}
		return nil // APNs not configured
	}
	if err := checkURL("endpoint", a.Endpoint); err != nil {
		return err
	}
	for _, r := range []struct{ k, v string }{{"team_id", a.TeamID}, {"key_id", a.KeyID}, {"key_file", a.KeyFile}, {"topic", a.Topic}} {
		if err := config.Required(r.k, r.v); err != nil {
			return err
		}
	}
	return nil
}

func (f *FCMConfig) validate(depth int) error {
	if err := depthErr(depth); err != nil {
		return err
	}
	if err := validProviderName(f.Name); err != nil {
		return err
	}
	if err := config.Prefix("rate_limit", f.RateLimit.validate()); err != nil {
		return err
	}
	if f.Endpoint == "" {
		if depth > 0 {
			return config.Required("endpoint", f.Endpoint)
		}
		return nil
	}
	if err := checkURL("endpoint", f.Endpoint); err != nil {
		return err
	}
	return config.Required("credentials_file", f.CredentialsFile)
}

func (s *SMTPConfig) validate(depth int) error {
	if err := depthErr(depth); err != nil {
		return err
	}
	if err := validProviderName(s.Name); err != nil {
		return err
	}
	if err := config.Prefix("rate_limit", s.RateLimit.validate()); err != nil {
		return err
	}
	if s.Addr == "" {
		if depth > 0 {
			return config.Required("addr", s.Addr)
		}
		return nil
	}
	if err := config.HostPort("addr", s.Addr); err != nil {
		return err
	}
	if err := config.Required("from", s.From); err != nil {
		return err
	}
	if s.Events != "" && s.Events != EventsSendGrid {
		return config.Errorf("events", s.Events, `must be "sendgrid" or empty`)
	}
	return config.Prefix("dkim", s.DKIM.validate(s.From))
}

// EventsSendGrid is SMTPConfig.Events for SendGrid's Event Webhook.
const EventsSendGrid = "sendgrid"

// DKIMConfig is the DKIM signature of outgoing mail: the signing domain (d=, aligned with the
// From address's domain, as DMARC checks), the selector (s=, the DNS record
// <selector>._domainkey.<domain> holds the public key) and the private key (PEM, PKCS#8 or
// PKCS#1 RSA, or Ed25519; read at start, which fails naming dkim.key_file when it cannot be
// used). Empty: mail goes unsigned.
type DKIMConfig struct {
	Domain   string `yaml:"domain" env:"HERALD_DISPATCH_SMTP_DKIM_DOMAIN"`
	Selector string `yaml:"selector" env:"HERALD_DISPATCH_SMTP_DKIM_SELECTOR"`
	KeyFile  string `yaml:"key_file" env:"HERALD_DISPATCH_SMTP_DKIM_KEY_FILE"`
}

func (d DKIMConfig) validate(from string) error {
	if d == (DKIMConfig{}) {
		return nil
	}
	if d.Domain == "" {
		return config.Required("domain", d.Domain)
	}
	if d.Selector == "" || !dkimLabel.MatchString(d.Selector) {
		return config.Errorf("selector", d.Selector, "must be a DNS label")
	}
	if d.KeyFile == "" {
		return config.Required("key_file", d.KeyFile)
	}
	addr, err := mail.ParseAddress(from)
	if err != nil {
		return config.Errorf("domain", d.Domain, "the from address does not parse: %v", err)
	}
	_, fromDomain, _ := strings.Cut(strings.ToLower(addr.Address), "@")
	domain := strings.ToLower(d.Domain)
	if fromDomain != domain && !strings.HasSuffix(fromDomain, "."+domain) {
		return config.Errorf("domain", d.Domain, "is not aligned with the from address's domain %s (DMARC would fail)", fromDomain)
	}
	// The key itself is read when the dispatcher starts (newDKIMSigner), like the providers'
	// credentials: the simulators of the local stack make theirs after migrations ran.
	return nil
}

var dkimLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

func (s *TwilioConfig) validate(depth int) error {
	if err := depthErr(depth); err != nil {
		return err
	}
	if err := validProviderName(s.Name); err != nil {
		return err
	}
	if err := config.Prefix("rate_limit", s.RateLimit.validate()); err != nil {
		return err
	}
	if s.BaseURL == "" {
		if depth > 0 {
			return config.Required("base_url", s.BaseURL)
		}
		return nil
	}
	if err := checkURL("base_url", s.BaseURL); err != nil {
		return err
	}
	for _, r := range []struct{ k, v string }{{"account_sid", s.AccountSID}, {"auth_token", s.AuthToken}, {"from", s.From}} {
		if err := config.Required(r.k, r.v); err != nil {
			return err
		}
	}
	return nil
}
