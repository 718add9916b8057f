package inbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/herald-notify/herald/platform/retry"
)

// Publisher announces new inbox items on Redis for live streams: a user's items on the user's
// channel, a large topic's feed items on the topic's.
type Publisher struct {
	rdb    *goredis.Client
	prefix string
}

// NewPublisher returns a Publisher under the region's Redis prefix.
func NewPublisher(rdb *goredis.Client, prefix string) *Publisher {
	return &Publisher{rdb: rdb, prefix: prefix}
}

func channelOf(prefix, app, user string) string { return prefix + "inbox:" + app + ":" + user }

func topicChannelOf(prefix, app, topic string) string {
	return prefix + "inbox-topic:" + app + ":" + topic
}

// Publish announces items to the users who have a stream open somewhere in the region, pipelined.
// One PUBSUB NUMSUB for the batch finds them: most recipients have none, and a PUBLISH nobody
// hears still costs Redis a command and the region an encoding. Nothing is lost to a stream
// that subscribes after the count: streams subscribe before they catch up from Cassandra, where
// the items already are. A failure only delays live delivery: a stream that reconnects catches
// up from there.
func (p *Publisher) Publish(ctx context.Context, items []Item) error {
	if len(items) == 0 {
		return nil
	}
	names := make([]string, len(items))
	for i, it := range items {
		names[i] = channelOf(p.prefix, it.AppID, it.UserID)
	}
	listened, err := p.rdb.PubSubNumSub(ctx, names...).Result()
	if err != nil {
		return fmt.Errorf("counting inbox streams: %w", err)
	}
	var heard []int
	for i, n := range names {
		if listened[n] > 0 {
			heard = append(heard, i)
		}
	}
	if len(heard) == 0 {
		return nil
	}
	_, err = p.rdb.Pipelined(ctx, func(pipe goredis.Pipeliner) error {
		for _, i := range heard {
			raw, err := json.Marshal(items[i])
			if err != nil {
				return err
			}
			pipe.Publish(ctx, names[i], raw)
		}
		return nil
	})
	return err
}

// PublishTopic announces a large topic's feed item (fan-out on read, written once with
// WriteTopicFeed) to the open streams of the topic's subscribers, over one message.
func (p *Publisher) PublishTopic(ctx context.Context, it Item) error {
	if it.AppID == "" || it.Topic == "" {
		return fmt.Errorf("announcing feed item %s: app and topic are required", it.NotificationID)
	}
	raw, err := json.Marshal(it)
	if err != nil {
		return err
	}
	if err := p.rdb.Publish(ctx, topicChannelOf(p.prefix, it.AppID, it.Topic), raw).Err(); err != nil {
		return fmt.Errorf("announcing feed item %s of topic %s: %w", it.NotificationID, it.Topic, err)
	}
	return nil
}

// changedMessage is published on a user's channel when the user's inbox changed other than by
// a new item (items read elsewhere): the user's streams recount.
var changedMessage = []byte(`{"changed":true}`)

// message is what the inbox channels carry: an item, or a change.
type message struct {
	Item
	Changed bool `json:"changed,omitempty"`
}

// Batch is what reached a stream since it last looked.
type Batch struct {
	Items     []Item // new items: the user's own, and the feed items of its topics (Topic set, UserID empty)
	Changed   bool   // the user's inbox changed elsewhere (reads): recount
	Heartbeat bool   // time for a heartbeat
	Woken     bool   // Wake was called
	// Overflow means items were dropped because the stream did not keep up; Closing that the
	// hub is stopping. Either way the stream must end: its client reconnects and catches up.
	Overflow, Closing bool
}

func (b Batch) empty() bool {
	return len(b.Items) == 0 && !b.Changed && !b.Heartbeat && !b.Woken && !b.Overflow && !b.Closing
}

// maxPending is how many items a stream may have waiting before it overflows.
const maxPending = 256

// Stream is one open stream's place in the hub. What arrives for it is handed to its serve
// function on a goroutine that exists only while there is something to hand over: an idle
// stream costs this struct and its map entries, not a goroutine or a buffer.
type Stream struct {
	hub       *Hub
	app, user string
	serve     func(Batch)

	mu      sync.Mutex
	pending Batch
	started bool
	running bool
	closed  bool
	topics  []string // the topic channels it listens on
}

// Hub fans the inbox channels of this process's open streams out to them over one Redis
// connection, and gives every stream a heartbeat from one ticker.
type Hub struct {
	rdb    *goredis.Client
	prefix string
	log    *slog.Logger
	// HeartbeatEvery is how often each open stream gets a heartbeat batch; set before Run.
	HeartbeatEvery time.Duration

	subMu sync.Mutex // orders SUBSCRIBE and UNSUBSCRIBE so Redis ends in the listeners' state

	mu sync.Mutex
	ps *goredis.PubSub
	// listeners by channel: a slice, as most channels (a user's) have one stream, and a map
	// per channel would cost more than the stream itself.
	listeners map[string][]*Stream
	streams   map[*Stream]struct{}
	stopped   bool
	serving   atomic.Int64 // serve goroutines running, waited for at shutdown
}

// ErrStopped means the process is shutting down and takes no new streams.
var ErrStopped = errors.New("inbox streams are shutting down")

// NewHub returns a Hub; Run must be running for streams to receive.
func NewHub(rdb *goredis.Client, prefix string, log *slog.Logger) *Hub {
	return &Hub{rdb: rdb, prefix: prefix, log: log, HeartbeatEvery: 15 * time.Second,
		listeners: map[string][]*Stream{}, streams: map[*Stream]struct{}{}}
}

// Changed tells the user's open streams, in every API process, that the user's inbox changed
// other than by a new item (items read elsewhere), so they recount.
func (h *Hub) Changed(ctx context.Context, app, user string) error {
	if err := h.rdb.Publish(ctx, channelOf(h.prefix, app, user), changedMessage).Err(); err != nil {
		return fmt.Errorf("announcing an inbox change of %s: %w", user, err)
	}
	return nil
}

// Open registers a stream for the user's items and the feed items of topics. Nothing is handed
// to serve until Start, so the caller can catch up first; what arrives meanwhile waits.
func (h *Hub) Open(ctx context.Context, app, user string, topics []string, serve func(Batch)) (*Stream, error) {
	s := &Stream{hub: h, app: app, user: user, serve: serve}
	names := []string{channelOf(h.prefix, app, user)}
	for _, t := range topics {
		n := topicChannelOf(h.prefix, app, t)
		s.topics = append(s.topics, n)
		names = append(names, n)
	}
	h.mu.Lock()
	if h.stopped {
		h.mu.Unlock()
		return nil, ErrStopped
	}
	h.streams[s] = struct{}{}
	var first []string // channels Redis must now be subscribed to
	for _, n := range names {
		if h.listen(n, s) {
			first = append(first, n)
		}
	}
	h.mu.Unlock()
	if err := h.sync(ctx, first); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// listen adds s to a channel's listeners and reports whether it is the first; h.mu is held.
func (h *Hub) listen(name string, s *Stream) bool {
	h.listeners[name] = append(h.listeners[name], s)
	return len(h.listeners[name]) == 1
}

// unlisten removes s from a channel's listeners and reports whether it was the last; h.mu is
// held.
func (h *Hub) unlisten(name string, s *Stream) bool {
	ls := h.listeners[name]
	if i := slices.Index(ls, s); i >= 0 {
		ls[i] = ls[len(ls)-1]
		ls[len(ls)-1] = nil
		ls = ls[:len(ls)-1]
	}
	if len(ls) > 0 {
		h.listeners[name] = ls
		return false
	}
	delete(h.listeners, name)
	return true
}

// sync makes Redis's subscriptions match the listeners of the named channels: those whose
// first listener came or last one went. Each call reads the state it applies under subMu, so
// whatever order calls race in, the last one leaves Redis as the listeners are.
func (h *Hub) sync(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	h.subMu.Lock()
	defer h.subMu.Unlock()
	var sub, unsub []string
	h.mu.Lock()
	ps := h.ps
	for _, n := range names {
		if len(h.listeners[n]) > 0 {
			sub = append(sub, n)
		} else {
			unsub = append(unsub, n)
		}
	}
	h.mu.Unlock()
	if ps == nil {
		return nil // Run subscribes every listened channel when it reconnects
	}
	if len(sub) > 0 {
		if err := ps.Subscribe(ctx, sub...); err != nil {
			return fmt.Errorf("subscribing to inbox channels: %w", err)
		}
	}
	if len(unsub) > 0 {
		if err := ps.Unsubscribe(context.WithoutCancel(ctx), unsub...); err != nil {
			return fmt.Errorf("unsubscribing from inbox channels: %w", err)
		}
	}
	return nil
}

// Start hands the stream what arrived since Open and from then on.
func (s *Stream) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.started = true
	s.scheduleLocked()
}

// Wake hands the stream a batch with Woken set (for its own timers).
func (s *Stream) Wake() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending.Woken = true
	s.scheduleLocked()
}

// SetTopics changes the topics whose feed items the stream receives.
func (s *Stream) SetTopics(ctx context.Context, topics []string) error {
	h := s.hub
	want := make(map[string]bool, len(topics))
	for _, t := range topics {
		want[topicChannelOf(h.prefix, s.app, t)] = true
	}
	var changed []string
	h.mu.Lock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		h.mu.Unlock()
		return nil
	}
	kept := s.topics[:0:0]
	for _, n := range s.topics {
		if want[n] {
			kept = append(kept, n)
			delete(want, n)
		} else if h.unlisten(n, s) {
			changed = append(changed, n)
		}
	}
	for n := range want {
		if h.listen(n, s) {
			changed = append(changed, n)
		}
		kept = append(kept, n)
	}
	s.topics = kept
	s.mu.Unlock()
	h.mu.Unlock()
	return h.sync(ctx, changed)
}

// Close takes the stream out of the hub: serve is not called again after the call running,
// if any. Safe to call more than once and from serve.
func (s *Stream) Close() {
	h := s.hub
	h.mu.Lock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		h.mu.Unlock()
		return
	}
	s.closed = true
	s.pending = Batch{}
	var last []string // channels no stream listens to any more
	for _, n := range append([]string{channelOf(h.prefix, s.app, s.user)}, s.topics...) {
		if h.unlisten(n, s) {
			last = append(last, n)
		}
	}
	delete(h.streams, s)
	s.mu.Unlock()
	h.mu.Unlock()
	if err := h.sync(context.Background(), last); err != nil {
		h.log.Warn("inbox stream hub: unsubscribing", "err", err)
	}
}

// deliver queues what arrived for the stream; h.mu may be held.
func (s *Stream) deliver(add func(b *Batch)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	add(&s.pending)
	if len(s.pending.Items) > maxPending || s.pending.Overflow {
		s.pending.Items, s.pending.Overflow = nil, true // the stream ends; its client catches up
	}
	s.scheduleLocked()
}

// scheduleLocked starts the serve goroutine if there is work and none runs; s.mu is held.
func (s *Stream) scheduleLocked() {
	if !s.started || s.running || s.closed || s.pending.empty() {
		return
	}
	s.running = true
	s.hub.serving.Add(1)
	go s.drain()
}

func (s *Stream) drain() {
	defer s.hub.serving.Add(-1)
	for {
		s.mu.Lock()
		b := s.pending
		s.pending = Batch{}
		if s.closed || b.empty() {
			s.running = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		s.serve(b)
	}
}

// resubscribeRetry is the wait before the hub subscribes again after its subscription ended.
var resubscribeRetry = retry.Backoff{Initial: 250 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.2}

// Run receives published messages and hands them to the streams, and gives every stream a
// heartbeat each HeartbeatEvery, until ctx ends; then it hands every stream Closing, so the open
// streams end, and waits a little for them.
func (h *Hub) Run(ctx context.Context) error {
	defer h.stop()
	beat := time.NewTicker(h.HeartbeatEvery)
	defer beat.Stop()
	waits := resubscribeRetry.Start()
	for ctx.Err() == nil {
		started := time.Now()
		h.subMu.Lock()
		ps := h.rdb.Subscribe(ctx)
		h.mu.Lock()
		h.ps = ps
		names := make([]string, 0, len(h.listeners))
		for n := range h.listeners {
			names = append(names, n)
		}
		h.mu.Unlock()
		var err error
		if len(names) > 0 {
			err = ps.Subscribe(ctx, names...)
		}
		h.subMu.Unlock()
		if err != nil {
			h.log.Warn("inbox stream hub: subscribing", "err", err)
		}
		ch := ps.Channel(goredis.WithChannelSize(1024))
		for open := true; open; {
			select {
			case <-ctx.Done():
				open = false
			case <-beat.C:
				h.mu.Lock()
				for s := range h.streams {
					s.deliver(func(b *Batch) { b.Heartbeat = true })
				}
				h.mu.Unlock()
			case m, ok := <-ch:
				if !ok {
					open = false
					break
				}
				h.dispatch(m)
			}
		}
		h.subMu.Lock()
		h.mu.Lock()
		h.ps = nil
		h.mu.Unlock()
		h.subMu.Unlock()
		ps.Close()
		if ctx.Err() == nil {
			wait := waits.NextAfter(time.Since(started)) // after a long subscription the failure is new
			h.log.Warn("inbox stream hub: resubscribing", "backoff", wait)
			retry.Sleep(ctx, wait)
		}
	}
	return nil
}

func (h *Hub) dispatch(m *goredis.Message) {
	var msg message
	if err := json.Unmarshal([]byte(m.Payload), &msg); err != nil || !msg.Changed && msg.NotificationID == "" {
		h.log.Warn("inbox stream hub: unreadable message", "channel", m.Channel)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.listeners[m.Channel] {
		s.deliver(func(b *Batch) {
			if msg.Changed {
				b.Changed = true
			} else {
				b.Items = append(b.Items, msg.Item)
			}
		})
	}
}

// stop refuses new streams, hands every open one Closing and waits up to 5 s for them to end.
func (h *Hub) stop() {
	h.mu.Lock()
	h.stopped = true
	for s := range h.streams {
		s.deliver(func(b *Batch) { b.Closing = true })
	}
	h.mu.Unlock()
	for deadline := time.Now().Add(5 * time.Second); h.serving.Load() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			h.log.Warn("inbox stream hub: streams still ending at shutdown", "streams", h.serving.Load())
			return
		}
	}
}
