package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/herald-notify/herald/platform/config"
)

// RateLimitConfig is a provider's token bucket, shared by every dispatcher process of the
// region through Redis: PerSecond tokens are added each second, up to Burst; each provider
// call takes one. PerSecond 0 (the default) means unlimited.
type RateLimitConfig struct {
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
}

// Enabled says whether the bucket limits anything.
func (c RateLimitConfig) Enabled() bool { return c.PerSecond > 0 }

// validate checks the block; keys are relative ("per_second"), callers prefix them.
func (c RateLimitConfig) validate() error {
	if c.PerSecond < 0 || c.PerSecond > 1e6 {
		return config.Errorf("per_second", fmt.Sprint(c.PerSecond), "must be 0 (unlimited) to 1000000")
	}
	if c.Burst < 0 || c.Burst > 1e6 {
		return config.Errorf("burst", strconv.Itoa(c.Burst), "must be 0-1000000")
	}
	if c.PerSecond > 0 && c.Burst < 1 {
		return config.Errorf("burst", strconv.Itoa(c.Burst), "must be at least 1 when per_second is set")
	}
	if c.PerSecond == 0 && c.Burst > 0 {
		return config.Errorf("burst", strconv.Itoa(c.Burst), "needs per_second (0 = unlimited)")
	}
	return nil
}

// tokenBucket refills KEYS[1] by the time elapsed on the Redis server's clock (so processes on
// different clocks agree) at ARGV[1] tokens/s up to ARGV[2], and takes one token. It returns 0
// when the token was taken, else the wait in ms until one is available. The state is a hash
// {tokens, ts (µs)}; it expires once the bucket would be full again (absent = full).
var tokenBucket = goredis.NewScript(`
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(h[1])
local ts = tonumber(h[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000000)
  ts = now
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
  if wait < 1 then wait = 1 end
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
`)

// Rate limiter tuning: one Redis call may take this long before the limiter fails open, and
// after a failure Redis is not asked again for this long (every call in between is unlimited).
const (
	rateLimitCallTimeout = 500 * time.Millisecond
	rateLimitCooldown    = time.Second
	rateLimitLogEvery    = 10 * time.Second
)

// RateLimiter is one provider's shared token bucket, keyed "<prefix>rl:<provider>".
// When Redis is unreachable it fails open: delivery goes on unlimited, logged and counted in
// herald_dispatch_ratelimit_unavailable_total.
type RateLimiter struct {
	rdb      *goredis.Client
	key      string
	rate     string
	burst    string
	region   string
	provider string
	log      *slog.Logger

	mu        sync.Mutex
	downUntil time.Time
	lastLog   time.Time
}

// NewRateLimiter returns the limiter of a provider, or nil (no limit) when rdb is nil or the
// config is unlimited. A nil *RateLimiter's Wait returns at once.
func NewRateLimiter(rdb *goredis.Client, prefix, region, provider string, c RateLimitConfig, log *slog.Logger) *RateLimiter {
	if rdb == nil || !c.Enabled() {
		return nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RateLimiter{rdb: rdb, key: prefix + "rl:" + provider, rate: strconv.FormatFloat(c.PerSecond, 'g', -1, 64),
		burst: strconv.Itoa(c.Burst), region: region, provider: provider, log: log}
}

// Key is the bucket's Redis key.
func (l *RateLimiter) Key() string { return l.key }

// Wait blocks until a token is taken, or ctx ends (its error is returned). A Redis failure does
// not block: Wait returns nil (fail open).
func (l *RateLimiter) Wait(ctx context.Context) error {
	if l == nil {
		return nil
	}
	start := time.Now()
	defer func() { rateLimitWait.WithLabelValues(l.region, l.provider).Observe(time.Since(start).Seconds()) }()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if l.down() {
			rateLimitUnavailable.WithLabelValues(l.region, l.provider).Inc()
			return nil
		}
		cctx, cancel := context.WithTimeout(ctx, rateLimitCallTimeout)
		wait, err := tokenBucket.Run(cctx, l.rdb, []string{l.key}, l.rate, l.burst).Int64()
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			l.failed(err)
			rateLimitUnavailable.WithLabelValues(l.region, l.provider).Inc()
			return nil
		}
		if wait <= 0 {
			return nil
		}
		tm := time.NewTimer(time.Duration(wait) * time.Millisecond)
		select {
		case <-ctx.Done():
			tm.Stop()
			return ctx.Err()
		case <-tm.C:
		}
	}
}

func (l *RateLimiter) down() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Now().Before(l.downUntil)
}

func (l *RateLimiter) failed(err error) {
	now := time.Now()
	l.mu.Lock()
	l.downUntil = now.Add(rateLimitCooldown)
	logIt := now.Sub(l.lastLog) >= rateLimitLogEvery
	if logIt {
		l.lastLog = now
	}
	l.mu.Unlock()
	if logIt {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("redis did not answer within %s: %w", rateLimitCallTimeout, err)
		}
		l.log.Warn("provider rate limit unavailable; sending without it", "provider", l.provider, "key", l.key, "err", err)
	}
}

// rateLimits maps each configured provider's name to its bucket.
func (c Config) rateLimits() map[string]RateLimitConfig {
	out := map[string]RateLimitConfig{}
	for i, a := 0, &c.Push.APNs; a != nil && a.Endpoint != ""; i, a = i+1, a.Secondary {
		out[providerName(a.Name, "apns", i > 0)] = a.RateLimit
	}
	for i, f := 0, &c.Push.FCM; f != nil && f.Endpoint != ""; i, f = i+1, f.Secondary {
		out[providerName(f.Name, "fcm", i > 0)] = f.RateLimit
	}
	for i, s := 0, &c.Email.SMTP; s != nil && s.Addr != ""; i, s = i+1, s.Secondary {
		out[providerName(s.Name, "smtp", i > 0)] = s.RateLimit
	}
	for i, s := 0, &c.SMS.Twilio; s != nil && s.BaseURL != ""; i, s = i+1, s.Secondary {
		out[providerName(s.Name, "twilio", i > 0)] = s.RateLimit
	}
	return out
}

// providerName is a provider's configured name, or its default ("apns", "apns-secondary").
func providerName(n, kind string, secondary bool) string {
	if n != "" {
		return n
	}
	if secondary {
		return kind + "-secondary"
	}
	return kind
}
