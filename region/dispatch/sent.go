package dispatch

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Batching of the sent keys' Redis calls: at most this many keys per round trip, and a round
// may take this long.
const (
	sentBatchMax     = 512
	sentRoundTimeout = 2 * time.Second
)

// sentKeys remember, for a day, each send a provider accepted (notification, user, channel,
// target), so that a task consumed again after a crash skips what already went out. The mark is
// written right after the provider's answer, and the task's offset is marked only after it: the
// window in which a crash causes a repeat is the sends in flight at that moment plus the marks
// in the round under way.
//
// Concurrent tasks share round trips: the checks of a round are one MGET, its marks one
// pipeline. When the provider has a rate limit, the check is part of its token script instead
// (RateLimiter.take), so a send costs one Redis call before and one after.
type sentKeys struct {
	rdb    *goredis.Client
	prefix string
	ttl    time.Duration
	checks lanes[string, sentID]
	marks  *batcher[sentMark, struct{}]

	// inFlight holds the keys being sent in this process, each with a channel closed once its
	// send is over and, when it was accepted, its mark is in Redis (hold).
	mu       sync.Mutex
	inFlight map[string]chan struct{}
}

// sentID is what a check found: the provider message id of an accepted send, if any.
type sentID struct {
	id string
	ok bool
}

type sentMark struct{ key, messageID string }

func newSentKeys(rdb *goredis.Client, prefix string) *sentKeys {
	if rdb == nil {
		return nil
	}
	s := &sentKeys{rdb: rdb, prefix: prefix + "sent:", ttl: 24 * time.Hour, inFlight: map[string]chan struct{}{}}
	s.checks = newLanes(sentBatchMax, sentRoundTimeout, s.checkRound)
	s.marks = newBatcher(sentBatchMax, sentRoundTimeout, s.markRound)
	return s
}

func (s *sentKeys) key(notificationID, user, channel, to string) string {
	h := sha256.New()
	for _, part := range []string{notificationID, user, channel, to} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return s.prefix + base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16])
}

// sent returns the provider message id of an earlier accepted send, if any. Redis errors read
// as "not sent": at-least-once beats silence. An urgent check (a transactional send's) goes in a
// round of its lane (lanes).
func (s *sentKeys) sent(ctx context.Context, key string, urgent bool) (string, bool) {
	if s == nil {
		return "", false
	}
	r, err := s.checks.do(ctx, key, urgent)
	if err != nil {
		return "", false
	}
	return r.id, r.ok
}

// mark records an accepted send and returns at once; the returned wait returns once Redis has
// the mark (or failed to take it: a lost mark can only repeat a send). The mark does not end
// with ctx: the send happened and should be remembered.
func (s *sentKeys) mark(ctx context.Context, key, messageID string) (wait func()) {
	if s == nil {
		return func() {}
	}
	ctx = context.WithoutCancel(ctx)
	c := s.marks.submit(ctx, sentMark{key: key, messageID: messageID})
	return func() { _, _ = c.wait(ctx) }
}

// hold makes the sends of one key take turns in this process: the check, the send and the mark
// of one finish before the next send of that key checks. Two copies of a task in one window
// (a task written twice while a broker failed over, a retry level and its origin) would
// otherwise both pass the check before either was marked, and the provider would get both
// (seen: 5 % of a broker kill's sends repeated milliseconds apart). Copies of a task share its
// key and so its partition, so they meet in the process that owns the partition. waiting is
// called when the send has to wait for another of its key (herald_dispatch_sends_held_total);
// release must be called once the send is over, after its mark's wait when it was accepted.
func (s *sentKeys) hold(ctx context.Context, key string, waiting func()) (release func(), err error) {
	if s == nil || key == "" {
		return func() {}, nil
	}
	waited := false
	for {
		s.mu.Lock()
		busy, ok := s.inFlight[key]
		if !ok {
			done := make(chan struct{})
			s.inFlight[key] = done
			s.mu.Unlock()
			var once sync.Once
			return func() {
				once.Do(func() {
					s.mu.Lock()
					delete(s.inFlight, key)
					s.mu.Unlock()
					close(done)
				})
			}, nil
		}
		s.mu.Unlock()
		if !waited {
			waited = true
			waiting()
		}
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (s *sentKeys) checkRound(ctx context.Context, keys []string) ([]sentID, error) {
	vals, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]sentID, len(vals))
	for i, v := range vals {
		if id, ok := v.(string); ok {
			out[i] = sentID{id: id, ok: true}
		}
	}
	return out, nil
}

func (s *sentKeys) markRound(ctx context.Context, marks []sentMark) ([]struct{}, error) {
	cmds, err := s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, m := range marks {
			p.SetNX(ctx, m.key, m.messageID, s.ttl)
		}
		return nil
	})
	if err != nil {
		// SET NX answers nil when the key exists: not a failure.
		for _, c := range cmds {
			if e := c.Err(); e != nil && !errors.Is(e, goredis.Nil) {
				return nil, e
			}
		}
	}
	return make([]struct{}, len(marks)), nil
}
