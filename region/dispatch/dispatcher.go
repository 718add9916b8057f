// Package dispatch is the region's dispatch role: one consumer group per tier and channel (push,
// email, SMS) hands each task to its provider through the real client library (APNs via
// sideshow/apns2, FCM via the Firebase Admin SDK, SMTP, a Twilio-compatible API), records every
// attempt, and retries transient failures through durable retry topics, then a dead-letter topic.
//
// Tier isolation: every tier x channel has its own dispatch topic,
// <region>.dispatch.<tier>.<channel>, its own retry topics and its own consumer groups, each with
// its own in-flight window (tiers.<tier>.<channel>.concurrency) and its own Kafka client (a
// partition held back by a full window stalls only its own client's fetches). A marketing
// backlog therefore never queues in front of a transactional task, nor takes its window. What
// the tiers still share, the providers' rate limits and the Redis calls around each send, gives
// the transactional tier precedence (ratelimit.go, batch.go).
//
// Retry design: each tier and channel has RetryLevels retry topics,
// <region>.dispatch.<tier>.<channel>.retry.<n>, and each channel one dead-letter topic,
// <region>.dispatch.<channel>.dlq (nothing waits on it, so the tiers share it). Retry k of a task
// goes to level min(k, len(retry.delays)), as a Retry record carrying its not-before time (the
// backoff with jitter, never before the provider's Retry-After). Records of one level have about
// the same delay, so their not-before times arrive nearly in order: the level's consumer holds
// each partition at its head record until that record is due (sleeping, without committing),
// then sends it. Nothing is in memory only: a crash while holding re-reads the record. A task
// ends delivered, failed (a permanent refusal) or, after retry.max_attempts, on the dead-letter
// topic as dead_lettered.
//
// Migration: the per-channel topics of the layout before tiers (<region>.dispatch.<channel> and
// its .retry.<n>) are drained while they exist: their old consumer groups forward each record,
// as it is, to its tier's topic of the same level (legacy.go).
//
// At-least-once: a record's offset is marked only after its outcome is in the delivery log and,
// for retries and dead letters, the Retry record was acknowledged by Kafka. Within a partition
// up to the pool's concurrency tasks are in flight; offsets are marked in order, so a crash
// re-sends at most that window.
package dispatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/region/deliverylog"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/suppress"
)

// Channels are the channels dispatch consumes.
var Channels = []string{notify.Push, notify.Email, notify.SMS}

// RetryTopic is a tier's and channel's retry topic of one level:
// "eu-west-1.dispatch.transactional.push.retry.1".
func RetryTopic(region, tier, channel string, level int) string {
	return notify.DispatchTopic(region, tier, channel) + ".retry." + strconv.Itoa(level)
}

// LegacyRetryTopic is a channel's retry topic of one level before tiers had their own:
// "eu-west-1.dispatch.push.retry.1" (drained, never produced to).
func LegacyRetryTopic(region, channel string, level int) string {
	return notify.LegacyDispatchTopic(region, channel) + ".retry." + strconv.Itoa(level)
}

// DLQTopic is a channel's dead-letter topic, shared by the tiers: "eu-west-1.dispatch.push.dlq".
func DLQTopic(region, channel string) string { return region + ".dispatch." + channel + ".dlq" }

// Topics lists the topics dispatch needs beyond the dispatch topics themselves: the retry
// levels of each tier and channel, and the dead-letter topic of each channel.
func Topics(region string, retryPartitions, deadLetterPartitions int32) []kafka.Topic {
	var out []kafka.Topic
	for _, ch := range Channels {
		for _, tier := range notify.Tiers {
			for l := 1; l <= RetryLevels; l++ {
				out = append(out, kafka.Topic{Name: RetryTopic(region, tier, ch, l), Partitions: retryPartitions})
			}
		}
		out = append(out, kafka.Topic{Name: DLQTopic(region, ch), Partitions: deadLetterPartitions})
	}
	return out
}

// ConsumerGroup is a consumer group of the dispatch role; each is named as the topic it consumes.
type ConsumerGroup struct {
	Group, Topic string
	// Tier is "" for a legacy group.
	Tier, Channel string
	// Level is 0 for a dispatch topic, else the retry level.
	Level int
	// Legacy marks the group of a per-channel topic of the layout before tiers: it exists only
	// in a region upgraded from it, until the topic is deleted.
	Legacy bool
}

// ConsumerGroups lists every consumer group a dispatcher with retry.delays of retryLevels
// entries may run: per tier and channel, the dispatch topic's and each retry level's, then the
// legacy groups that drain the old per-channel topics where those still exist.
func ConsumerGroups(region string, retryLevels int) []ConsumerGroup {
	var out []ConsumerGroup
	for _, ch := range Channels {
		for _, tier := range notify.Tiers {
			t := notify.DispatchTopic(region, tier, ch)
			out = append(out, ConsumerGroup{Group: t, Topic: t, Tier: tier, Channel: ch})
			for l := 1; l <= retryLevels; l++ {
				t := RetryTopic(region, tier, ch, l)
				out = append(out, ConsumerGroup{Group: t, Topic: t, Tier: tier, Channel: ch, Level: l})
			}
		}
	}
	for _, ch := range Channels {
		t := notify.LegacyDispatchTopic(region, ch)
		out = append(out, ConsumerGroup{Group: t, Topic: t, Channel: ch, Legacy: true})
		for l := 1; l <= RetryLevels; l++ {
			t := LegacyRetryTopic(region, ch, l)
			out = append(out, ConsumerGroup{Group: t, Topic: t, Channel: ch, Level: l, Legacy: true})
		}
	}
	return out
}

// Retry is the record on the retry and dead-letter topics.
type Retry struct {
	// Task is what is left to deliver (for push, the devices still to try); Task.Attempt is
	// the number of attempts made.
	Task notify.Task `json:"task"`
	// NotBefore is when the retry may be sent.
	NotBefore time.Time `json:"not_before"`
	// Delivered records that an earlier attempt delivered to another device of the task, so
	// the recipient x channel state stays delivered.
	Delivered bool      `json:"delivered,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	At        time.Time `json:"at"`
}

// LogWriter records states and attempts (*deliverylog.Log).
type LogWriter interface {
	Write(ctx context.Context, states []deliverylog.State, attempts []deliverylog.Attempt) error
}

// ContentStore keeps the content of a content-free push (*pushstore.Store).
type ContentStore interface {
	Put(ctx context.Context, t notify.Task) error
}

// Deactivator marks a device token inactive.
type Deactivator interface {
	Deactivate(ctx context.Context, appID, platform, token string) error
}

// Producer produces records durably (*kafka.Producer).
type Producer interface {
	Send(ctx context.Context, msgs ...kafka.Message) error
}

// Deps are what the dispatcher uses.
type Deps struct {
	Kafka      kafka.Config
	Deliveries LogWriter
	Devices    Deactivator
	// Producer is optional: Run opens a kafka.Producer on Kafka when it is nil.
	Producer Producer
	Logger   *slog.Logger
	// Redis, when set, holds the providers' token buckets shared by every dispatcher of the
	// region (keys "<RedisPrefix>rl:<provider>"). Nil: no provider is rate limited.
	Redis *goredis.Client
	// RedisPrefix is the region's Redis key prefix (redis.Config.Prefix, ending in ":").
	RedisPrefix string
	// MinimalPush, asked on every push, reports whether the region's jurisdiction wants
	// content-free pushes (its push_content is minimal in the residency policy): APNs and FCM
	// then get the notification id and what wakes the app, nothing of the content. Nil: full.
	MinimalPush func() bool
	// PushContent, when set, keeps the content of every content-free push in the region for
	// the app to fetch by notification id (the push itself carries none of it). The content is
	// stored before the push is sent; a push whose content could not be stored is retried
	// like a provider's transient failure, never sent with nothing to fetch.
	PushContent ContentStore
	// UnsubscribeLink returns the one-click unsubscribe link (RFC 8058) of a marketing or
	// social email task: an HTTPS link to the jurisdiction's gateway with a token only this
	// region can open. Nil, or "" for a task: the email goes without List-Unsubscribe, counted
	// in herald_email_without_unsubscribe_total.
	UnsubscribeLink func(t notify.Task) string
	// StatusCallback returns the URL an SMS provider (named) posts the task's status
	// callbacks to: the jurisdiction's gateway, /v1/receipts/twilio/{token} (region/receipts).
	// Nil, or "" for a task: none asked for; the text counts as delivered once the provider
	// took it.
	StatusCallback func(t notify.Task, provider string) string
	// EmailReceipt returns the receipt token an SMTP provider whose relay reports events
	// (events: sendgrid) puts in the task's X-SMTPAPI unique_args, for SendGrid to echo in
	// its events (region/receipts). Nil, or "" for a task: none; the email counts as
	// delivered once the relay took it.
	EmailReceipt func(t notify.Task, provider string) string
	// Suppress, when set, takes the addresses that bounced for good (or after repeated soft
	// bounces) or whose owner replied STOP onto the app's suppression list, so fan-out
	// suppresses the next send to them (region/suppress). Nil: nothing is suppressed.
	Suppress Suppressor
	// Keys open the tasks and seal the retries, dead letters and delivery events for their
	// users (nil: plain records, unit tests).
	Keys notify.Sealer
	// Credentials, when set, holds the apps' own provider credentials of the region's
	// jurisdiction (Jurisdiction): an app's sends of a kind it stored one of go through its own
	// account (Config.AppCredentials). Nil: every send goes through the region's providers.
	Credentials  CredentialLoader
	Jurisdiction string
	// KeysConcurrency bounds the social and marketing consumers' Keys.For calls at once
	// (keys.go), so they never hold the whole Postgres pool the transactional tier and the API
	// share with them (0: unbounded). The region sets half its pool.
	KeysConcurrency int
}

// Suppressor keeps the suppression lists (region/suppress.Store).
type Suppressor interface {
	// Reason is the list's reason for the address, "" when it is not suppressed.
	Reason(ctx context.Context, app, channel, address string) (string, error)
	Suppress(ctx context.Context, app, user, channel, address, reason, detail string) error
	SoftBounce(ctx context.Context, app, user, channel, address, notification, detail string) (bool, error)
}

// DeviceStore deactivates device tokens in the region's Postgres database.
type DeviceStore struct{ db *pgxpool.Pool }

// NewDeviceStore returns a DeviceStore.
func NewDeviceStore(db *pgxpool.Pool) *DeviceStore { return &DeviceStore{db: db} }

// Deactivate marks the token inactive, so fan-out no longer targets it.
func (s *DeviceStore) Deactivate(ctx context.Context, appID, platform, token string) error {
	if _, err := s.db.Exec(ctx, `UPDATE devices SET is_active = false WHERE app_id = $1 AND platform = $2 AND token = $3`,
		appID, platform, token); err != nil {
		return fmt.Errorf("deactivating device token: %w", err)
	}
	return nil
}

// Dispatcher is the dispatch role of one region.
type Dispatcher struct {
	cfg    Config
	region string
	deps   Deps
	log    *slog.Logger
	// routes by provider kind: "apns", "fcm", "smtp", "sms".
	routes map[string]*route
	now    func() time.Time
	rnd    func() float64
	sent   *sentKeys // nil without Redis
	// recovered by channel: when one of its providers came back after an outage.
	recovered map[string]*recovery
	// apps caches the routes of apps' own accounts (nil: Deps.Credentials is nil).
	apps *appRoutes
}

// recovery tells a channel's retry consumers that one of its providers is back: its breaker
// closed again after a successful half-open probe. Retries written while it was failing are due
// at once then, not at their backoff (up to minutes), so deliveries resume within seconds of a
// provider's return. The storm stays bounded: released retries go through the channel's window
// and rate limit like any task, each spends one of its attempts, and only a recovery (a probe
// that succeeded) releases anything.
type recovery struct {
	mu   sync.Mutex
	at   time.Time     // the latest recovery
	next chan struct{} // closed at the next one
}

func newRecovery() *recovery { return &recovery{next: make(chan struct{})} }

func (r *recovery) mark(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at = now
	close(r.next)
	r.next = make(chan struct{})
}

// since reports whether the channel recovered after t, and a channel closed at the next
// recovery.
func (r *recovery) since(t time.Time) (bool, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.at.After(t), r.next
}

// channelOf is the channel a provider kind serves.
func channelOf(kind string) string {
	switch kind {
	case KindAPNs, KindFCM:
		return notify.Push
	case KindSMTP:
		return notify.Email
	}
	return notify.SMS
}

// Provider kinds.
const (
	KindAPNs = "apns"
	KindFCM  = "fcm"
	KindSMTP = "smtp"
	KindSMS  = "sms"
)

// New builds the dispatcher and the provider clients (reading keys and CA files, so a bad file
// fails the start).
func New(cfg Config, region string, d Deps) (*Dispatcher, error) {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	provs := map[string][2]Provider{}
	name := providerName
	if a := cfg.Push.APNs; a.Endpoint != "" {
		var pair [2]Provider
		for i, c := range []*APNsConfig{&a, a.Secondary} {
			if c == nil {
				continue
			}
			p, err := newAPNs(*c, name(c.Name, "apns", i == 1), d.MinimalPush)
			if err != nil {
				return nil, err
			}
			pair[i] = p
		}
		provs[KindAPNs] = pair
	}
	if f := cfg.Push.FCM; f.Endpoint != "" {
		var pair [2]Provider
		for i, c := range []*FCMConfig{&f, f.Secondary} {
			if c == nil {
				continue
			}
			p, err := newFCM(*c, name(c.Name, "fcm", i == 1), d.MinimalPush)
			if err != nil {
				return nil, err
			}
			pair[i] = p
		}
		provs[KindFCM] = pair
	}
	if s := cfg.Email.SMTP; s.Addr != "" {
		var pair [2]Provider
		for i, c := range []*SMTPConfig{&s, s.Secondary} {
			if c == nil {
				continue
			}
			p, err := newSMTP(*c, name(c.Name, "smtp", i == 1), region, d.UnsubscribeLink)
			if err == nil && c.Events == EventsSendGrid {
				p.receipt = d.EmailReceipt
			}
			if err != nil {
				return nil, err
			}
			pair[i] = p
		}
		provs[KindSMTP] = pair
	}
	if s := cfg.SMS.Twilio; s.BaseURL != "" {
		var pair [2]Provider
		for i, c := range []*TwilioConfig{&s, s.Secondary} {
			if c != nil {
				pair[i] = newTwilio(*c, name(c.Name, "twilio", i == 1), d.StatusCallback)
			}
		}
		provs[KindSMS] = pair
	}
	return newDispatcher(cfg, region, d, provs), nil
}

// newDispatcher wires providers (primary, optional secondary) by kind behind their breakers.
func newDispatcher(cfg Config, region string, d Deps, provs map[string][2]Provider) *Dispatcher {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Keys != nil {
		d.Keys = newLimitedKeys(d.Keys, d.KeysConcurrency)
	}
	ds := &Dispatcher{cfg: cfg, region: region, deps: d, log: d.Logger.With("role", "dispatch"), routes: map[string]*route{}, sent: newSentKeys(d.Redis, d.RedisPrefix),
		now: time.Now, rnd: jitterRand, recovered: map[string]*recovery{}}
	for _, ch := range Channels {
		ds.recovered[ch] = newRecovery()
	}
	if d.Credentials != nil {
		ds.apps = &appRoutes{d: ds, cfg: cfg.AppCredentials, loader: d.Credentials, juris: d.Jurisdiction, entries: map[appKey]*appEntry{}}
	}
	for kind, pair := range provs {
		if pair[0] == nil {
			continue
		}
		limits := cfg.rateLimits()
		guard := func(p Provider) *guarded {
			ch := channelOf(kind)
			g := newGuarded(p, cfg.Breaker, region, ds.log, func() {
				ds.log.Info("provider back: releasing the channel's held retries", "provider", p.Name(), "channel", ch)
				ds.recovered[ch].mark(ds.now())
			})
			g.timeout = cfg.SendTimeout
			g.sent = ds.sent
			g.limit = NewRateLimiter(d.Redis, d.RedisPrefix, region, p.Name(), limits[p.Name()], ds.log)
			if g.limit != nil {
				ds.log.Info("provider rate limited", "provider", p.Name(), "key", g.limit.Key(),
					"per_second", limits[p.Name()].PerSecond, "burst", limits[p.Name()].Burst)
			}
			return g
		}
		r := &route{primary: guard(pair[0])}
		if pair[1] != nil {
			r.secondary = guard(pair[1])
		}
		ds.routes[kind] = r
	}
	return ds
}

// channelEnabled says whether any provider serves the channel.
func (d *Dispatcher) channelEnabled(ch string) bool {
	switch ch {
	case notify.Push:
		return d.routes[KindAPNs] != nil || d.routes[KindFCM] != nil
	case notify.Email:
		return d.routes[KindSMTP] != nil
	case notify.SMS:
		return d.routes[KindSMS] != nil
	}
	return false
}

// Run consumes, for every channel that has a provider, each tier's dispatch topic and retry
// levels, and drains the channel's legacy topics where they exist, until ctx ends; then each
// consumer finishes or leaves uncommitted what it holds.
func (d *Dispatcher) Run(ctx context.Context) error {
	if d.deps.Producer == nil {
		p, err := kafka.NewProducer(d.deps.Kafka)
		if err != nil {
			return err
		}
		defer p.Close()
		d.deps.Producer = p
	}
	g, ctx := errgroup.WithContext(ctx)
	// The role runs until the process stops, even with nothing to consume: a task that returns
	// stops the whole process.
	g.Go(func() error { <-ctx.Done(); return nil })
	var channels []string
	for _, ch := range Channels {
		if !d.channelEnabled(ch) {
			d.log.Info("dispatch channel has no provider; not consumed", "channel", ch)
			continue
		}
		channels = append(channels, ch)
		for _, tier := range notify.Tiers {
			n := d.cfg.Tiers.Tier(tier).Pool(ch).Concurrency
			topic := notify.DispatchTopic(d.region, tier, ch)
			main := &consumer{d: d, tier: tier, channel: ch, topic: topic, group: topic, concurrency: n}
			g.Go(func() error { return main.run(ctx) })
			for l := 1; l <= len(d.cfg.Retry.Delays); l++ {
				topic := RetryTopic(d.region, tier, ch, l)
				rc := &consumer{d: d, tier: tier, channel: ch, topic: topic, group: topic, concurrency: n, level: l}
				g.Go(func() error { return rc.run(ctx) })
			}
		}
	}
	if len(channels) > 0 {
		g.Go(func() error { return d.drainLegacy(ctx, g, channels) })
	}
	return g.Wait()
}

// unit is one send: a device of a push task, or the address or number of the others.
type unit struct {
	kind   string
	to     string
	device *notify.Device
}

func (d *Dispatcher) units(t notify.Task) []unit {
	switch t.Channel {
	case notify.Push:
		var out []unit
		for i := range t.Target.Devices {
			dev := t.Target.Devices[i]
			kind := KindFCM
			if dev.Platform == "ios" {
				kind = KindAPNs
			}
			out = append(out, unit{kind: kind, to: dev.Token, device: &dev})
		}
		return out
	case notify.Email:
		if t.Target.Email != "" {
			return []unit{{kind: KindSMTP, to: t.Target.Email}}
		}
	case notify.SMS:
		if t.Target.Phone != "" {
			return []unit{{kind: KindSMS, to: t.Target.Phone}}
		}
	}
	return nil
}

// result of one unit.
type result struct {
	u        unit
	provider string
	receipt  Receipt
	err      *SendError
	at       time.Time
	already  bool // accepted by the provider before a crash; not sent again
}

// process handles one task (from the dispatch topic, or due from a retry topic) to its durable
// outcome. It returns an error when ctx ended first (the record must then not be marked), or
// when recording the outcome failed permanently or past failure_retry (the consumer then
// dead-letters the record).
var tracer = otel.Tracer("herald/region/dispatch")

func (d *Dispatcher) process(ctx context.Context, t notify.Task, prev *Retry) error {
	ctx, span := tracer.Start(ctx, "dispatch.task", trace.WithAttributes(
		attribute.String("notification.id", t.NotificationID), attribute.String("channel", t.Channel), attribute.Int("attempt", t.Attempt+1)))
	defer span.End()
	now := d.now()
	state := func(s, reason, detail string) deliverylog.State {
		return deliverylog.State{NotificationID: t.NotificationID, UserID: t.UserID, Channel: t.Channel, State: s, Reason: reason, Detail: detail, UpdatedAt: d.now()}
	}
	if !t.ExpiresAt.IsZero() && now.After(t.ExpiresAt) {
		tasksTotal.WithLabelValues(d.region, t.Channel, "expired").Inc()
		if err := d.write(ctx, []deliverylog.State{state(notify.StateSuppressed, notify.ReasonExpired, "")}, nil); err != nil {
			return err
		}
		return d.handOn(ctx, nil, d.events(t, notify.StageExpired, ""))
	}
	units := d.units(t)
	if len(units) == 0 {
		reason := notify.ReasonNoAddress
		if t.Channel == notify.Push {
			reason = notify.ReasonNoDevice
		}
		tasksTotal.WithLabelValues(d.region, t.Channel, "no_target").Inc()
		if err := d.write(ctx, []deliverylog.State{state(notify.StateSuppressed, reason, "")}, nil); err != nil {
			return err
		}
		return d.handOn(ctx, nil, d.events(t, notify.StageSuppressed, reason))
	}
	// An address put on the suppression list since fan-out read it (another notification
	// bounced meanwhile, or this task's own earlier attempts soft-bounced to the limit) is not
	// sent to: the list is read again for every email and SMS task.
	if reason, err := d.suppressedTarget(ctx, t); err != nil {
		return err
	} else if reason != "" {
		tasksTotal.WithLabelValues(d.region, t.Channel, "suppressed").Inc()
		if err := d.write(ctx, []deliverylog.State{state(notify.StateSuppressed, reason, "")}, nil); err != nil {
			return err
		}
		return d.handOn(ctx, nil, d.events(t, notify.StageSuppressed, reason))
	}
	attemptNo := t.Attempt + 1
	// A content-free push brings only the notification id: its content must be in the region
	// before the push can reach the device, or the app has nothing to fetch. A notification
	// that left the user an inbox item is fetched from there; any other gets a copy.
	var storeErr *SendError
	if t.Channel == notify.Push && !t.InboxItem && d.deps.PushContent != nil && d.deps.MinimalPush != nil && d.deps.MinimalPush() {
		if err := d.deps.PushContent.Put(ctx, t); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			d.log.Warn("storing push content failed; the push is retried", "notification", t.NotificationID, "err", err)
			storeErr = &SendError{Class: Transient, Reason: "push_content_store", Err: err}
		}
	}
	var results []result
	// Each accepted send is marked at once; the marks are awaited with the task's records
	// below, before the record may be committed.
	var marks []func()
	for _, u := range units {
		r := result{u: u}
		rt, routeErr := d.routeFor(ctx, t.AppID, u.kind)
		key := ""
		if d.sent != nil {
			key = d.sent.key(t.NotificationID, t.UserID, t.Channel, u.to)
		}
		if storeErr != nil {
			r.provider, r.err = u.kind, storeErr
		} else if routeErr != nil {
			r.provider, r.err = u.kind, routeErr
		} else if rt == nil {
			if id, ok := d.sent.sent(ctx, key, t.Tier == notify.Transactional); ok { // sent before its provider was unconfigured
				r.already, r.receipt.MessageID, r.at = true, id, d.now()
				results = append(results, r)
				continue
			}
			r.provider = u.kind
			r.err = &SendError{Class: Permanent, Reason: "no_provider", Err: fmt.Errorf("no %s provider configured", u.kind)}
		} else {
			// The send checks its sent key (a send accepted before a crash is not repeated) and
			// waits for its provider's rate-limit token (until ctx ends), then is bounded by
			// send_timeout.
			release, err := d.sent.hold(ctx, key, sendsHeld.WithLabelValues(d.region, t.Channel).Inc)
			if err != nil {
				return err // shutting down while another copy was being sent: leave the record uncommitted
			}
			sctx, sspan := tracer.Start(ctx, "provider.send", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attribute.String("provider.kind", u.kind)))
			r.provider, r.receipt, r.already, err = rt.send(sctx, t, u.to, key)
			sspan.SetAttributes(attribute.String("provider", r.provider), attribute.String("provider.status", r.receipt.Status), attribute.Bool("already_sent", r.already))
			if err != nil {
				sspan.SetStatus(codes.Error, err.Error())
			}
			sspan.End()
			switch {
			case err != nil:
				r.err = classify(err)
				release()
			case !r.already && key != "":
				wait := d.sent.mark(ctx, key, r.receipt.MessageID)
				marks = append(marks, wait)
				go func() { wait(); release() }() // the next copy checks once the mark is in
			default:
				release()
			}
		}
		if ctx.Err() != nil {
			return ctx.Err() // shutting down mid-task: leave the record uncommitted
		}
		r.at = d.now()
		results = append(results, r)
	}

	delivered := prev != nil && prev.Delivered
	var retry []notify.Device
	var retryAfter time.Duration
	var lastErr string
	var attempts []deliverylog.Attempt
	permanentDetail := ""
	failReason := ""    // the failed stage's reason (analytics/wire's): permanent, gone, no_provider
	dispatched := false // a provider was called
	receipted := false  // and will report what became of the message (region/receipts)
	dead := attemptNo >= d.cfg.Retry.MaxAttempts
	for _, r := range results {
		if r.already {
			delivered = true // recorded when it was sent
			continue
		}
		if r.err == nil || r.err.Reason != "no_provider" {
			dispatched = true
		}
		bounced, err := d.bounce(ctx, t, r)
		if err != nil {
			return err
		}
		a := deliverylog.Attempt{NotificationID: t.NotificationID, At: r.at, UserID: t.UserID, Channel: t.Channel,
			Provider: r.provider, ProviderMessageID: r.receipt.MessageID, ProviderStatus: r.receipt.Status}
		switch {
		case r.err == nil:
			a.Outcome = notify.StateDelivered
			if r.receipt.Receipted {
				a.Outcome, receipted = notify.StateDispatched, true
			}
			delivered = true
		case r.err.Class == Transient:
			a.Outcome = "retrying"
			if dead {
				a.Outcome = notify.StateDeadLettered
			}
			a.ProviderStatus, a.Error = providerStatus(r.err), r.err.Error()
			retryAfter = max(retryAfter, r.err.RetryAfter)
			lastErr = a.Error
			if r.u.device != nil {
				retry = append(retry, *r.u.device)
			} else {
				retry = append(retry, notify.Device{})
			}
		default:
			a.Outcome = notify.StateFailed
			a.ProviderStatus, a.Error = providerStatus(r.err), r.err.Error()
			permanentDetail = a.Error
			failReason = r.err.Class.String()
			if r.err.Reason == "no_provider" {
				failReason = "no_provider"
			}
			if bounced {
				failReason = "bounced"
			}
			if r.err.Class == Gone && r.u.device != nil {
				dev := *r.u.device
				if err := d.durably(ctx, "deactivating token", func() error {
					return d.deps.Devices.Deactivate(ctx, t.AppID, dev.Platform, dev.Token)
				}, d.warn("deactivating device token failed; retrying")); err != nil {
					return err
				}
				deactivations.WithLabelValues(d.region, r.provider).Inc()
				d.log.Info("device token deactivated after provider feedback", "app", t.AppID, "platform", dev.Platform,
					"device", dev.DeviceID, "provider", r.provider, "reason", r.err.Reason)
			}
		}
		attemptsTotal.WithLabelValues(d.region, t.Channel, r.provider, a.Outcome).Inc()
		attempts = append(attempts, a)
	}

	var states []deliverylog.State
	var handoff *kafka.Message
	ev := d.events(t, "", "")
	if dispatched {
		ev.Outcomes = append(ev.Outcomes, outcome(t, notify.StageDispatched, ""))
	}
	firstDelivered := delivered && (prev == nil || !prev.Delivered)
	if firstDelivered && !receipted { // else the provider's receipt says delivered, or not
		ev.Outcomes = append(ev.Outcomes, outcome(t, notify.StageDelivered, ""))
	}
	switch {
	case len(retry) == 0 && delivered:
		if receipted {
			states = append(states, state(notify.StateDispatched, "", ""))
		} else {
			states = append(states, state(notify.StateDelivered, "", ""))
		}
		if firstDelivered {
			notify.ObserveDelivered(d.region, t.Tier, t.Channel, t.Due(), d.now())
		}
		tasksTotal.WithLabelValues(d.region, t.Channel, "delivered").Inc()
	case len(retry) == 0:
		states = append(states, state(notify.StateFailed, "", permanentDetail))
		ev.Outcomes = append(ev.Outcomes, outcome(t, notify.StageFailed, cmp.Or(failReason, "permanent")))
		tasksTotal.WithLabelValues(d.region, t.Channel, "failed").Inc()
	default:
		left := t
		left.Attempt = attemptNo
		if t.Channel == notify.Push {
			left.Target.Devices = retry
		}
		rec := Retry{Task: left, Delivered: delivered, LastError: lastErr, At: d.now()}
		topic := DLQTopic(d.region, t.Channel)
		if dead {
			if !delivered {
				states = append(states, state(notify.StateDeadLettered, "", lastErr))
				ev.Outcomes = append(ev.Outcomes, outcome(t, notify.StageDeadLettered, "transient"))
			}
			tasksTotal.WithLabelValues(d.region, t.Channel, "dead_lettered").Inc()
		} else {
			if delivered {
				states = append(states, state(notify.StateDelivered, "", ""))
				if prev == nil || !prev.Delivered {
					notify.ObserveDelivered(d.region, t.Tier, t.Channel, t.Due(), d.now())
				}
			}
			rec.NotBefore = d.now().Add(d.cfg.Retry.Backoff(attemptNo, retryAfter, d.rnd()))
			topic = RetryTopic(d.region, t.Tier, t.Channel, d.cfg.Retry.Level(attemptNo))
			tasksTotal.WithLabelValues(d.region, t.Channel, "retried").Inc()
		}
		var m kafka.Message
		err := d.durably(ctx, "sealing retry", func() (err error) {
			m, err = RetryMessage(ctx, d.deps.Keys, topic, rec)
			return err
		}, d.warn("sealing retry failed; retrying"))
		switch {
		case notify.IsErased(err):
			// The recipient was erased meanwhile: no key, so no retry or dead letter.
			notify.DroppedErased(stageOf(prev), 1)
		case err != nil:
			return err
		default:
			handoff = &m
		}
	}
	err := d.record(ctx, states, attempts, handoff, ev)
	for _, wait := range marks {
		wait()
	}
	return err
}

// record makes a task's outcome durable: the delivery log, then the retry or dead-letter record
// with the delivery events. Without a retry or dead letter, nothing depends on the order of the
// log and the events, and they are written at the same time.
func (d *Dispatcher) record(ctx context.Context, states []deliverylog.State, attempts []deliverylog.Attempt, handoff *kafka.Message, ev notify.EventBatch) error {
	if handoff != nil {
		if err := d.write(ctx, states, attempts); err != nil {
			return err
		}
		return d.handOn(ctx, handoff, ev)
	}
	events := make(chan error, 1)
	go func() { events <- d.handOn(ctx, nil, ev) }()
	err := d.write(ctx, states, attempts)
	return errors.Join(err, <-events)
}

// events starts the delivery-events record of a task's outcome, with one outcome when stage is
// set.
func (d *Dispatcher) events(t notify.Task, stage, reason string) notify.EventBatch {
	b := notify.EventBatch{App: t.AppID, Tier: t.Tier, Category: t.Category, NotificationID: t.NotificationID, DueAt: t.Due(), At: d.now()}
	if stage != "" {
		b.Outcomes = append(b.Outcomes, outcome(t, stage, reason))
	}
	return b
}

func outcome(t notify.Task, stage, reason string) notify.Outcome {
	o := notify.Outcome{User: t.UserID, Channel: t.Channel, Stage: stage, Reason: reason}
	if t.Channel == notify.SMS {
		o.Country = notify.PhoneCountry(t.Target.Phone)
	}
	return o
}

// handOn produces the retry or dead-letter record, if any, and the task's delivery events in
// one acknowledged send, retrying until it succeeds: the record's offset is marked only after.
func (d *Dispatcher) handOn(ctx context.Context, handoff *kafka.Message, ev notify.EventBatch) error {
	var msgs []kafka.Message
	if handoff != nil {
		msgs = append(msgs, *handoff)
	}
	var m kafka.Message
	var ok bool
	if err := d.durably(ctx, "sealing delivery events", func() (err error) {
		m, ok, err = ev.Message(ctx, d.deps.Keys, d.region)
		return err
	}, d.warn("sealing delivery events failed; retrying")); err != nil {
		return err
	}
	if ok {
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 {
		return nil
	}
	return d.durably(ctx, "handing task on", func() error { return d.deps.Producer.Send(ctx, msgs...) },
		d.warn("producing retry or delivery events failed; retrying"))
}

func providerStatus(se *SendError) string {
	switch {
	case se.Status != "" && se.Reason != "":
		return se.Status + " " + se.Reason
	case se.Status != "":
		return se.Status
	}
	return se.Reason
}

func (d *Dispatcher) warn(msg string) func(error, time.Duration) {
	return func(err error, backoff time.Duration) { d.log.Warn(msg, "err", err, "backoff", backoff) }
}

// write records states and attempts, retrying while the log is unavailable.
func (d *Dispatcher) write(ctx context.Context, states []deliverylog.State, attempts []deliverylog.Attempt) error {
	if len(states) == 0 && len(attempts) == 0 {
		return nil
	}
	return d.durably(ctx, "writing delivery log", func() error { return d.deps.Deliveries.Write(ctx, states, attempts) },
		d.warn("writing delivery log failed; retrying"))
}

// errPoison marks a record that cannot be decoded; it is logged and skipped.
var errPoison = errors.New("undecodable record")

// Replay puts a dead letter back on its tier's and channel's dispatch topic as a fresh task (attempt
// count reset), sealed for its recipient, for `herald dispatch dlq replay`.
func Replay(ctx context.Context, p Producer, keys notify.Sealer, region string, dead Retry) error {
	t := dead.Task
	t.Attempt = 0
	m, err := notify.TaskMessage(ctx, keys, notify.DispatchTopic(region, t.Tier, t.Channel), t)
	if err != nil {
		return fmt.Errorf("encoding task: %w", err) // notify.ErrErased for an erased recipient
	}
	return p.Send(ctx, m)
}

// RetryMessage encodes a retry or dead-letter record for topic, sealed for its recipient and
// keyed by their key id.
func RetryMessage(ctx context.Context, keys notify.Sealer, topic string, r Retry) (kafka.Message, error) {
	return notify.SealedFor(ctx, keys, topic, r.Task.AppID, r.Task.UserID, r, func(v *Retry) { v.Task.UserID = "" })
}

// DecodeRetry reads a retry or dead-letter record; notify.ErrErased when its recipient's key
// is gone.
func DecodeRetry(ctx context.Context, keys notify.Sealer, raw []byte) (Retry, error) {
	var r Retry
	user, err := notify.OpenFor(ctx, keys, raw, &r)
	if err != nil {
		return Retry{}, err
	}
	if user != "" {
		r.Task.UserID = user
	}
	return r, nil
}

// suppressedTarget returns the suppression list's reason for an email or SMS task's address
// ("" when it is not on it), read under failure_retry.
func (d *Dispatcher) suppressedTarget(ctx context.Context, t notify.Task) (string, error) {
	if d.deps.Suppress == nil {
		return "", nil
	}
	addr := t.Target.Email
	switch {
	case t.Channel == notify.SMS:
		addr = t.Target.Phone
	case t.Channel != notify.Email:
		return "", nil
	}
	var reason string
	err := d.durably(ctx, "reading the suppression list", func() (err error) {
		reason, err = d.deps.Suppress.Reason(ctx, t.AppID, t.Channel, addr)
		return err
	}, d.warn("reading the suppression list failed; retrying"))
	return reason, err
}

// bounce puts the address of a result that bounced onto the suppression list: at once for a
// hard bounce or a STOP, after repeated soft bounces for a soft one (the soft bounce that
// reaches the limit turns the result into a permanent failure: the address is not retried).
// It reports whether the address was suppressed; it fails only when the list could not be
// written past failure_retry (the task is then dead-lettered and the bounce seen again).
func (d *Dispatcher) bounce(ctx context.Context, t notify.Task, r result) (bool, error) {
	if r.err == nil || r.err.Bounce == "" || d.deps.Suppress == nil || (t.Channel != notify.Email && t.Channel != notify.SMS) {
		return false, nil
	}
	reason := suppress.Bounced
	switch r.err.Bounce {
	case BounceUnsubscribed:
		reason = suppress.Unsubscribed
	case BounceSoft:
		var now bool
		err := d.durably(ctx, "counting a soft bounce", func() (err error) {
			now, err = d.deps.Suppress.SoftBounce(ctx, t.AppID, t.UserID, t.Channel, r.u.to, t.NotificationID, r.err.Error())
			return err
		}, d.warn("counting a soft bounce failed; retrying"))
		if err != nil || !now {
			return false, err
		}
		r.err.Class = Permanent
		suppressions.WithLabelValues(d.region, t.Channel, "soft_bounce").Inc()
		return true, nil
	}
	if err := d.durably(ctx, "suppressing a bounced address", func() error {
		return d.deps.Suppress.Suppress(ctx, t.AppID, t.UserID, t.Channel, r.u.to, reason, r.err.Error())
	}, d.warn("suppressing a bounced address failed; retrying")); err != nil {
		return false, err
	}
	suppressions.WithLabelValues(d.region, t.Channel, r.err.Bounce).Inc()
	return reason == suppress.Bounced, nil
}
