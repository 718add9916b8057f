//go:build integration

package inbox

import (
	"context"
	"log/slog"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/herald-notify/herald/platform/redis"
	"github.com/herald-notify/herald/platform/testenv"
)

// hubEnv is a hub running on the real Redis under a prefix private to the test.
type hubEnv struct {
	t      *testing.T
	rdb    *goredis.Client
	prefix string
	hub    *Hub
	pub    *Publisher
	stop   func()
}

func startHub(t *testing.T, heartbeat time.Duration) *hubEnv {
	t.Helper()
	c := testenv.Redis(t)
	ctx := testenv.Context(t, time.Minute)
	rdb, err := redis.Connect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	h := NewHub(rdb, c.Prefix, slog.New(slog.DiscardHandler))
	h.HeartbeatEvery = heartbeat
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = h.Run(rctx); close(done) }()
	e := &hubEnv{t: t, rdb: rdb, prefix: c.Prefix, hub: h, pub: NewPublisher(rdb, c.Prefix)}
	e.stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("hub did not stop within 10s")
		}
	}
	t.Cleanup(e.stop)
	return e
}

// waitSubscribed waits until Redis has a subscriber on each channel (or none, with want 0).
func (e *hubEnv) waitSubscribed(want int64, channels ...string) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, err := e.rdb.PubSubNumSub(context.Background(), channels...).Result()
		ok := err == nil
		for _, c := range channels {
			ok = ok && n[c] == want
		}
		if ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("channels %v never had %d subscribers", channels, want)
}

// batches opens a stream whose batches go to a channel.
func (e *hubEnv) open(user string, topics ...string) (*Stream, <-chan Batch) {
	e.t.Helper()
	out := make(chan Batch, 100)
	s, err := e.hub.Open(context.Background(), "app", user, topics, func(b Batch) { out <- b })
	if err != nil {
		e.t.Fatal(err)
	}
	return s, out
}

func nextBatch(t *testing.T, in <-chan Batch, what string) Batch {
	t.Helper()
	select {
	case b := <-in:
		return b
	case <-time.After(5 * time.Second):
		t.Fatalf("no batch with %s within 5s", what)
	}
	return Batch{}
}

func quiet(t *testing.T, in <-chan Batch, what string) {
	t.Helper()
	select {
	case b := <-in:
		t.Fatalf("%s: unexpected batch %+v", what, b)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestHubHandsStreamsTheirItemsTopicItemsAndChangesAndFollowsTopicChanges(t *testing.T) {
	e := startHub(t, time.Hour)
	ctx := context.Background()
	s, batches := e.open("ada", "news")
	e.waitSubscribed(1, channelOf(e.prefix, "app", "ada"), topicChannelOf(e.prefix, "app", "news"))

	// Nothing is handed over before Start; what came meanwhile comes then.
	if err := e.pub.Publish(ctx, []Item{{AppID: "app", UserID: "ada", NotificationID: "own-1", CreatedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	quiet(t, batches, "before Start")
	s.Start()
	if b := nextBatch(t, batches, "the waiting item"); len(b.Items) != 1 || b.Items[0].NotificationID != "own-1" {
		t.Fatalf("after Start: %+v", b)
	}

	tests := []struct {
		name    string
		publish func() error
		want    func(Batch) bool
	}{
		{"a feed item of its topic", func() error {
			return e.pub.PublishTopic(ctx, Item{AppID: "app", Topic: "news", NotificationID: "feed-1", CreatedAt: time.Now()})
		}, func(b Batch) bool {
			return len(b.Items) == 1 && b.Items[0].NotificationID == "feed-1" && b.Items[0].Topic == "news" && b.Items[0].UserID == ""
		}},
		{"a change", func() error { return e.hub.Changed(ctx, "app", "ada") },
			func(b Batch) bool { return b.Changed && len(b.Items) == 0 }},
	}
	for _, tc := range tests {
		if err := tc.publish(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if b := nextBatch(t, batches, tc.name); !tc.want(b) {
			t.Fatalf("%s: got %+v", tc.name, b)
		}
	}
	// Not its topic, another app's topic of that name, another user: nothing.
	_ = e.pub.PublishTopic(ctx, Item{AppID: "app", Topic: "sports", NotificationID: "feed-2", CreatedAt: time.Now()})
	_ = e.pub.PublishTopic(ctx, Item{AppID: "other", Topic: "news", NotificationID: "feed-3", CreatedAt: time.Now()})
	_ = e.pub.Publish(ctx, []Item{{AppID: "app", UserID: "bob", NotificationID: "own-2", CreatedAt: time.Now()}})
	quiet(t, batches, "others' items")
	if err := e.pub.PublishTopic(ctx, Item{AppID: "app", NotificationID: "no-topic"}); err == nil {
		t.Fatal("PublishTopic without a topic succeeded")
	}

	// The stream moves from news to sports: Redis follows, and so do the batches.
	if err := s.SetTopics(ctx, []string{"sports"}); err != nil {
		t.Fatal(err)
	}
	e.waitSubscribed(0, topicChannelOf(e.prefix, "app", "news"))
	e.waitSubscribed(1, topicChannelOf(e.prefix, "app", "sports"))
	_ = e.pub.PublishTopic(ctx, Item{AppID: "app", Topic: "news", NotificationID: "feed-4", CreatedAt: time.Now()})
	_ = e.pub.PublishTopic(ctx, Item{AppID: "app", Topic: "sports", NotificationID: "feed-5", CreatedAt: time.Now()})
	if b := nextBatch(t, batches, "the new topic's item"); len(b.Items) != 1 || b.Items[0].NotificationID != "feed-5" {
		t.Fatalf("after SetTopics: %+v", b)
	}

	// A second stream of the same user shares the channel; closing one keeps it for the other.
	s2, batches2 := e.open("ada")
	s2.Start()
	s.Close()
	e.waitSubscribed(0, topicChannelOf(e.prefix, "app", "sports"))
	_ = e.pub.Publish(ctx, []Item{{AppID: "app", UserID: "ada", NotificationID: "own-3", CreatedAt: time.Now()}})
	if b := nextBatch(t, batches2, "the remaining stream's item"); len(b.Items) != 1 || b.Items[0].NotificationID != "own-3" {
		t.Fatalf("second stream: %+v", b)
	}
	quiet(t, batches, "a closed stream")
	s2.Close()
	e.waitSubscribed(0, channelOf(e.prefix, "app", "ada"))
}

func TestHubEndsAStreamThatDoesNotKeepUp(t *testing.T) {
	e := startHub(t, time.Hour)
	ctx := context.Background()
	release := make(chan struct{})
	got := make(chan Batch, 10)
	first := true
	s, err := e.hub.Open(ctx, "app", "slow", nil, func(b Batch) {
		if first { // a write to a client that does not read
			first = false
			<-release
		}
		got <- b
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Start()
	e.waitSubscribed(1, channelOf(e.prefix, "app", "slow"))
	items := make([]Item, maxPending+50)
	for i := range items {
		items[i] = Item{AppID: "app", UserID: "slow", NotificationID: "n", CreatedAt: time.Now()}
	}
	if err := e.pub.Publish(ctx, items[:1]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // serve is now stuck in the first batch
	if err := e.pub.Publish(ctx, items[1:]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	close(release)
	nextBatch(t, got, "the first item")
	if b := nextBatch(t, got, "the overflow"); !b.Overflow || len(b.Items) != 0 {
		t.Fatalf("after %d items behind: overflow %v with %d items", len(items)-1, b.Overflow, len(b.Items))
	}
}

func TestHubBeatsEveryStreamAndClosesThemAtShutdown(t *testing.T) {
	e := startHub(t, 100*time.Millisecond)
	var streams []<-chan Batch
	for _, u := range []string{"a", "b", "c"} {
		s, b := e.open(u)
		s.Start()
		streams = append(streams, b)
	}
	for i, b := range streams {
		if got := nextBatch(t, b, "a heartbeat"); !got.Heartbeat {
			t.Fatalf("stream %d: %+v", i, got)
		}
	}
	e.stop()
	for i, b := range streams {
		for got := nextBatch(t, b, "closing"); !got.Closing; got = nextBatch(t, b, "closing") {
			if !got.Heartbeat {
				t.Fatalf("stream %d at shutdown: %+v", i, got)
			}
		}
	}
	if _, err := e.hub.Open(context.Background(), "app", "late", nil, func(Batch) {}); err != ErrStopped {
		t.Fatalf("open after shutdown: %v", err)
	}
}

// Items go out only on the channels of users with a stream open: a pattern subscriber (which
// no channel count includes) sees what was really published.
func TestPublishAnnouncesOnlyToUsersWithAStreamOpen(t *testing.T) {
	e := startHub(t, time.Hour)
	ctx := context.Background()
	s, batches := e.open("ada")
	e.waitSubscribed(1, channelOf(e.prefix, "app", "ada"))
	s.Start()
	observer := e.rdb.PSubscribe(ctx, e.prefix+"inbox:*")
	defer observer.Close()
	if _, err := observer.Receive(ctx); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	items := []Item{
		{AppID: "app", UserID: "bob", NotificationID: "n1", CreatedAt: time.Now()},
		{AppID: "app", UserID: "ada", NotificationID: "n1", CreatedAt: time.Now()},
		{AppID: "app", UserID: "cyd", NotificationID: "n1", CreatedAt: time.Now()},
	}
	if err := e.pub.Publish(ctx, items); err != nil {
		t.Fatal(err)
	}
	if b := nextBatch(t, batches, "ada's item"); len(b.Items) != 1 || b.Items[0].UserID != "ada" {
		t.Fatalf("ada's stream got %+v", b)
	}
	var published []string
	for {
		rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		m, err := observer.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			break
		}
		published = append(published, m.Channel)
	}
	if len(published) != 1 || published[0] != channelOf(e.prefix, "app", "ada") {
		t.Fatalf("published on %v, want ada's channel only", published)
	}
}
