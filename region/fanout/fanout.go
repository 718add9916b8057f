// Package fanout turns an accepted event into deliveries: it resolves the recipients (a list,
// or a topic's subscribers read in pages), applies each one's preferences, quiet hours, the
// tier's maximum age and the dedup keys, writes in-app items to the inbox, and hands push,
// email and SMS tasks to their dispatch topics. Every outcome is recorded in the delivery log.
package fanout

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sync/errgroup"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/region/deliverylog"
	"github.com/herald-notify/herald/region/inbox"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/profiles"
)

// inboxWriters bounds the concurrent inbox writes of one chunk.
const inboxWriters = 32

// Fan-out paths, recorded on the notification.
const (
	PathList         = "list"
	PathTopicWrite   = "topic_fanout_on_write"
	PathTopicRead    = "topic_fanout_on_read"
	PathScheduled    = "scheduled"
	schedReasonAt    = "send_at"
	schedReasonQuiet = "quiet_hours"
)

// The stage's dependencies, declared here as the small interfaces fan-out needs.
type (
	// ProfileLoader returns recipients' preferences and erasure marks, and the devices and
	// contact points need names, in one call.
	ProfileLoader interface {
		Load(ctx context.Context, appID string, users []string, need profiles.Need) (map[string]*profiles.Profile, error)
	}
	// Subscribers pages through a topic's subscribers.
	Subscribers interface {
		Count(ctx context.Context, appID, topic string) (int64, error)
		Page(ctx context.Context, appID, topic, after string, limit int) ([]string, error)
	}
	// Scheduler stores an event durably until due, and tells which region of the
	// jurisdiction fires a deferred event that came back (the first to claim it).
	Scheduler interface {
		Schedule(ctx context.Context, due time.Time, e notify.Event, reason string) error
		ClaimFire(ctx context.Context, e notify.Event) (region string, err error)
	}
	// Producer hands records durably to Kafka.
	Producer interface {
		Send(ctx context.Context, msgs ...kafka.Message) error
	}
	// Handoff takes one event's records: Send hands them on, and Then runs fn once they are
	// durable. For a Producer that is at once; the consumer's transactional hand-off runs fn
	// after the transaction that carries the records and the event's offset committed.
	Handoff interface {
		Send(ctx context.Context, msgs ...kafka.Message) error
		Then(fn func())
	}
	// Inbox writes in-app items.
	Inbox interface {
		Write(ctx context.Context, it inbox.Item) error
		WriteBatch(ctx context.Context, items []inbox.Item) error
		WriteTopicFeed(ctx context.Context, it inbox.Item) error
	}
	// Log records notifications, states and attempts.
	Log interface {
		Accepted(ctx context.Context, e notify.Event) error
		FanoutDone(ctx context.Context, id, path string, recipients int, at time.Time) error
		Write(ctx context.Context, states []deliverylog.State, attempts []deliverylog.Attempt) error
	}
	// Publisher announces new inbox items to live streams.
	Publisher interface {
		Publish(ctx context.Context, items []inbox.Item) error
	}
	// TopicPublisher announces a topic's feed record to the live streams of its subscribers;
	// a Publisher may offer it.
	TopicPublisher interface {
		PublishTopic(ctx context.Context, it inbox.Item) error
	}
	// Dedup checks and marks recipient x channel keys.
	Dedup interface {
		Key(notificationID, userID, channel string) string
		Done(ctx context.Context, keys []string) ([]string, error)
		Mark(ctx context.Context, keys, states []string) error
	}
)

// Settings tune fan-out; TopicThreshold can change at run time.
type Settings struct {
	Region    string
	ChunkSize int
	// MaxAge per tier: a delivery older than this is suppressed as expired.
	MaxAge map[string]time.Duration
	// TopicPacePerSec caps how fast a large topic's tasks are emitted, so one event never
	// floods the dispatch topics.
	TopicPacePerSec int
	// TopicChunksInFlight is how many chunks of a topic's subscribers are decided at once.
	TopicChunksInFlight int
	// InboxBatch is how many inbox rows go in one unlogged batch (1: each row alone).
	InboxBatch int
}

// Fanout processes events. It is safe for concurrent use.
type Fanout struct {
	set            Settings
	TopicThreshold atomic.Int64

	profiles   ProfileLoader
	bulk       ProfileLoader // a large topic's subscribers
	subs       Subscribers
	sched      Scheduler
	prod       Producer
	inbox      Inbox
	deliveries Log
	dedup      Dedup
	pub        Publisher
	keys       notify.Sealer
	logger     *slog.Logger
	now        func() time.Time
}

// Deps are the stores fan-out uses.
type Deps struct {
	Profiles ProfileLoader
	// BulkProfiles loads the subscribers of a topic above the threshold, each read once per
	// send, past the caches (optional: Profiles).
	BulkProfiles ProfileLoader
	Subscribers  Subscribers
	Scheduler    Scheduler
	Producer     Producer
	Inbox        Inbox
	Deliveries   Log
	Dedup        Dedup
	Publisher    Publisher // optional
	// Keys seal the records handed on for their users (nil: plain records, unit tests).
	Keys   notify.Sealer
	Logger *slog.Logger
}

// New returns a Fanout.
func New(s Settings, threshold int64, d Deps) *Fanout {
	f := &Fanout{set: s, profiles: d.Profiles, bulk: d.BulkProfiles, subs: d.Subscribers, sched: d.Scheduler, prod: d.Producer,
		inbox: d.Inbox, deliveries: d.Deliveries, dedup: d.Dedup, pub: d.Publisher, keys: d.Keys, logger: d.Logger, now: time.Now}
	if f.set.ChunkSize <= 0 {
		f.set.ChunkSize = 500
	}
	if f.bulk == nil {
		f.bulk = f.profiles
	}
	f.TopicThreshold.Store(threshold)
	return f
}

var tracer = otel.Tracer("herald/region/fanout")

// direct hands records straight to a Producer: durable when Send returns.
type direct struct{ p Producer }

func (d direct) Send(ctx context.Context, msgs ...kafka.Message) error { return d.p.Send(ctx, msgs...) }
func (d direct) Then(fn func())                                        { fn() }

// Handle processes one event completely, handing its records straight to the producer. An
// error means some work was not handed on: the caller must not commit the event's offset, and
// the retry skips what was done (dedup keys, idempotent inbox writes).
func (f *Fanout) Handle(ctx context.Context, e notify.Event) error {
	return f.HandleTo(ctx, e, direct{f.prod})
}

// HandleTo is Handle with the event's records going to out. A topic's records always go
// straight to the producer, paced, since a topic of a million subscribers cannot wait in
// memory for one transaction.
func (f *Fanout) HandleTo(ctx context.Context, e notify.Event, out Handoff) error {
	ctx, span := tracer.Start(ctx, "fanout.event")
	defer span.End()
	span.SetAttributes(attribute.String("notification.id", e.ID), attribute.String("notification.tier", e.Tier))

	if e.Deferred {
		// A deferred event fires once per jurisdiction: a second copy of its scheduled row,
		// fired by another region (after a crash between Kafka's acknowledgement and the
		// row's deletion), is dropped here. A copy in this region is a redelivery: the sent
		// keys and dedup marks skip what was done.
		owner, err := f.sched.ClaimFire(ctx, e)
		if err != nil {
			return err
		}
		if owner != f.set.Region {
			firedElsewhere.WithLabelValues(f.set.Region, e.Tier).Inc()
			f.logger.Info("deferred event already fired by another region; this copy is dropped", "notification", e.ID, "fired_by", owner)
			return nil
		}
	}
	now := f.now()
	if e.SendAt != nil && e.SendAt.After(now) && !e.Deferred {
		if err := f.deliveries.Accepted(ctx, e); err != nil {
			return err
		}
		if err := f.sched.Schedule(ctx, *e.SendAt, e, schedReasonAt); err != nil {
			return err
		}
		if err := f.scheduledEvents(ctx, out, e, now); err != nil {
			return err
		}
		stageCounter.WithLabelValues(f.set.Region, e.Tier, "all", notify.StateDeferred, schedReasonAt).Inc()
		return f.deliveries.FanoutDone(ctx, e.ID, PathScheduled, len(e.Recipients), now)
	}
	if !e.Deferred {
		if err := f.deliveries.Accepted(ctx, e); err != nil {
			return err
		}
	}
	if e.Topic == "" {
		for start := 0; start < len(e.Recipients); start += f.set.ChunkSize {
			end := min(start+f.set.ChunkSize, len(e.Recipients))
			if err := f.chunk(ctx, out, f.profiles, e, e.Recipients[start:end], ""); err != nil {
				return err
			}
		}
		if e.Deferred {
			return nil // the original event's fan-out was recorded already
		}
		return f.deliveries.FanoutDone(ctx, e.ID, PathList, len(e.Recipients), f.now())
	}
	return f.topic(ctx, e)
}

// topic fans out to a topic's subscribers: on write below the threshold; above it, the inbox
// gets one feed record (merged at read time) and the other channels' tasks go out paced.
func (f *Fanout) topic(ctx context.Context, e notify.Event) error {
	count, err := f.subs.Count(ctx, e.AppID, e.Topic)
	if err != nil {
		return err
	}
	path := PathTopicWrite
	skip := "" // a channel this fan-out leaves out for every subscriber
	loader := f.profiles
	if count > f.TopicThreshold.Load() {
		path, loader = PathTopicRead, f.bulk
		if wants(e.Channels, notify.InApp) {
			c := e.Content[notify.InApp]
			item := inbox.Item{AppID: e.AppID, Topic: e.Topic, NotificationID: e.ID, CreatedAt: e.AcceptedAt,
				Tier: e.Tier, Category: e.Category, Title: c.Title, Body: c.Body, Link: c.Link, Metadata: e.Metadata}
			if err := f.inbox.WriteTopicFeed(ctx, item); err != nil {
				return err
			}
			// Open streams of the topic's subscribers learn of it at once, as of any item.
			if tp, ok := f.pub.(TopicPublisher); ok {
				if err := tp.PublishTopic(ctx, item); err != nil {
					f.logger.Warn("announcing a topic feed item to live streams", "topic", e.Topic, "err", err)
				}
			}
		}
		skip = notify.InApp // the feed record serves every subscriber's inbox
	}
	// Pages are read in order (keyset) and decided a few at a time: the users of different
	// chunks are distinct, so their order does not matter, and the I/O of one chunk overlaps
	// another's.
	pace := newPacer(f.set.TopicPacePerSec)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, f.set.TopicChunksInFlight))
	after := ""
	total := 0
	for gctx.Err() == nil {
		page, err := f.subs.Page(gctx, e.AppID, e.Topic, after, f.set.ChunkSize)
		if err != nil {
			g.Go(func() error { return err })
			break
		}
		if len(page) == 0 {
			break
		}
		if skip == "" || !onlyChannel(e.Channels, skip) {
			g.Go(func() error { return f.chunk(gctx, direct{f.prod}, loader, e, page, skip) })
		} else {
			// In-app only, served by the feed record: no task to decide, but each subscriber
			// was still a recipient, and analytics counts them.
			g.Go(func() error { return f.acceptedOnly(gctx, e, page) })
		}
		total += len(page)
		after = page[len(page)-1]
		if path == PathTopicRead {
			if err := pace.wait(gctx, len(page)); err != nil {
				break
			}
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fanoutPath.WithLabelValues(f.set.Region, path).Inc()
	return f.deliveries.FanoutDone(ctx, e.ID, path, total, f.now())
}

// onlyChannel reports whether channels names ch and nothing else.
func onlyChannel(channels []string, ch string) bool {
	return len(channels) == 1 && channels[0] == ch
}

func wants(channels []string, ch string) bool {
	return len(channels) == 0 || slices.Contains(channels, ch)
}

// delivery is one recipient x channel being decided.
type delivery struct {
	user, channel string
	key           string
	state, reason string
	detail        string
	task          *notify.Task
	inbox         *inbox.Item
	dup           bool // handed on by an earlier attempt
}

// chunk decides and hands on every recipient x channel of a chunk of users.
func (f *Fanout) chunk(ctx context.Context, out Handoff, loader ProfileLoader, e notify.Event, users []string, skip string) error {
	need := profiles.NeedFor(f.namedChannels(e))
	need.Locale = len(e.Localized) > 0
	profs, err := loader.Load(ctx, e.AppID, users, need)
	if err != nil {
		return err
	}
	now := f.now()
	due := e.AcceptedAt
	if e.SendAt != nil && e.SendAt.After(due) {
		due = *e.SendAt
	}
	expired := now.Sub(due) > f.set.MaxAge[e.Tier] && f.set.MaxAge[e.Tier] > 0

	var ds []*delivery
	deferred := map[string][]string{} // user -> channels deferred by quiet hours
	deferUntil := map[string]time.Time{}
	for _, u := range users {
		p := profs[u]
		for _, ch := range f.channelsFor(e, p) {
			if ch == skip {
				continue
			}
			d := &delivery{user: u, channel: ch}
			ds = append(ds, d)
			switch {
			case p.Erased:
				d.state, d.reason = notify.StateSuppressed, notify.ReasonErased
			case p.Prefs.HardStop:
				d.state, d.reason = notify.StateSuppressed, notify.ReasonHardStop
			case expired:
				d.state, d.reason = notify.StateSuppressed, notify.ReasonExpired
			default:
				if ok, reason := p.Prefs.Allows(ch, e.Category); !ok {
					d.state, d.reason = notify.StateSuppressed, reason
					continue
				}
				if e.Tier != notify.Transactional && !e.Deferred {
					if until, quiet := p.Prefs.QuietUntil(now); quiet {
						d.state, d.reason, d.detail = notify.StateDeferred, schedReasonQuiet, until.UTC().Format(time.RFC3339)
						deferred[u] = append(deferred[u], ch)
						deferUntil[u] = until
						continue
					}
				}
				f.prepare(e, d, p)
			}
		}
	}

	// Dedup: skip what an earlier attempt already handed on; its state was written before it
	// was marked, so it stays as it is. The repeat is counted as a duplicate.
	var keys []string
	var pending []*delivery
	for _, d := range ds {
		if d.state == "" {
			d.key = f.dedup.Key(e.ID, d.user, d.channel)
			keys = append(keys, d.key)
			pending = append(pending, d)
		}
	}
	if done, err := f.dedup.Done(ctx, keys); err != nil {
		// At-least-once beats silence: deliver without the check, and count it.
		dedupUnavailable.WithLabelValues(f.set.Region).Inc()
		f.logger.Warn("dedup unavailable; delivering without it", "err", err)
	} else {
		for i, d := range pending {
			if done[i] != "" {
				d.state, d.task, d.inbox, d.dup = done[i], nil, nil, true
				stageCounter.WithLabelValues(f.set.Region, e.Tier, d.channel, notify.StateSuppressed, notify.ReasonDuplicate).Inc()
			}
		}
	}

	// The users this notification leaves an inbox item (their own, or the topic feed's): a
	// content-free push to them is fetched from there (Task.InboxItem).
	inboxed := map[string]bool{}
	for _, d := range ds {
		if skip == notify.InApp || (d.channel == notify.InApp && (d.inbox != nil || (d.dup && d.state == notify.StateDelivered))) {
			inboxed[d.user] = true
		}
	}

	// Deferrals first: once stored they survive any restart.
	for u, chs := range deferred {
		de := e
		de.Recipients, de.Topic, de.OnlyChannels, de.Deferred = []string{u}, "", chs, true
		until := deferUntil[u]
		de.SendAt = &until
		if err := f.sched.Schedule(ctx, until, de, schedReasonQuiet); err != nil {
			return err
		}
	}

	// Hand on: in-app items to the inbox (idempotent writes), the states, tasks to the dispatch
	// topics, then the dedup keys at once, so the window in which a crash can cause a repeat
	// is one Redis round trip wide.
	var msgs []kafka.Message
	items := make([]inbox.Item, 0, len(ds))
	if f.keys != nil {
		// The chunk's keys in one query; the tasks and the events record below are sealed
		// with them.
		if _, err := f.keys.For(ctx, e.AppID, users); err != nil {
			return err
		}
	}
	for _, d := range ds {
		switch {
		case d.inbox != nil:
			// The inbox row is the delivery itself: delivery_attempt is for provider calls.
			items = append(items, *d.inbox)
			d.state = notify.StateDelivered
		case d.task != nil:
			if due.After(e.AcceptedAt) {
				d.task.DueAt = due
			}
			d.task.InboxItem = d.channel == notify.Push && inboxed[d.user]
			m, err := notify.TaskMessage(ctx, f.keys, notify.DispatchTopic(f.set.Region, d.task.Tier, d.channel), *d.task)
			if notify.IsErased(err) {
				// Erased since the chunk's profiles were read: no key, so no task.
				d.state, d.reason, d.task = notify.StateSuppressed, notify.ReasonErased, nil
				continue
			}
			if err != nil {
				return err
			}
			msgs = append(msgs, m)
			d.state = notify.StateQueued
		}
	}
	// The states go in before the tasks do: a dispatcher can deliver a task within
	// milliseconds, and its later "delivered" must not be overwritten by our "queued". They go
	// in beside the inbox rows, not after them: a failure of either repeats the chunk, and a
	// repeat rewrites both. A repeat found in Redis writes nothing: its state was written
	// before it was marked.
	states := make([]deliverylog.State, 0, len(ds))
	at := f.now()
	for _, d := range ds {
		if d.dup {
			continue
		}
		states = append(states, deliverylog.State{NotificationID: e.ID, UserID: d.user, Channel: d.channel, State: d.state,
			Reason: d.reason, Detail: d.detail, UpdatedAt: at})
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return f.deliveries.Write(gctx, states, nil) })
	var inboxes errgroup.Group
	inboxes.SetLimit(inboxWriters)
	for _, b := range inbox.Batches(items, max(1, f.set.InboxBatch)) {
		inboxes.Go(func() error { return f.inbox.WriteBatch(gctx, b) })
	}
	g.Go(inboxes.Wait)
	if err := g.Wait(); err != nil {
		return err
	}
	written := f.now()
	for _, d := range ds {
		if d.inbox != nil {
			notify.ObserveDelivered(f.set.Region, e.Tier, notify.InApp, due, written)
		}
	}
	for _, st := range states {
		stageCounter.WithLabelValues(f.set.Region, e.Tier, st.Channel, st.State, st.Reason).Inc()
	}
	// The chunk's delivery events go out with its tasks, in the same acknowledged send, so a
	// delivery handed on always has its record before the offset is committed.
	if m, ok, err := chunkEvents(e, users, ds, profs, due, at).Message(ctx, f.keys, f.set.Region); err != nil {
		return err
	} else if ok {
		msgs = append(msgs, m)
	}
	if err := out.Send(ctx, msgs...); err != nil {
		return err
	}
	var marks, markStates []string
	for _, d := range ds {
		if d.key != "" && !d.dup && (d.state == notify.StateDelivered || d.state == notify.StateQueued) {
			marks, markStates = append(marks, d.key), append(markStates, d.state)
		}
	}
	// Marking before the records are durable could turn a crash into a loss (the repeat
	// would be suppressed), so both wait for the hand-off; the stream announcement too, so
	// a stream never shows an item whose event is then repeated.
	after := context.WithoutCancel(ctx)
	out.Then(func() {
		if err := f.dedup.Mark(after, marks, markStates); err != nil {
			dedupUnavailable.WithLabelValues(f.set.Region).Inc()
			f.logger.Warn("could not mark dedup keys; a redelivery may repeat these", "err", err)
		}
		if f.pub != nil {
			// items holds no repeat found in Redis: those were announced the first time.
			if err := f.pub.Publish(after, items); err != nil {
				f.logger.Warn("announcing inbox items to live streams", "err", err)
			}
		}
	})
	return nil
}

// acceptedOnly records a page of a large topic's subscribers as accepted when no task is
// decided for them (an in-app-only send, which the feed record serves).
func (f *Fanout) acceptedOnly(ctx context.Context, e notify.Event, users []string) error {
	b := notify.EventBatch{App: e.AppID, Tier: e.Tier, Category: e.Category, NotificationID: e.ID, DueAt: e.AcceptedAt, At: f.now()}
	for _, u := range users {
		b.Outcomes = append(b.Outcomes, notify.Outcome{User: u, Channel: notify.ChannelAll, Stage: notify.StageAccepted})
	}
	m, ok, err := b.Message(ctx, f.keys, f.set.Region)
	if err != nil || !ok {
		return err
	}
	return f.prod.Send(ctx, m)
}

// chunkEvents is the delivery-events record of a chunk: accepted per recipient (once: not for a
// re-entry after quiet hours, whose acceptance was counted when it was deferred), then each
// recipient x channel's outcome. Repeats found in Redis are left out: the attempt that handed
// them on produced their record before marking them.
func chunkEvents(e notify.Event, users []string, ds []*delivery, profs map[string]*profiles.Profile, due, at time.Time) notify.EventBatch {
	b := notify.EventBatch{App: e.AppID, Tier: e.Tier, Category: e.Category, NotificationID: e.ID, DueAt: due, At: at,
		Outcomes: make([]notify.Outcome, 0, len(users)+2*len(ds))}
	// A topic event comes back from the scheduler only after send_at, before any recipient was
	// known; a quiet-hours re-entry has a single recipient and no topic.
	if !e.Deferred || e.Topic != "" {
		for _, u := range users {
			b.Outcomes = append(b.Outcomes, notify.Outcome{User: u, Channel: notify.ChannelAll, Stage: notify.StageAccepted})
		}
	}
	for _, d := range ds {
		if d.dup {
			continue
		}
		country := ""
		if p := profs[d.user]; d.channel == notify.SMS && p != nil {
			country = notify.PhoneCountry(p.Phone)
		}
		o := notify.Outcome{User: d.user, Channel: d.channel, Country: country}
		if d.state == notify.StateDelivered { // in-app: handed on and delivered at once
			o.Stage = notify.StageFannedOut
			b.Outcomes = append(b.Outcomes, o)
			o.Stage = notify.StageDelivered
			b.Outcomes = append(b.Outcomes, o)
			continue
		}
		o.Stage, o.Reason = notify.StageOf(d.state, d.reason)
		b.Outcomes = append(b.Outcomes, o)
	}
	return b
}

// scheduledEvents records a list event put off to its send_at: each recipient accepted and
// deferred. A topic's recipients are known only when it comes back (chunkEvents counts them
// then).
func (f *Fanout) scheduledEvents(ctx context.Context, out Handoff, e notify.Event, now time.Time) error {
	var msgs []kafka.Message
	for start := 0; start < len(e.Recipients); start += f.set.ChunkSize {
		b := notify.EventBatch{App: e.AppID, Tier: e.Tier, Category: e.Category, NotificationID: e.ID, DueAt: e.AcceptedAt, At: now}
		for _, u := range e.Recipients[start:min(start+f.set.ChunkSize, len(e.Recipients))] {
			b.Outcomes = append(b.Outcomes,
				notify.Outcome{User: u, Channel: notify.ChannelAll, Stage: notify.StageAccepted},
				notify.Outcome{User: u, Channel: notify.ChannelAll, Stage: notify.StageDeferred, Reason: schedReasonAt})
		}
		m, ok, err := b.Message(ctx, f.keys, f.set.Region)
		if err != nil {
			return err
		}
		if ok {
			msgs = append(msgs, m)
		}
	}
	return out.Send(ctx, msgs...)
}

// namedChannels returns the channels the event names (narrowed for a deferred event), or none
// for every channel each user has.
func (f *Fanout) namedChannels(e notify.Event) []string {
	if len(e.OnlyChannels) > 0 {
		return e.OnlyChannels
	}
	return e.Channels
}

// channelsFor returns the channels to decide for a user: those the event names (narrowed for a
// deferred event), or by default every channel the user has.
func (f *Fanout) channelsFor(e notify.Event, p *profiles.Profile) []string {
	if named := f.namedChannels(e); len(named) > 0 {
		return named
	}
	out := []string{notify.InApp}
	if len(p.Devices) > 0 {
		out = append(out, notify.Push)
	}
	if p.Email != "" {
		out = append(out, notify.Email)
	}
	if p.Phone != "" {
		out = append(out, notify.SMS)
	}
	return out
}

// prepare builds the inbox item or the dispatch task of a delivery, or suppresses it when the
// user has no address for the channel. The content is the variant the user's locale picks
// for the channel (notify.Event.ContentFor).
func (f *Fanout) prepare(e notify.Event, d *delivery, p *profiles.Profile) {
	c := e.ContentFor(p.Locale)[d.channel]
	if d.channel == notify.InApp {
		d.inbox = &inbox.Item{AppID: e.AppID, UserID: d.user, NotificationID: e.ID, CreatedAt: e.AcceptedAt, Tier: e.Tier,
			Category: e.Category, Title: c.Title, Body: c.Body, Link: c.Link, Metadata: e.Metadata}
		return
	}
	var target notify.Target
	switch d.channel {
	case notify.Push:
		if len(p.Devices) == 0 {
			d.state, d.reason = notify.StateSuppressed, notify.ReasonNoDevice
			return
		}
		target.Devices = p.Devices
	case notify.Email:
		if p.Email == "" {
			d.state, d.reason = notify.StateSuppressed, notify.ReasonNoAddress
			return
		}
		if p.EmailSuppressed != "" { // on the suppression list: bounced, complained, unsubscribed
			d.state, d.reason = notify.StateSuppressed, p.EmailSuppressed
			return
		}
		target.Email = p.Email
	case notify.SMS:
		if p.Phone == "" {
			d.state, d.reason = notify.StateSuppressed, notify.ReasonNoAddress
			return
		}
		if p.PhoneSuppressed != "" {
			d.state, d.reason = notify.StateSuppressed, p.PhoneSuppressed
			return
		}
		target.Phone = p.Phone
	}
	expires := time.Time{}
	if age := f.set.MaxAge[e.Tier]; age > 0 {
		base := e.AcceptedAt
		if e.SendAt != nil && e.SendAt.After(base) {
			base = *e.SendAt
		}
		expires = base.Add(age)
	}
	d.task = &notify.Task{NotificationID: e.ID, AppID: e.AppID, Tier: e.Tier, Category: e.Category, UserID: d.user, Channel: d.channel,
		Content: c, Target: target, Metadata: e.Metadata, AcceptedAt: e.AcceptedAt, ExpiresAt: expires}
}

// pacer spaces out batches so that at most perSec items go out each second.
type pacer struct {
	perSec int
	start  time.Time
	sent   int
}

func newPacer(perSec int) *pacer { return &pacer{perSec: perSec, start: time.Now()} }

func (p *pacer) wait(ctx context.Context, n int) error {
	if p.perSec <= 0 {
		return nil
	}
	p.sent += n
	ahead := time.Duration(float64(p.sent)/float64(p.perSec)*float64(time.Second)) - time.Since(p.start)
	if ahead <= 0 {
		return nil
	}
	t := time.NewTimer(ahead)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ErrPoison marks a record that can never be processed (it does not decode).
var ErrPoison = errors.New("undecodable event")
