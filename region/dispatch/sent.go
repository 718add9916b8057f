package dispatch

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// sentKeys remember, for a day, each send a provider accepted (notification, user, channel,
// target), so that a task consumed again after a crash skips what already went out. The mark is
// written right after the provider's answer: the window in which a crash causes a repeat is
// one Redis round trip, plus the sends in flight at that moment.
type sentKeys struct {
	rdb    *goredis.Client
	prefix string
	ttl    time.Duration
}

func newSentKeys(rdb *goredis.Client, prefix string) *sentKeys {
	if rdb == nil {
		return nil
	}
	return &sentKeys{rdb: rdb, prefix: prefix + "sent:", ttl: 24 * time.Hour}
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
// as "not sent": at-least-once beats silence.
func (s *sentKeys) sent(ctx context.Context, key string) (string, bool) {
	if s == nil {
		return "", false
	}
	v, err := s.rdb.Get(ctx, key).Result()
	if err != nil {
		return "", false
	}
	return v, true
}

func (s *sentKeys) mark(ctx context.Context, key, messageID string) {
	if s == nil {
		return
	}
	_ = s.rdb.SetNX(context.WithoutCancel(ctx), key, messageID, s.ttl).Err() // a lost mark can only repeat a send
}
