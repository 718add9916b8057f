package inbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Newer returns up to limit items of the user's own partitions newer than cur, oldest first:
// what a stream that reconnects with Last-Event-ID missed.
func (in *Inbox) Newer(ctx context.Context, appID, userID string, cur Cursor, now time.Time, limit int) ([]Item, error) {
	var out []Item
	from := time.Date(cur.At.UTC().Year(), cur.At.UTC().Month(), 1, 0, 0, 0, 0, time.UTC)
	for m := from; !m.After(now.UTC()); m = m.AddDate(0, 1, 0) {
		iter := in.s.Query(`SELECT created_at, notification_id, tier, category, title, body, link, metadata, read_at FROM notification_log
			WHERE app_id = ? AND user_id = ? AND bucket = ? AND (created_at, notification_id) > (?, ?) LIMIT ?`,
			appID, userID, Bucket(m), cur.At, cur.ID, limit).WithContext(ctx).Iter()
		var it Item
		for scanOwn(iter, &it) {
			it.AppID, it.UserID = appID, userID
			out = append(out, it)
			it = Item{}
		}
		if err := iter.Close(); err != nil {
			return nil, fmt.Errorf("reading inbox of %s: %w", userID, err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return before(out[j], out[i]) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Publisher announces new inbox items on Redis, one channel per user, for live streams.
type Publisher struct {
	rdb    *goredis.Client
	prefix string
}

// NewPublisher returns a Publisher under the region's Redis prefix.
func NewPublisher(rdb *goredis.Client, prefix string) *Publisher {
	return &Publisher{rdb: rdb, prefix: prefix}
}

func channelOf(prefix, app, user string) string { return prefix + "inbox:" + app + ":" + user }

// Publish announces items, pipelined. A failure only delays live delivery: the items are in
// Cassandra, and a stream that reconnects catches up from there.
func (p *Publisher) Publish(ctx context.Context, items []Item) error {
	if len(items) == 0 {
		return nil
	}
	_, err := p.rdb.Pipelined(ctx, func(pipe goredis.Pipeliner) error {
		for _, it := range items {
			raw, err := json.Marshal(it)
			if err != nil {
				return err
			}
			pipe.Publish(ctx, channelOf(p.prefix, it.AppID, it.UserID), raw)
		}
		return nil
	})
	return err
}

// Hub fans the inbox channels of this process's open streams out to them over one Redis
// connection: a stream costs a map entry and a small buffered channel, not a connection.
type Hub struct {
	rdb    *goredis.Client
	prefix string
	log    *slog.Logger

	mu        sync.Mutex
	ps        *goredis.PubSub
	listeners map[string]map[chan Item]struct{}
	stopped   bool
}

// ErrStopped means the process is shutting down and takes no new streams.
var ErrStopped = errors.New("inbox streams are shutting down")

// NewHub returns a Hub; Run must be running for streams to receive.
func NewHub(rdb *goredis.Client, prefix string, log *slog.Logger) *Hub {
	return &Hub{rdb: rdb, prefix: prefix, log: log, listeners: map[string]map[chan Item]struct{}{}}
}

// Subscribe registers a stream for the user's items until the returned cancel is called.
func (h *Hub) Subscribe(ctx context.Context, app, user string) (<-chan Item, func(), error) {
	ch := make(chan Item, 16)
	name := channelOf(h.prefix, app, user)
	h.mu.Lock()
	if h.stopped {
		h.mu.Unlock()
		return nil, nil, ErrStopped
	}
	first := len(h.listeners[name]) == 0
	if h.listeners[name] == nil {
		h.listeners[name] = map[chan Item]struct{}{}
	}
	h.listeners[name][ch] = struct{}{}
	ps := h.ps
	h.mu.Unlock()
	if first && ps != nil {
		if err := ps.Subscribe(ctx, name); err != nil {
			return nil, nil, err
		}
	}
	cancel := func() {
		h.mu.Lock()
		if h.stopped {
			h.mu.Unlock()
			return // Run closed every stream already
		}
		delete(h.listeners[name], ch)
		last := len(h.listeners[name]) == 0
		if last {
			delete(h.listeners, name)
		}
		ps := h.ps
		h.mu.Unlock()
		if last && ps != nil {
			_ = ps.Unsubscribe(context.Background(), name)
		}
	}
	return ch, cancel, nil
}

// Run receives published items and hands them to the streams until ctx ends, then closes every
// stream's channel, so the open streams end and the HTTP server can drain.
func (h *Hub) Run(ctx context.Context) error {
	defer func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.stopped = true
		for _, ls := range h.listeners {
			for l := range ls {
				close(l)
			}
		}
		h.listeners = map[string]map[chan Item]struct{}{}
	}()
	for ctx.Err() == nil {
		ps := h.rdb.Subscribe(ctx)
		h.mu.Lock()
		h.ps = ps
		names := make([]string, 0, len(h.listeners))
		for n := range h.listeners {
			names = append(names, n)
		}
		h.mu.Unlock()
		if len(names) > 0 {
			_ = ps.Subscribe(ctx, names...)
		}
		ch := ps.Channel(goredis.WithChannelSize(1024))
		for open := true; open; {
			select {
			case <-ctx.Done():
				open = false
			case m, ok := <-ch:
				if !ok {
					open = false
					break
				}
				var it Item
				if json.Unmarshal([]byte(m.Payload), &it) != nil {
					continue
				}
				h.mu.Lock()
				for l := range h.listeners[m.Channel] {
					select {
					case l <- it:
					default: // a stuck stream misses live items; it catches up when it reconnects
					}
				}
				h.mu.Unlock()
			}
		}
		h.mu.Lock()
		h.ps = nil
		h.mu.Unlock()
		ps.Close()
		if ctx.Err() == nil {
			h.log.Warn("inbox stream hub: resubscribing")
			time.Sleep(time.Second)
		}
	}
	return nil
}
