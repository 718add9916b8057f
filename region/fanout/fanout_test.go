package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/region/deliverylog"
	"github.com/herald-notify/herald/region/inbox"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/prefs"
	"github.com/herald-notify/herald/region/profiles"
	"github.com/herald-notify/herald/region/scheduler"
)

// These are test doubles of fan-out's own small interfaces (not of any server); the stores
// behind the real implementations are covered by the region's integration tests.

type world struct {
	mu        sync.Mutex // inbox writes run concurrently
	profiles  map[string]*profiles.Profile
	subs      []string
	scheduled []notify.Event
	dues      []time.Time
	sent      []kafka.Message
	events    []notify.EventBatch
	inbox     []inbox.Item
	feed      []inbox.Item
	states    map[string]deliverylog.State
	done      map[string]string
	dedupErr  error
	sendErr   error
	// region is the fan-out's; fires are the jurisdiction's claims of deferred firings
	// (scheduled_fires), shared by the worlds of one jurisdiction's regions.
	region string
	fires  map[string]string
}

func newWorld() *world {
	return &world{profiles: map[string]*profiles.Profile{}, states: map[string]deliverylog.State{}, done: map[string]string{},
		region: "eu-west-1", fires: map[string]string{}}
}

// Load returns only the parts need names, as the real loader does, so a chunk that asks for
// too little finds no devices or addresses.
func (w *world) Load(_ context.Context, _ string, users []string, need profiles.Need) (map[string]*profiles.Profile, error) {
	out := map[string]*profiles.Profile{}
	for _, u := range users {
		if p, ok := w.profiles[u]; ok {
			cp := *p
			if !need.Devices {
				cp.Devices = nil
			}
			if !need.Contacts {
				cp.Email, cp.Phone = "", ""
			}
			if !need.Locale {
				cp.Locale = ""
			}
			out[u] = &cp
		} else {
			out[u] = &profiles.Profile{}
		}
	}
	return out, nil
}
func (w *world) Count(context.Context, string, string) (int64, error) { return int64(len(w.subs)), nil }
func (w *world) Page(_ context.Context, _, _, after string, limit int) ([]string, error) {
	var out []string
	for _, s := range w.subs {
		if s > after && len(out) < limit {
			out = append(out, s)
		}
	}
	return out, nil
}
func (w *world) Schedule(_ context.Context, due time.Time, e notify.Event, _ string) error {
	w.scheduled, w.dues = append(w.scheduled, e), append(w.dues, due)
	return nil
}
func (w *world) ClaimFire(_ context.Context, e notify.Event) (string, error) {
	key := scheduler.FireKey(e)
	if owner, ok := w.fires[key]; ok {
		return owner, nil
	}
	w.fires[key] = w.region
	return w.region, nil
}
func (w *world) Send(_ context.Context, msgs ...kafka.Message) error {
	if w.sendErr != nil {
		return w.sendErr
	}
	for _, m := range msgs {
		if strings.HasSuffix(m.Topic, ".events") { // delivery events, checked on their own
			var b notify.EventBatch
			if err := json.Unmarshal(m.Value, &b); err != nil {
				return err
			}
			w.events = append(w.events, b)
			continue
		}
		w.sent = append(w.sent, m)
	}
	return nil
}
func (w *world) Write(_ context.Context, it inbox.Item) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inbox = append(w.inbox, it)
	return nil
}
func (w *world) WriteBatch(ctx context.Context, items []inbox.Item) error {
	for _, it := range items {
		if err := w.Write(ctx, it); err != nil {
			return err
		}
	}
	return nil
}
func (w *world) WriteTopicFeed(_ context.Context, it inbox.Item) error {
	w.feed = append(w.feed, it)
	return nil
}

type logWriter struct{ w *world }

func (l logWriter) Accepted(context.Context, notify.Event) error { return nil }
func (l logWriter) FanoutDone(context.Context, string, string, int, time.Time) error {
	return nil
}
func (l logWriter) Write(_ context.Context, states []deliverylog.State, _ []deliverylog.Attempt) error {
	for _, s := range states {
		l.w.states[s.UserID+"/"+s.Channel] = s
	}
	return nil
}

type dedupKeys struct{ w *world }

func (d dedupKeys) Key(n, u, c string) string { return n + ":" + c + ":" + u }
func (d dedupKeys) Done(_ context.Context, keys []string) ([]string, error) {
	if d.w.dedupErr != nil {
		return nil, d.w.dedupErr
	}
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = d.w.done[k]
	}
	return out, nil
}
func (d dedupKeys) Mark(_ context.Context, keys, states []string) error {
	for i, k := range keys {
		if d.w.done[k] == "" {
			d.w.done[k] = states[i]
		}
	}
	return nil
}

var now = time.Date(2026, 6, 10, 21, 30, 0, 0, time.UTC)

func newFanout(w *world) *Fanout {
	f := New(Settings{Region: w.region, ChunkSize: 2, MaxAge: map[string]time.Duration{notify.Transactional: 10 * time.Minute}},
		10, Deps{Profiles: w, Subscribers: w, Scheduler: w, Producer: w, Inbox: w, Deliveries: logWriter{w}, Dedup: dedupKeys{w},
			Logger: slog.New(slog.DiscardHandler)})
	f.now = func() time.Time { return now }
	return f
}

func event(tier string, users ...string) notify.Event {
	c := notify.Content{Title: "t", Body: "b"}
	return notify.Event{ID: "n1", AppID: "app", Tier: tier, Category: "cat", Recipients: users, AcceptedAt: now,
		Content: map[string]notify.Content{notify.InApp: c, notify.Push: c, notify.Email: c, notify.SMS: c}}
}

func (w *world) state(user, ch string) (string, string) {
	s := w.states[user+"/"+ch]
	return s.State, s.Reason
}

func TestHandleDecidesEachRecipientAndChannel(t *testing.T) {
	w := newWorld()
	w.profiles["full"] = &profiles.Profile{Email: "a@x", Phone: "+4915112345678", Devices: []notify.Device{{DeviceID: "d", Platform: "ios", Token: "t"}}}
	w.profiles["stopped"] = &profiles.Profile{Email: "s@x", Prefs: prefs.Preferences{HardStop: true}}
	w.profiles["nosms"] = &profiles.Profile{Phone: "+4915112345678", Prefs: prefs.Preferences{Channels: map[string]bool{notify.SMS: false}}}
	f := newFanout(w)
	if err := f.Handle(context.Background(), event(notify.Transactional, "full", "stopped", "nosms", "bare")); err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{
		"full/in_app": {notify.StateDelivered, ""}, "full/push": {notify.StateQueued, ""}, "full/email": {notify.StateQueued, ""}, "full/sms": {notify.StateQueued, ""},
		"stopped/in_app": {notify.StateSuppressed, notify.ReasonHardStop}, "stopped/email": {notify.StateSuppressed, notify.ReasonHardStop},
		"nosms/in_app": {notify.StateDelivered, ""}, "nosms/sms": {notify.StateSuppressed, notify.ReasonChannelOff},
		"bare/in_app": {notify.StateDelivered, ""},
	}
	for k, v := range want {
		if s := w.states[k]; s.State != v[0] || s.Reason != v[1] {
			t.Errorf("%s: %s/%s, want %s/%s", k, s.State, s.Reason, v[0], v[1])
		}
	}
	if len(w.states) != len(want) {
		t.Errorf("decided %d deliveries, want %d", len(w.states), len(want))
	}
	var topics []string
	for _, m := range w.sent {
		topics = append(topics, m.Topic+"/"+m.Key)
	}
	sort.Strings(topics)
	if len(topics) != 3 || topics[0] != "eu-west-1.dispatch.transactional.email/full" {
		t.Fatalf("tasks %v", topics)
	}
	// One events record per chunk (of 2 here), with every outcome in analytics' stages.
	got := map[string]int{}
	for _, b := range w.events {
		if b.NotificationID != "n1" || b.App != "app" || b.Tier != notify.Transactional || b.Category != "cat" {
			t.Errorf("events record %+v", b)
		}
		for _, o := range b.Outcomes {
			got[o.User+"/"+o.Channel+"/"+o.Stage+"/"+o.Reason+"/"+o.Country]++
		}
	}
	wantEvents := map[string]int{
		"full/all/accepted//": 1, "stopped/all/accepted//": 1, "nosms/all/accepted//": 1, "bare/all/accepted//": 1,
		"full/in_app/fanned_out//": 1, "full/in_app/delivered//": 1, "full/push/fanned_out//": 1, "full/email/fanned_out//": 1, "full/sms/fanned_out//DE": 1,
		"stopped/in_app/suppressed/hard_stop/": 1, "stopped/email/suppressed/hard_stop/": 1,
		"nosms/in_app/fanned_out//": 1, "nosms/in_app/delivered//": 1, "nosms/sms/suppressed/channel_disabled/DE": 1,
		"bare/in_app/fanned_out//": 1, "bare/in_app/delivered//": 1,
	}
	if len(w.events) != 2 || !maps.Equal(got, wantEvents) {
		t.Errorf("%d events records with outcomes %v, want 2 with %v", len(w.events), got, wantEvents)
	}
}

func TestNamedChannelsStillFindTheirDevicesAndAddresses(t *testing.T) {
	for _, tc := range []struct {
		name     string
		channels []string
		want     map[string]string // channel -> state
	}{
		{"push only", []string{notify.Push}, map[string]string{notify.Push: notify.StateQueued}},
		{"email only", []string{notify.Email}, map[string]string{notify.Email: notify.StateQueued}},
		{"sms only", []string{notify.SMS}, map[string]string{notify.SMS: notify.StateQueued}},
		{"in-app and sms", []string{notify.InApp, notify.SMS}, map[string]string{notify.InApp: notify.StateDelivered, notify.SMS: notify.StateQueued}},
		{"in-app only", []string{notify.InApp}, map[string]string{notify.InApp: notify.StateDelivered}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			w.profiles["full"] = &profiles.Profile{Email: "a@x", Phone: "+4915112345678", Devices: []notify.Device{{DeviceID: "d", Platform: "ios", Token: "t"}}}
			e := event(notify.Social, "full")
			e.Channels = tc.channels
			if err := newFanout(w).Handle(context.Background(), e); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for k, s := range w.states {
				got[strings.TrimPrefix(k, "full/")] = s.State
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("states %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRedeliveredEventSkipsWhatWasHandedOn(t *testing.T) {
	w := newWorld()
	w.profiles["a"] = &profiles.Profile{Email: "a@x"}
	f := newFanout(w)
	e := event(notify.Social, "a", "b")
	e.Channels = []string{notify.InApp, notify.Email}
	if err := f.Handle(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	sent := len(w.sent)
	if err := f.Handle(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if len(w.sent) != sent {
		t.Fatalf("the redelivery emitted %d more tasks", len(w.sent)-sent)
	}
	// The repeat's record leaves out what the first attempt handed on (its record went first).
	for _, o := range w.events[len(w.events)-1].Outcomes {
		if o.Stage != notify.StageAccepted && !(o.User == "b" && o.Channel == notify.Email) {
			t.Errorf("the redelivery reported %+v again", o)
		}
	}
	// The status keeps the state the first attempt reached.
	if s, r := w.state("a", notify.Email); s != notify.StateQueued || r != "" {
		t.Fatalf("a/email after redelivery: %s %s", s, r)
	}
}

func TestFailedHandOffIsNotMarkedSoTheRetryDelivers(t *testing.T) {
	w := newWorld()
	w.profiles["a"] = &profiles.Profile{Email: "a@x"}
	w.sendErr = errors.New("kafka down")
	f := newFanout(w)
	e := event(notify.Social, "a")
	e.Channels = []string{notify.Email}
	if err := f.Handle(context.Background(), e); err == nil {
		t.Fatal("a failed hand-off must fail the event, so its offset is not committed")
	}
	w.sendErr = nil
	if err := f.Handle(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if len(w.sent) != 1 {
		t.Fatalf("the retry sent %d tasks, want 1", len(w.sent))
	}
}

func TestDedupOutageStillDelivers(t *testing.T) {
	w := newWorld()
	w.dedupErr = errors.New("redis down")
	f := newFanout(w)
	if err := f.Handle(context.Background(), event(notify.Social, "a")); err != nil {
		t.Fatal(err)
	}
	if s, _ := w.state("a", notify.InApp); s != notify.StateDelivered {
		t.Fatalf("a/in_app %s", s)
	}
}

func TestStaleTransactionalIsSuppressedAsExpired(t *testing.T) {
	w := newWorld()
	f := newFanout(w)
	e := event(notify.Transactional, "a")
	e.AcceptedAt = now.Add(-11 * time.Minute)
	if err := f.Handle(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if s, r := w.state("a", notify.InApp); s != notify.StateSuppressed || r != notify.ReasonExpired {
		t.Fatalf("a/in_app %s %s", s, r)
	}
}

func TestQuietHoursDeferNonTransactionalButNotTransactional(t *testing.T) {
	w := newWorld()
	quiet := prefs.Preferences{Timezone: "Europe/Paris", QuietHours: &prefs.QuietHours{Start: "22:00", End: "07:00"}} // 23:30 there
	w.profiles["a"] = &profiles.Profile{Prefs: quiet}
	f := newFanout(w)
	if err := f.Handle(context.Background(), event(notify.Marketing, "a")); err != nil {
		t.Fatal(err)
	}
	if s, r := w.state("a", notify.InApp); s != notify.StateDeferred || r != "quiet_hours" {
		t.Fatalf("marketing: %s %s", s, r)
	}
	if len(w.scheduled) != 1 || !w.dues[0].Equal(time.Date(2026, 6, 11, 5, 0, 0, 0, time.UTC)) {
		t.Fatalf("scheduled %v at %v", len(w.scheduled), w.dues)
	}
	d := w.scheduled[0]
	if !d.Deferred || len(d.Recipients) != 1 || d.OnlyChannels[0] != notify.InApp {
		t.Fatalf("deferred event %+v", d)
	}
	// When it fires it is delivered, not deferred again.
	if err := f.Handle(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if s, _ := w.state("a", notify.InApp); s != notify.StateDelivered {
		t.Fatalf("fired deferral: %s", s)
	}
	w2 := newWorld()
	w2.profiles["a"] = &profiles.Profile{Prefs: quiet}
	if err := newFanout(w2).Handle(context.Background(), event(notify.Transactional, "a")); err != nil {
		t.Fatal(err)
	}
	if s, _ := w2.state("a", notify.InApp); s != notify.StateDelivered {
		t.Fatalf("transactional in quiet hours: %s", s)
	}
}

func TestADeferredEventFiresOnceInTheJurisdictionWhicheverRegionsGetACopy(t *testing.T) {
	// Two regions of a jurisdiction: each its own dedup and producer, one table of claims.
	west, central := newWorld(), newWorld()
	central.region, central.fires = "eu-central-1", west.fires
	for _, w := range []*world{west, central} {
		w.profiles["a"] = &profiles.Profile{Email: "a@x"}
		w.profiles["b"] = &profiles.Profile{Email: "b@x"}
	}
	fw, fc := newFanout(west), newFanout(central)
	due := now
	d := event(notify.Marketing, "a")
	d.Deferred, d.OnlyChannels, d.SendAt = true, []string{notify.Email}, &due
	dropped := testutil.ToFloat64(firedElsewhere.WithLabelValues("eu-west-1", notify.Marketing))

	// eu-west-1 died after Kafka took its copy of the row and before deleting the row:
	// eu-central-1 fired the row again, and its copy came first.
	if err := fc.Handle(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if n := len(central.sent); n != 1 {
		t.Fatalf("eu-central-1 handed on %d tasks, want 1", n)
	}
	// eu-west-1, back, consumes its own copy: dropped, counted.
	if err := fw.Handle(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if n := len(west.sent); n != 0 {
		t.Fatalf("eu-west-1 handed on %d tasks for a firing eu-central-1 claimed", n)
	}
	if got := testutil.ToFloat64(firedElsewhere.WithLabelValues("eu-west-1", notify.Marketing)) - dropped; got != 1 {
		t.Errorf("herald_fanout_deferred_fired_elsewhere_total rose by %v, want 1", got)
	}
	// A redelivery in the region that fired it goes on: its dedup skips what was done.
	if err := fc.Handle(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if n := len(central.sent); n != 1 {
		t.Fatalf("the redelivery in eu-central-1 handed on %d tasks in all, want 1", n)
	}
	// Another user's re-entry of the same notification, or another due time, is a firing of
	// its own.
	other := d
	other.Recipients = []string{"b"}
	later := due.Add(time.Hour)
	again := d
	again.SendAt = &later
	for _, e := range []notify.Event{other, again} {
		if err := fw.Handle(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(west.sent); n != 2 {
		t.Fatalf("eu-west-1 handed on %d tasks for two firings of its own, want 2", n)
	}
	// An event that was never deferred claims nothing.
	if err := fw.Handle(context.Background(), event(notify.Marketing, "a")); err != nil {
		t.Fatal(err)
	}
	if len(west.fires) != 3 {
		t.Errorf("%d firings claimed, want 3", len(west.fires))
	}
}

func TestSendAtInTheFutureIsScheduledWhole(t *testing.T) {
	w := newWorld()
	f := newFanout(w)
	e := event(notify.Social, "a", "b")
	at := now.Add(time.Hour)
	e.SendAt = &at
	if err := f.Handle(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if len(w.scheduled) != 1 || !w.dues[0].Equal(at) || len(w.states) != 0 {
		t.Fatalf("scheduled %d, states %v", len(w.scheduled), w.states)
	}
}

func TestTopicAboveThresholdWritesOneFeedRecordAndTasksPerSubscriber(t *testing.T) {
	w := newWorld()
	for _, u := range []string{"u01", "u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09", "u10", "u11"} {
		w.subs = append(w.subs, u)
		w.profiles[u] = &profiles.Profile{Devices: []notify.Device{{DeviceID: "d" + u, Platform: "android", Token: "tok"}}}
	}
	f := newFanout(w) // threshold 10
	e := event(notify.Social)
	e.Topic, e.Channels = "news", []string{notify.InApp, notify.Push}
	if err := f.Handle(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if len(w.feed) != 1 || len(w.inbox) != 0 {
		t.Fatalf("feed %d, inbox %d", len(w.feed), len(w.inbox))
	}
	if len(w.sent) != 11 {
		t.Fatalf("push tasks %d, want 11", len(w.sent))
	}
	var task notify.Task
	if err := json.Unmarshal(w.sent[0].Value, &task); err != nil || task.Channel != notify.Push || len(task.Target.Devices) != 1 {
		t.Fatalf("task %+v %v", task, err)
	}
}

// topicPublisher records what fan-out announces to live streams.
type topicPublisher struct {
	items, topicItems []inbox.Item
}

func (p *topicPublisher) Publish(_ context.Context, items []inbox.Item) error {
	p.items = append(p.items, items...)
	return nil
}
func (p *topicPublisher) PublishTopic(_ context.Context, it inbox.Item) error {
	p.topicItems = append(p.topicItems, it)
	return nil
}

func TestInAppOnlyLargeTopicCountsEverySubscriberAcceptedAndAnnouncesTheFeedItem(t *testing.T) {
	w := newWorld()
	for i := 1; i <= 11; i++ {
		w.subs = append(w.subs, fmt.Sprintf("u%02d", i))
	}
	pub := &topicPublisher{}
	f := New(Settings{Region: "eu-west-1", ChunkSize: 4}, 10, Deps{Profiles: w, Subscribers: w, Scheduler: w, Producer: w, Inbox: w,
		Deliveries: logWriter{w}, Dedup: dedupKeys{w}, Publisher: pub, Logger: slog.New(slog.DiscardHandler)})
	f.now = func() time.Time { return now }
	e := event(notify.Social)
	e.Topic, e.Channels = "news", []string{notify.InApp}
	if err := f.Handle(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if len(w.feed) != 1 || len(w.inbox) != 0 || len(w.sent) != 0 {
		t.Fatalf("feed %d, inbox %d, tasks %d; want one feed record and nothing else", len(w.feed), len(w.inbox), len(w.sent))
	}
	accepted := map[string]int{}
	for _, b := range w.events {
		for _, o := range b.Outcomes {
			if o.Stage == notify.StageAccepted {
				accepted[o.User]++
			}
		}
	}
	for _, u := range w.subs {
		if accepted[u] != 1 {
			t.Fatalf("%s accepted %d times, want 1 (all: %v)", u, accepted[u], accepted)
		}
	}
	if len(pub.topicItems) != 1 || pub.topicItems[0].Topic != "news" || pub.topicItems[0].NotificationID != "n1" {
		t.Fatalf("announced feed items %+v, want the one feed record", pub.topicItems)
	}
}

func TestTransactionalHandoffMarksDedupKeysOnlyOnceDurable(t *testing.T) {
	w := newWorld()
	w.profiles["a"] = &profiles.Profile{Email: "a@x"}
	pub := &topicPublisher{}
	f := New(Settings{Region: "eu-west-1", ChunkSize: 2}, 10, Deps{Profiles: w, Subscribers: w, Scheduler: w, Producer: w, Inbox: w,
		Deliveries: logWriter{w}, Dedup: dedupKeys{w}, Publisher: pub, Logger: slog.New(slog.DiscardHandler)})
	f.now = func() time.Time { return now }
	out := &collector{}
	if err := f.HandleTo(context.Background(), event(notify.Social, "a"), out); err != nil {
		t.Fatal(err)
	}
	if len(w.sent) != 0 || len(w.events) != 0 {
		t.Fatalf("records went straight to the producer (%d tasks, %d event batches); they belong to the transaction", len(w.sent), len(w.events))
	}
	if len(out.recs) != 2 { // the email task and the chunk's delivery events
		t.Fatalf("collected %d records, want 2", len(out.recs))
	}
	if len(w.done) != 0 || len(pub.items) != 0 {
		t.Fatalf("dedup keys %v marked / %d items announced before the transaction committed", w.done, len(pub.items))
	}
	for _, fn := range out.then { // what the committer runs after the commit
		fn()
	}
	if len(w.done) != 2 || len(pub.items) != 1 {
		t.Fatalf("after the commit: dedup keys %v, announced %d; want both channels marked and the inbox item announced", w.done, len(pub.items))
	}
}

// countingLoader counts the users it loads, over the world's profiles.
type countingLoader struct {
	w     *world
	mu    sync.Mutex
	users int
}

func (l *countingLoader) Load(ctx context.Context, app string, users []string, need profiles.Need) (map[string]*profiles.Profile, error) {
	l.mu.Lock()
	l.users += len(users)
	l.mu.Unlock()
	return l.w.Load(ctx, app, users, need)
}

func TestLargeTopicSubscribersAreLoadedPastTheCacheAndOtherSendsThroughIt(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		subscribers          int // threshold 10
		topic                bool
		wantCached, wantBulk int
	}{
		{"topic above the threshold", 11, true, 0, 11},
		{"topic at the threshold", 10, true, 10, 0},
		{"recipient list", 11, false, 11, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			var users []string
			for i := range tc.subscribers {
				users = append(users, fmt.Sprintf("u%02d", i))
			}
			w.subs = users
			cached, bulk := &countingLoader{w: w}, &countingLoader{w: w}
			f := New(Settings{Region: "eu-west-1", ChunkSize: 4}, 10, Deps{Profiles: cached, BulkProfiles: bulk, Subscribers: w, Scheduler: w,
				Producer: w, Inbox: w, Deliveries: logWriter{w}, Dedup: dedupKeys{w}, Logger: slog.New(slog.DiscardHandler)})
			e := event(notify.Social)
			e.Channels = []string{notify.Email}
			if tc.topic {
				e.Topic = "news"
			} else {
				e.Recipients = users
			}
			if err := f.Handle(context.Background(), e); err != nil {
				t.Fatal(err)
			}
			if cached.users != tc.wantCached || bulk.users != tc.wantBulk {
				t.Fatalf("loaded through the cache %d, past it %d; want %d, %d", cached.users, bulk.users, tc.wantCached, tc.wantBulk)
			}
		})
	}
}
