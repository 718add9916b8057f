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
	"github.com/herald-notify/herald/region/notify"
)

// RateLimitConfig is a provider's token bucket, shared by every dispatcher process of the
// region through Redis: PerSecond tokens are added each second, up to Burst; each provider
// call takes one. PerSecond 0 (the default) means unlimited.
//
// The tiers share the bucket, but not equally: marketing never takes it below Reserve tokens,
// social never below half of Reserve, transactional takes every token. A marketing backlog
// therefore leaves Reserve tokens for the transactional tier at all times, and the tokens that
// refill go to the transactional sends waiting before any marketing send can have one.
type RateLimitConfig struct {
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
	// Reserve is the tokens kept from marketing (and half of them from social) for the higher
	// tiers. 0: a quarter of the burst, at least 1 with a burst of 2 or more.
	Reserve int `yaml:"reserve"`
}

// reserve is the effective reserve.
func (c RateLimitConfig) reserve() int {
	if c.Reserve > 0 {
		return c.Reserve
	}
	if c.Burst < 2 {
		return 0
	}
	return max(1, c.Burst/4)
}

// floor is how many tokens a send of tier must leave in the bucket.
func (c RateLimitConfig) floor(tier string) int {
	switch tier {
	case notify.Transactional:
		return 0
	case notify.Social:
		return c.reserve() / 2
	}
	return c.reserve()
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
	if c.Reserve < 0 || (c.Reserve > 0 && c.Reserve >= c.Burst) {
		return config.Errorf("reserve", strconv.Itoa(c.Reserve), "must be 0 (a quarter of the burst) or less than the burst")
	}
	return nil
}

// tokenBucket takes the tokens of a round of requests for one provider's bucket and, for each
// request that names a sent key, first checks whether that send was already accepted, in one
// atomic script.
//
// KEYS[1] is the bucket; KEYS[2..] are sent keys. ARGV[1] is the rate (tokens/s), ARGV[2] the
// burst, and ARGV[3..] hold two entries per request: the index in KEYS of its sent key, or 0
// for none, and its floor (the tokens its tier must leave: 0 for transactional). The bucket is
// refilled by the time elapsed on the Redis server's clock (so processes on different clocks
// agree), up to the burst. The reply has one entry per request, in order: the stored provider
// message id (a string) when its send was already accepted, and no token is taken for it; else 0
// when a token was taken (only while more than its floor are left); else the wait in ms (at
// least 1) until a token above its floor should be free, counting the requests of the round
// with the same floor that wait before it. The state is a hash {tokens, ts (µs)}; it expires
// once the bucket would be full again (absent = full).
//
// A request waits again after a refusal; nothing is reserved, so the limit holds whatever the
// other processes do.
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
local out = {}
local waiting = {}
for i = 3, #ARGV, 2 do
  local k = tonumber(ARGV[i])
  local floor = tonumber(ARGV[i + 1])
  local id = false
  if k > 0 then
    id = redis.call('GET', KEYS[k])
  end
  if id then
    out[#out + 1] = id
  elseif tokens >= floor + 1 then
    tokens = tokens - 1
    out[#out + 1] = 0
  else
    local w = (waiting[floor] or 0) + 1
    waiting[floor] = w
    local wait = math.ceil((floor + w - tokens) * 1000 / rate)
    if wait < 1 then wait = 1 end
    out[#out + 1] = wait
  end
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return out
`)

// Rate limiter tuning: one Redis call may take this long before the limiter fails open, and
// after a failure Redis is not asked again for this long (every call in between is unlimited).
// One call serves at most rateLimitBatchMax requests.
const (
	rateLimitCallTimeout = 500 * time.Millisecond
	rateLimitCooldown    = time.Second
	rateLimitLogEvery    = 10 * time.Second
	rateLimitBatchMax    = 512
)

// RateLimiter is one provider's shared token bucket, keyed "<prefix>rl:<provider>".
// When Redis is unreachable it fails open: delivery goes on unlimited, logged and counted in
// herald_dispatch_ratelimit_unavailable_total.
//
// The requests of concurrent sends share one script call (a batcher round), so a busy
// dispatcher takes the tokens of many sends, and checks their sent keys, in one round trip.
type RateLimiter struct {
	rdb      *goredis.Client
	key      string
	rate     string
	burst    string
	region   string
	provider string
	log      *slog.Logger
	rounds   lanes[takeReq, takeResult]
	cfg      RateLimitConfig

	mu        sync.Mutex
	downUntil time.Time
	lastLog   time.Time
}

// takeReq is one request for a token: its send's sent key ("" for none) and the tokens its tier
// must leave in the bucket.
type takeReq struct {
	sentKey string
	floor   int
}

// takeResult is one request's answer from the bucket.
type takeResult struct {
	sentID string        // the message id of the earlier accepted send, when sent
	sent   bool          // the send was already accepted: no token was taken
	wait   time.Duration // 0: the token was taken; else try again after this long
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
	l := &RateLimiter{rdb: rdb, key: prefix + "rl:" + provider, rate: strconv.FormatFloat(c.PerSecond, 'g', -1, 64),
		burst: strconv.Itoa(c.Burst), region: region, provider: provider, log: log, cfg: c}
	l.rounds = newLanes(rateLimitBatchMax, rateLimitCallTimeout, l.round)
	return l
}

// Key is the bucket's Redis key.
func (l *RateLimiter) Key() string { return l.key }

// Wait blocks until a token is taken for a send of tier, or ctx ends (its error is returned). A
// Redis failure does not block: Wait returns nil (fail open).
func (l *RateLimiter) Wait(ctx context.Context, tier string) error {
	_, _, err := l.take(ctx, "", tier)
	return err
}

// take is Wait for one send of tier whose sent key (see sentKeys) is sentKey, or "" for none:
// when that send was already accepted by a provider, it returns the stored message id and sent
// = true without taking a token. A Redis failure reads as "not sent" and does not block (fail
// open). A transactional request goes in a round of the transactional tier's own (lanes).
func (l *RateLimiter) take(ctx context.Context, sentKey, tier string) (sentID string, sent bool, err error) {
	if l == nil {
		return "", false, nil
	}
	start := time.Now()
	defer func() { rateLimitWait.WithLabelValues(l.region, l.provider).Observe(time.Since(start).Seconds()) }()
	for {
		if err := ctx.Err(); err != nil {
			return "", false, err
		}
		if l.down() {
			rateLimitUnavailable.WithLabelValues(l.region, l.provider).Inc()
			return "", false, nil
		}
		r, err := l.rounds.do(ctx, takeReq{sentKey: sentKey, floor: l.cfg.floor(tier)}, tier == notify.Transactional)
		if err != nil {
			if ctx.Err() != nil {
				return "", false, ctx.Err()
			}
			l.failed(err)
			rateLimitUnavailable.WithLabelValues(l.region, l.provider).Inc()
			return "", false, nil
		}
		if r.sent {
			return r.sentID, true, nil
		}
		if r.wait <= 0 {
			return "", false, nil
		}
		tm := time.NewTimer(r.wait)
		select {
		case <-ctx.Done():
			tm.Stop()
			return "", false, ctx.Err()
		case <-tm.C:
		}
	}
}

// round runs the bucket script once for a round of requests.
func (l *RateLimiter) round(ctx context.Context, reqs []takeReq) ([]takeResult, error) {
	keys := make([]string, 1, len(reqs)+1)
	keys[0] = l.key
	args := make([]any, 2, 2*len(reqs)+2)
	args[0], args[1] = l.rate, l.burst
	for _, r := range reqs {
		if r.sentKey == "" {
			args = append(args, 0, r.floor)
			continue
		}
		keys = append(keys, r.sentKey)
		args = append(args, len(keys), r.floor)
	}
	reply, err := tokenBucket.Run(ctx, l.rdb, keys, args...).Slice()
	if err != nil {
		return nil, err
	}
	if len(reply) != len(reqs) {
		return nil, fmt.Errorf("rate-limit script answered %d results for %d requests", len(reply), len(reqs))
	}
	out := make([]takeResult, len(reply))
	for i, v := range reply {
		switch v := v.(type) {
		case string:
			out[i] = takeResult{sentID: v, sent: true}
		case int64:
			out[i] = takeResult{wait: time.Duration(v) * time.Millisecond}
		default:
			return nil, fmt.Errorf("rate-limit script answered %T", v)
		}
	}
	return out, nil
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
