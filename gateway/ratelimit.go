package gateway

import (
	"context"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// limitScript is a per-key token bucket of ARGV[1] tokens in which each token comes back
// exactly one minute after it was spent (a sliding log: the set holds the spend times). So at
// most ARGV[1] requests pass in any 60 s, and the 1,001st request within a minute of a
// 1,000/min key is refused, which a continuously refilled bucket (up to twice the limit in the
// first minute) cannot promise. Time is the Redis server's, so every gateway agrees. It returns
// 0 when the request may pass, else the milliseconds until the oldest token comes back.
var limitScript = goredis.NewScript(`
local limit = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = 60000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[2])
  redis.call('PEXPIRE', KEYS[1], 61000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = math.ceil((tonumber(oldest[2]) + window - now) / 1000)
if wait < 1 then wait = 1 end
return wait
`)

// limiter applies the per-key limit. When Redis cannot answer it lets requests through (an
// outage of the limiter must not become an outage of the API), counted and logged.
type limiter struct {
	rdb    *goredis.Client
	prefix string

	mu        sync.Mutex
	downUntil time.Time
}

// allow takes one token of key's bucket; wait > 0 means refused until then.
func (l *limiter) allow(ctx context.Context, key string, perMinute int, reqID string) (wait time.Duration, err error) {
	l.mu.Lock()
	down := time.Now().Before(l.downUntil)
	l.mu.Unlock()
	if down {
		return 0, errLimiterDown
	}
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	ms, err := limitScript.Run(cctx, l.rdb, []string{l.prefix + "rl:" + key}, strconv.Itoa(perMinute), reqID).Int64()
	if err != nil {
		l.mu.Lock()
		l.downUntil = time.Now().Add(time.Second)
		l.mu.Unlock()
		return 0, err
	}
	return time.Duration(ms) * time.Millisecond, nil
}
