// Package api is a region's HTTP API. Only the gateway calls it: the gateway authenticates the
// app and passes its id in the X-Herald-App header (and, when configured, a shared internal
// token), and everything here is scoped by that app.
package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/deliverylog"
	"github.com/herald-notify/herald/region/devices"
	"github.com/herald-notify/herald/region/erasure"
	"github.com/herald-notify/herald/region/inbox"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/prefs"
	"github.com/herald-notify/herald/region/pushstore"
	"github.com/herald-notify/herald/region/receipts"
	"github.com/herald-notify/herald/region/suppress"
	"github.com/herald-notify/herald/region/templates"
	"github.com/herald-notify/herald/region/topics"
	"github.com/herald-notify/herald/region/unsubscribe"
	"github.com/herald-notify/herald/region/users"
	"github.com/herald-notify/herald/region/workflows"
)

// AppHeader carries the caller's app id from the gateway.
const AppHeader = "X-Herald-App"

// TimeoutHeader carries, in milliseconds, what is left of the gateway's deadline for this call:
// the region answers within it, or within its own request_timeout when that is shorter.
const TimeoutHeader = "X-Herald-Timeout-Ms"

// maxTimeout bounds what TimeoutHeader may ask for.
const maxTimeout = time.Minute

// parseTimeout reads TimeoutHeader's values: exactly one, a whole number of milliseconds from 1
// to a minute, digits only.
func parseTimeout(values []string) (time.Duration, error) {
	if len(values) != 1 {
		return 0, fmt.Errorf("%s must be given once, got %d values", TimeoutHeader, len(values))
	}
	v := values[0]
	if v == "" || len(v) > 5 || strings.Trim(v, "0123456789") != "" {
		return 0, fmt.Errorf("%s must be a whole number of milliseconds from 1 to %d", TimeoutHeader, maxTimeout.Milliseconds())
	}
	ms, _ := strconv.Atoi(v)
	if ms < 1 || time.Duration(ms)*time.Millisecond > maxTimeout {
		return 0, fmt.Errorf("%s must be a whole number of milliseconds from 1 to %d", TimeoutHeader, maxTimeout.Milliseconds())
	}
	return time.Duration(ms) * time.Millisecond, nil
}

var (
	acceptedTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_api_accepted_total",
		Help: "Notifications accepted (durably on Kafka), by tier.",
	}, []string{"region", "tier"})
	keptTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_api_accepted_into_outbox_total",
		Help: "Sends Kafka did not acknowledge within kafka_wait, kept in the outbox (Postgres) and answered 202; the scheduler puts them on Kafka.",
	}, []string{"region", "tier"})
	lateAcks = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_api_late_acknowledgements_total",
		Help: "Keyed sends answered 503 because Kafka did not acknowledge in time, acknowledged after: their claim is marked done, so the retry answers their id.",
	}, []string{"region"})
	idempotentReplays = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_api_idempotent_replays_total",
		Help: "Events produced again for a request that found its idempotency key pending with no proof the first produce was acknowledged.",
	}, []string{"region"})
)

// Producer hands records durably to Kafka.
type Producer interface {
	Send(ctx context.Context, msgs ...kafka.Message) error
}

// UserStore keeps the region's residents and their contacts (users.Store).
type UserStore interface {
	Put(ctx context.Context, appID, userID string, p users.Patch) (users.Contact, bool, error)
	Get(ctx context.Context, appID, userID string) (users.Contact, error)
	NotResident(ctx context.Context, appID, jurisdiction string, ids []string) ([]int, error)
}

// Server holds the API's dependencies.
type Server struct {
	Region        string
	Jurisdiction  string // the region's own: it stores nothing for anyone else's users
	InternalToken string
	DB            *pgxpool.Pool
	Producer      Producer
	Templates     *templates.Store
	Workflows     *workflows.Store
	Topics        *topics.Store
	Users         UserStore
	Devices       *devices.Store
	// Suppressions is the app's suppression lists (bounced, complained, unsubscribed addresses).
	Suppressions *suppress.Store
	Prefs        *prefs.Store
	PrefsCache   interface {
		Invalidate(ctx context.Context, app, user string) error
	}
	Inbox *inbox.Inbox
	// PushContent holds the content of content-free pushes that left no inbox item (nil: the
	// item route answers from the inbox only).
	PushContent *pushstore.Store
	Streams     *inbox.Hub
	Erasure     *erasure.Service
	Deliveries  *deliverylog.Log
	Keys        notify.Sealer // seals the personal part of the records produced (crypto-shredding)
	Audit       AuditAppender
	// Unsubscribe opens the tokens of the region's one-click unsubscribe links (nil: every
	// link is 404).
	Unsubscribe *unsubscribe.Keyring
	// Receipts takes in providers' status callbacks (nil: every receipt token is 404).
	Receipts ReceiptTaker
	Logger   *slog.Logger
	Now      func() time.Time
	// RequestTimeout bounds every request but the event stream: its context ends then, so a
	// store or Kafka that does not answer in time turns into a 503 with Retry-After, never a
	// hang. Zero means no deadline.
	RequestTimeout time.Duration
	// Outbox keeps a send Kafka did not acknowledge within KafkaWait, for the scheduler to put
	// on Kafka: the send is answered 202 all the same (nil: such a send is a 503).
	Outbox Outbox
	// KafkaWait is how long a send waits for Kafka's acknowledgement before it goes to the
	// Outbox (zero: until the request's deadline).
	KafkaWait time.Duration
	// Webhooks keeps the app's webhook endpoints; WebhooksAllowLoopbackHTTP lets an endpoint
	// use http:// to a loopback host (the local stack), where every other must be https.
	Webhooks                  WebhookStore
	WebhooksAllowLoopbackHTTP bool
	// Credentials keeps the apps' own provider credentials; CheckCredential, when set, is the
	// region's own rule for one (the FCM token endpoints it calls), answered 422 when it fails.
	Credentials     CredentialStore
	CheckCredential func(wire.Credential) *wire.Error

	keptLog sampler // one log line per keptLogPeriod about sends kept in the outbox
}

// keptLogPeriod is how often at most a region logs that it keeps sends in the outbox: in a
// broker's outage that is every send (2,969 lines in a minute before); the count is in
// herald_api_accepted_into_outbox_total.
const keptLogPeriod = 10 * time.Second

// sampler lets one log line through per period and counts the events it held back.
type sampler struct {
	mu   sync.Mutex
	next time.Time
	held int
}

// allow reports whether an event at now is logged, and how many were held back since the last
// one that was.
func (s *sampler) allow(now time.Time, period time.Duration) (held int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Before(s.next) {
		s.held++
		return 0, false
	}
	held, s.held, s.next = s.held, 0, now.Add(period)
	return held, true
}

// Outbox keeps accepted events for Kafka (scheduler.Store).
type Outbox interface {
	Keep(ctx context.Context, e notify.Event, due time.Time) error
	Forget(ctx context.Context, id string) error
	Hasten(ctx context.Context, id string) error
}

// outboxGrace is how long after it is kept an outbox row is due while the first produce is
// still under way: its late acknowledgement deletes the row before it is fired, and its
// failure makes the row due at once.
const outboxGrace = 10 * time.Second

// Register mounts the API's routes on r.
func (s *Server) Register(r gin.IRouter) {
	if s.Now == nil {
		s.Now = time.Now
	}
	v1 := r.Group("/v1", otelgin.Middleware("herald-region-"+s.Region), s.deadline, s.authenticate)
	v1.POST("/notifications", s.send)
	v1.GET("/notifications/:id/status", s.status)
	v1.PUT("/templates/:id", s.putTemplate)
	v1.GET("/templates/:id", s.getTemplate)
	v1.DELETE("/templates/:id", s.deleteTemplate)
	v1.PUT("/workflows/:id", s.putWorkflow)
	v1.GET("/workflows/:id", s.getWorkflow)
	v1.DELETE("/workflows/:id", s.deleteWorkflow)
	v1.POST("/workflows/:id/trigger", s.triggerWorkflow)
	v1.GET("/workflow-runs/:run_id", s.getWorkflowRun)
	v1.GET("/topics/:topic", s.topicInfo)
	v1.PUT("/topics/:topic/subscribers/:user_id", s.subscribe)
	v1.DELETE("/topics/:topic/subscribers/:user_id", s.unsubscribe)
	v1.PUT("/users/:user_id", s.putUser)
	v1.GET("/users/:user_id", s.getUser)
	v1.POST("/users/:user_id/devices", s.registerDevice)
	v1.GET("/users/:user_id/devices", s.listDevices)
	v1.DELETE("/users/:user_id/devices/:device_id", s.removeDevice)
	v1.GET("/users/:user_id/suppressions", s.listSuppressions)
	v1.DELETE("/users/:user_id/suppressions/:channel", s.removeSuppression)
	v1.DELETE("/users/:user_id", s.eraseUser)
	v1.GET("/erasures/:id", s.getErasure)
	v1.GET("/users/:user_id/preferences", s.getPrefs)
	v1.PUT("/users/:user_id/preferences", s.putPrefs)
	v1.GET("/users/:user_id/notifications", s.listInbox)
	v1.GET("/users/:user_id/notifications/unread-count", s.unreadCount)
	v1.GET("/users/:user_id/notifications/stream", s.stream)
	v1.GET("/users/:user_id/notifications/:notification_id", s.getInboxItem)
	v1.PATCH("/notifications/:id/read", s.markRead)
	v1.POST("/notifications/read-all", s.readAll)
	v1.POST("/webhooks/endpoints", s.createWebhookEndpoint)
	v1.GET("/webhooks/endpoints", s.listWebhookEndpoints)
	v1.GET("/webhooks/endpoints/:endpoint_id", s.getWebhookEndpoint)
	v1.POST("/webhooks/endpoints/:endpoint_id/rotate-secret", s.rotateWebhookSecret)
	v1.POST("/webhooks/endpoints/:endpoint_id/disable", s.setWebhookDisabled(true))
	v1.POST("/webhooks/endpoints/:endpoint_id/enable", s.setWebhookDisabled(false))
	v1.GET("/webhooks/endpoints/:endpoint_id/dead-letters", s.listWebhookDeadLetters)
	v1.POST("/webhooks/endpoints/:endpoint_id/replay", s.replayWebhooks)
	v1.GET("/credentials", s.listCredentials)
	v1.PUT("/credentials/:kind", s.putCredential)
	v1.GET("/credentials/:kind", s.getCredential)
	v1.DELETE("/credentials/:kind", s.deleteCredential)
	r.POST("/internal/v1/audit", otelgin.Middleware("herald-region-"+s.Region), s.deadline, s.authenticateInternal, s.appendAudit)
	// One-click unsubscribe: the app and the user are in the token, not in a header.
	r.GET("/v1/unsubscribe/:token", otelgin.Middleware("herald-region-"+s.Region), s.deadline, s.authenticateInternal, s.unsubscribeInfo)
	r.POST("/v1/unsubscribe/:token", otelgin.Middleware("herald-region-"+s.Region), s.deadline, s.authenticateInternal, s.oneClickUnsubscribe)
	// Provider status callbacks, forwarded by the gateway as it parsed them: the token and the
	// provider's signature are what authenticate them.
	r.POST(receipts.TwilioPath+":token", otelgin.Middleware("herald-region-"+s.Region), s.deadline, s.authenticateInternal, s.twilioReceipt)
	r.POST(receipts.SendGridPath, otelgin.Middleware("herald-region-"+s.Region), s.deadline, s.authenticateInternal, s.sendGridReceipts)
}

// StreamRoute is the one route without a deadline: an event stream stays open for hours.
const StreamRoute = "/v1/users/:user_id/notifications/stream"

// deadline gives the request's context the API's deadline (RequestTimeout).
func (s *Server) deadline(c *gin.Context) {
	if c.FullPath() == StreamRoute {
		return
	}
	timeout := s.RequestTimeout
	if v, ok := c.Request.Header[TimeoutHeader]; ok {
		given, err := parseTimeout(v)
		if err != nil {
			writeError(c, badRequest(CodeInvalidTimeout, TimeoutHeader, err.Error()))
			return
		}
		if timeout <= 0 || given < timeout {
			timeout = given
		}
	}
	if timeout <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), timeout)
	defer cancel()
	c.Request = c.Request.WithContext(ctx)
	c.Next()
}

func (s *Server) authenticate(c *gin.Context) {
	if s.InternalToken != "" {
		got, _ := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
		if subtle.ConstantTimeCompare([]byte(got), []byte(s.InternalToken)) != 1 {
			writeError(c, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: "regions accept calls from the gateway only", Field: "Authorization"})
			return
		}
	}
	app := c.GetHeader(AppHeader)
	if !idRE.MatchString(app) {
		writeError(c, badRequest(CodeMissingApp, AppHeader, "the app id header is missing or invalid"))
		return
	}
	c.Set("app", app)
}

func appOf(c *gin.Context) string { return c.GetString("app") }

// send accepts one notification. It answers 202 only after the event is on Kafka.
func (s *Server) send(c *gin.Context) {
	ctx := c.Request.Context()
	app := appOf(c)
	now := s.Now().UTC()
	req, apiErr := DecodeSend(http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes), now)
	if apiErr != nil {
		writeError(c, apiErr)
		return
	}
	if req.Recipients != nil && !s.requireResidents(c, "recipients", req.Recipients) {
		return
	}
	e := notify.Event{
		ID: newID(), AppID: app, Tier: req.Type, Category: req.Category, Recipients: req.Recipients, Topic: req.TopicName(),
		Channels: req.Channels, SendAt: req.ScheduledFor(), IdempotencyKey: req.IdempotencyKey, Metadata: req.Metadata, AcceptedAt: now,
	}
	if req.TemplateID != "" {
		t, err := s.Templates.Get(ctx, app, req.TemplateID)
		if errors.Is(err, templates.ErrNotFound) {
			writeError(c, badRequest(CodeUnknownTemplate, "template_id", fmt.Sprintf("no template %q", req.TemplateID)))
			return
		}
		if err != nil {
			s.Logger.Error("reading template", "err", err)
			unavailable(c, "templates cannot be read right now; retry")
			return
		}
		if t.Type != req.Type {
			writeError(c, badRequest(CodeTemplateTypeMismatch, "template_id", fmt.Sprintf("template %q is for %s notifications, not %s", t.ID, t.Type, req.Type)))
			return
		}
		content, err := templates.Render(t, req.Data)
		var fe *templates.FieldError
		if errors.As(err, &fe) {
			writeError(c, badRequest(CodeMissingVariable, fe.Field, fe.Msg))
			return
		}
		if err != nil {
			writeError(c, badRequest(CodeInvalidTemplate, "template_id", err.Error()))
			return
		}
		// Every variant is rendered now, so no recipient's language can fail later.
		localized, err := templates.RenderLocales(t, req.Data)
		if errors.As(err, &fe) {
			writeError(c, badRequest(CodeMissingVariable, fe.Field, fe.Msg))
			return
		}
		if err != nil {
			writeError(c, badRequest(CodeInvalidTemplate, "template_id", err.Error()))
			return
		}
		size := templates.RenderedSize(content)
		for _, v := range localized {
			size += templates.RenderedSize(v)
		}
		if size > templates.MaxRenderedBytes {
			writeError(c, badRequest(CodeInvalidTemplate, "template_id", fmt.Sprintf("template %q renders to %d bytes with this data (every locale together); at most %d", t.ID, size, templates.MaxRenderedBytes)))
			return
		}
		e.Localized = localized
		for i, ch := range e.Channels {
			if _, ok := content[ch]; !ok {
				writeError(c, badRequest(CodeInvalidChannel, fmt.Sprintf("channels[%d]", i), fmt.Sprintf("template %q has no content for channel %q", t.ID, ch)))
				return
			}
		}
		e.TemplateID, e.Content = t.ID, content
		if e.Category == "" {
			e.Category = t.Category
		}
		if len(e.Channels) == 0 {
			for _, ch := range notify.Channels {
				if _, ok := content[ch]; ok {
					e.Channels = append(e.Channels, ch)
				}
			}
		}
	} else {
		e.Content = inlineContent(req)
	}
	// Sealed for its recipients, keyed by the recipient's key id when there is one, so one
	// user's notifications stay in order without the key naming them.
	// Erased recipients get no key: they are suppressed here, and nothing of them is produced.
	msg, erased, err := notify.EventMessage(ctx, s.Keys, notify.IngressTopic(s.Region, e.Tier), e)
	allErased := notify.IsErased(err)
	if err != nil && !allErased {
		s.Logger.Error("encoding event", "err", err)
		unavailable(c, "the notification could not be encoded; retry")
		return
	}
	if !s.suppressErased(c, e, erased) {
		return
	}

	switch {
	case allErased:
		// Nothing is produced: every recipient's state says erased.
	case e.IdempotencyKey != "":
		original, err := s.sendOnce(ctx, e, msg)
		if err != nil {
			s.produceFailed(c, err)
			return
		}
		if original != "" {
			rejections.WithLabelValues(CodeDuplicateRequest).Inc()
			c.JSON(http.StatusConflict, gin.H{
				"error":           gin.H{"code": CodeDuplicateRequest, "message": "this idempotency_key was used in the last 24 hours", "field": "idempotency_key"},
				"notification_id": original,
			})
			return
		}
	default:
		if err := s.produceOrKeep(ctx, e, msg, nil); err != nil {
			s.produceFailed(c, err)
			return
		}
	}
	acceptedTotal.WithLabelValues(s.Region, e.Tier).Inc()
	s.recordAccepted(ctx, e)
	c.JSON(http.StatusAccepted, gin.H{"notification_id": e.ID})
}

func (s *Server) produceFailed(c *gin.Context, err error) {
	s.Logger.Error("notification not accepted", "err", err)
	if !errors.Is(err, kafka.ErrUnavailable) {
		unavailable(c, "the idempotency key could not be claimed in time; retry with the same idempotency_key")
		return
	}
	unavailable(c, "Kafka did not acknowledge the notification; retry (with the same idempotency_key, a send that reached Kafka after all answers its original notification_id)")
}

// sendOnce accepts e under its idempotency key, so that the key's claim and the accepted event
// never disagree. The key is claimed first, durably, as pending and with the record to produce;
// then the record is produced; then the claim is marked done. A failure before the produce leaves
// nothing accepted; a produce that fails or times out, or a mark that fails, leaves the claim
// pending: the request that finds it settles it (the same event, on Kafka at least once) and
// answers the original id. It returns the original notification id when the key was used in the
// last 24 hours.
func (s *Server) sendOnce(ctx context.Context, e notify.Event, msg kafka.Message) (original string, err error) {
	var (
		held    string
		pending kafka.Message
		value   []byte
	)
	err = s.DB.QueryRow(ctx, `INSERT INTO idempotency_keys (app_id, idempotency_key, notification_id, pending_topic, pending_key, pending_value)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (app_id, idempotency_key) DO UPDATE SET
			notification_id = CASE WHEN idempotency_keys.created_at < now() - interval '24 hours' THEN EXCLUDED.notification_id ELSE idempotency_keys.notification_id END,
			pending_topic = CASE WHEN idempotency_keys.created_at < now() - interval '24 hours' THEN EXCLUDED.pending_topic ELSE idempotency_keys.pending_topic END,
			pending_key = CASE WHEN idempotency_keys.created_at < now() - interval '24 hours' THEN EXCLUDED.pending_key ELSE idempotency_keys.pending_key END,
			pending_value = CASE WHEN idempotency_keys.created_at < now() - interval '24 hours' THEN EXCLUDED.pending_value ELSE idempotency_keys.pending_value END,
			created_at = CASE WHEN idempotency_keys.created_at < now() - interval '24 hours' THEN now() ELSE idempotency_keys.created_at END
		RETURNING notification_id, coalesce(pending_topic, ''), coalesce(pending_key, ''), pending_value`,
		e.AppID, e.IdempotencyKey, e.ID, msg.Topic, msg.Key, msg.Value).Scan(&held, &pending.Topic, &pending.Key, &value)
	if err != nil {
		return "", fmt.Errorf("claiming idempotency key: %w", err)
	}
	if held != e.ID {
		if value != nil {
			pending.Value = value
			if err := s.settle(ctx, e.AppID, e.IdempotencyKey, held, pending); err != nil {
				return "", err
			}
		}
		return held, nil
	}
	// Acknowledged after the deadline: the event is accepted after all, though the client was
	// answered 503: the claim is marked done and the notification recorded, so the retry with
	// the key answers its id without producing it again.
	late := func(err error) {
		if err != nil {
			return // the claim stays pending: a retry with the key settles it
		}
		lateAcks.WithLabelValues(s.Region).Inc()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.markDone(ctx, e.AppID, e.IdempotencyKey, e.ID)
		s.recordAccepted(ctx, e)
	}
	if err := s.produceOrKeep(ctx, e, msg, late); err != nil {
		return "", err // the claim stays pending: a retry with the key settles it
	}
	// On Kafka, or in the outbox, which puts it there: either way the claim is settled.
	s.markDone(ctx, e.AppID, e.IdempotencyKey, e.ID)
	return "", nil
}

// produceOrKeep puts e's record msg on Kafka, waiting up to KafkaWait for the acknowledgement;
// when Kafka has not acknowledged it by then (a broker died and its partitions wait for new
// leaders, a broker hangs), e goes to the Outbox, durable in Postgres, and the send is accepted
// all the same: the scheduler puts it on Kafka. The first produce may still be acknowledged
// later: late (if any) is called then, after the outbox row is forgotten; a row fired before
// is a repeat of the same notification, which fan-out's dedup keys drop. It fails when Kafka
// did not take the record and the outbox could not keep it either.
func (s *Server) produceOrKeep(ctx context.Context, e notify.Event, msg kafka.Message, late func(error)) error {
	pctx := ctx
	if s.Outbox != nil && s.KafkaWait > 0 {
		// Never more than three quarters of what is left of the request: the rest is the
		// outbox's, when the gateway gave this request less than request_timeout.
		wait := s.KafkaWait
		if d, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(d)*3/4)
		}
		var cancel context.CancelFunc
		pctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	kept := make(chan struct{}) // closed once the outbox was tried
	follow := func(err error) {
		<-kept
		if s.Outbox != nil {
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err == nil {
				if ferr := s.Outbox.Forget(fctx, e.ID); ferr != nil {
					s.Logger.Warn("outbox row left after a late acknowledgement; its firing is a repeat dedup drops", "notification", e.ID, "err", ferr)
				}
			} else if herr := s.Outbox.Hasten(fctx, e.ID); herr != nil {
				s.Logger.Warn("outbox row not hastened after the first produce failed; it fires when due", "notification", e.ID, "err", herr)
			}
		}
		if late != nil {
			late(err)
		}
	}
	err := s.produce(pctx, follow, msg)
	if err == nil || s.Outbox == nil || ctx.Err() != nil {
		close(kept)
		return err
	}
	due := s.Now().Add(outboxGrace)
	if pctx.Err() == nil {
		due = s.Now() // Kafka refused it outright: no late acknowledgement is coming
	}
	kerr := s.Outbox.Keep(ctx, e, due)
	close(kept)
	if kerr != nil {
		s.Logger.Error("send neither acknowledged by Kafka nor kept in the outbox", "notification", e.ID, "kafka", err, "outbox", kerr)
		return err
	}
	keptTotal.WithLabelValues(s.Region, e.Tier).Inc()
	if held, ok := s.keptLog.allow(s.Now(), keptLogPeriod); ok {
		s.Logger.Warn("send kept in the outbox: Kafka did not acknowledge in time", "notification", e.ID, "tier", e.Tier, "err", err,
			"kept_since_last_line", held)
	}
	return nil
}

// produce sends msg, and when ctx ends first and the producer can follow the record to its
// acknowledgement (kafka.Producer.SendOrFollow), calls late with the outcome.
func (s *Server) produce(ctx context.Context, late func(error), msg kafka.Message) error {
	if f, ok := s.Producer.(interface {
		SendOrFollow(ctx context.Context, late func(error), msgs ...kafka.Message) error
	}); ok {
		return f.SendOrFollow(ctx, late, msg)
	}
	return s.Producer.Send(ctx, msg)
}

// recordAcceptedTimeout bounds the delivery-log write after Kafka acknowledged an event. The
// event is already accepted and the row is an optimisation (fan-out writes it too), so a slow
// or restarting Cassandra must not hold the 202 until the request's deadline: on a busy machine
// that pushed the answer past the gateway's deadline, which then answered 503 for a send the
// region had accepted.
const recordAcceptedTimeout = 500 * time.Millisecond

// recordAccepted writes the accepted notification's row in the delivery log: the row is what
// tells a request that finds its key pending that the event was acknowledged. Without it, such
// a request produces the pending record again, which fan-out's dedup delivers once.
func (s *Server) recordAccepted(ctx context.Context, e notify.Event) {
	ctx, cancel := context.WithTimeout(ctx, recordAcceptedTimeout)
	defer cancel()
	if err := s.Deliveries.Accepted(ctx, e); err != nil {
		// The event is durable; fan-out records it too.
		s.Logger.Warn("recording accepted notification", "notification", e.ID, "err", err)
	}
}

// settle makes sure the event of a pending claim is on Kafka, then marks the claim done. The
// notification's row in the delivery log is written only after Kafka acknowledged the event (by
// this API, or by fan-out once it consumed it), so finding it is proof enough; otherwise the
// first request's produce failed, timed out or is still under way, and the same record is
// produced again: at worst the event is twice on its topic under one id, which fan-out's dedup
// keys deliver once.
//
// The delivery-log check gets at most settleCheckTimeout: when Cassandra is slow or restarting,
// the record is produced again rather than the retry waiting out its deadline on the check.
func (s *Server) settle(ctx context.Context, app, key, id string, pending kafka.Message) error {
	cctx, cancel := context.WithTimeout(ctx, settleCheckTimeout)
	_, err := s.Deliveries.Get(cctx, id)
	cancel()
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return fmt.Errorf("checking whether notification %s was accepted: %w", id, ctx.Err())
	case errors.Is(err, deliverylog.ErrNotFound), cctx.Err() != nil:
		if !errors.Is(err, deliverylog.ErrNotFound) {
			s.Logger.Info("delivery log slow: a pending claim's record is produced again", "notification", id, "err", err)
		}
		// The claim may be another region's of the jurisdiction (they share the claims): the
		// record goes to this region's topic of the same name.
		pending.Topic = ownTopic(s.Region, pending.Topic)
		if err := s.Producer.Send(ctx, pending); err != nil {
			return err
		}
		idempotentReplays.WithLabelValues(s.Region).Inc()
	default:
		return fmt.Errorf("checking whether notification %s was accepted: %w", id, err)
	}
	s.markDone(ctx, app, key, id)
	return nil
}

// settleCheckTimeout bounds settle's look in the delivery log. Producing the record again costs
// a repeat on the topic, which fan-out's dedup drops; waiting on a restarting Cassandra cost the
// client its deadline (answers of 5.2-5.3 s through the gateway in CI's cassandra-restart row).
const settleCheckTimeout = 500 * time.Millisecond

// ownTopic is topic, a region's "<region>.<name>", as region's own topic of that name.
func ownTopic(region, topic string) string {
	if _, name, ok := strings.Cut(topic, "."); ok {
		return region + "." + name
	}
	return topic
}

// markDone records that the claim's event is on Kafka. It runs after the acknowledgement, so
// a request whose deadline is about to pass still gets 200 ms for it; a failure only leaves the
// claim pending, which the next request with the key settles.
func (s *Server) markDone(ctx context.Context, app, key, id string) {
	budget := 2 * time.Second // no deadline
	if d, ok := ctx.Deadline(); ok {
		budget = max(time.Until(d), 200*time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), budget)
	defer cancel()
	if _, err := s.DB.Exec(ctx, `UPDATE idempotency_keys SET pending_topic = NULL, pending_key = NULL, pending_value = NULL
		WHERE app_id = $1 AND idempotency_key = $2 AND notification_id = $3`, app, key, id); err != nil {
		s.Logger.Warn("idempotency claim left pending; the next request with its key settles it", "notification", id, "err", err)
	}
}

func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// status reports each recipient x channel of a notification, and its attempts.
func (s *Server) status(c *gin.Context) {
	ctx := c.Request.Context()
	n, ok := s.notification(c)
	if !ok {
		return
	}
	id := n.ID
	limit, apiErr := queryLimit(c, 500, 5000)
	if apiErr != nil {
		writeError(c, apiErr)
		return
	}
	afterUser, afterChannel, apiErr := statusCursor(c)
	if apiErr != nil {
		writeError(c, apiErr)
		return
	}
	states, err := s.Deliveries.States(ctx, id, afterUser, afterChannel, limit)
	if err != nil {
		s.Logger.Error("reading status", "err", err)
		unavailable(c, "status cannot be read right now; retry")
		return
	}
	attempts, err := s.Deliveries.Attempts(ctx, id, 1000)
	if err != nil {
		s.Logger.Error("reading attempts", "err", err)
		unavailable(c, "status cannot be read right now; retry")
		return
	}
	type channelState struct {
		deliverylog.State
		Attempts int `json:"attempts"`
	}
	type recipient struct {
		UserID   string         `json:"user_id"`
		Channels []channelState `json:"channels"`
	}
	counts := map[[2]string]int{}
	for _, a := range attempts {
		counts[[2]string{a.UserID, a.Channel}]++
	}
	out := []*recipient{}
	byUser := map[string]*recipient{}
	for _, st := range states {
		r := byUser[st.UserID]
		if r == nil {
			r = &recipient{UserID: st.UserID}
			byUser[st.UserID] = r
			out = append(out, r)
		}
		r.Channels = append(r.Channels, channelState{State: st, Attempts: counts[[2]string{st.UserID, st.Channel}]})
	}
	if attempts == nil {
		attempts = []deliverylog.Attempt{}
	}
	body := gin.H{"notification": n, "recipients": out, "attempts": attempts}
	if len(states) == limit {
		last := states[len(states)-1]
		body["next_cursor"] = last.UserID + "|" + last.Channel
	}
	c.JSON(http.StatusOK, body)
}

// notification returns the notification named by the :id parameter if it is the caller's app's;
// otherwise it has answered 404 (or 503) and returns false.
func (s *Server) notification(c *gin.Context) (deliverylog.Notification, bool) {
	id := c.Param("id")
	if _, err := uuid.Parse(id); err != nil {
		notFound(c, "notification")
		return deliverylog.Notification{}, false
	}
	n, err := s.Deliveries.Get(c.Request.Context(), id)
	if errors.Is(err, deliverylog.ErrNotFound) || (err == nil && n.AppID != appOf(c)) {
		notFound(c, "notification")
		return deliverylog.Notification{}, false
	}
	if err != nil {
		s.failed(c, "reading the notification", err)
		return deliverylog.Notification{}, false
	}
	return n, true
}

// statusCursor reads the status page's cursor ("user|channel", as next_cursor gave it): a cursor
// this API did not produce is refused, never read as the first page (a client would loop).
func statusCursor(c *gin.Context) (user, channel string, e *Error) {
	raw, given := c.GetQuery("cursor")
	if !given {
		return "", "", nil
	}
	user, channel, ok := strings.Cut(raw, "|")
	if !ok || !wire.ValidID(user) || !slices.Contains(notify.Channels, channel) {
		return "", "", badRequest(CodeInvalidField, "cursor", "cursor is not one this API returned (next_cursor); leave it out for the first page")
	}
	return user, channel, nil
}

func queryLimit(c *gin.Context, def, maxLimit int) (int, *Error) {
	raw := c.Query("limit")
	if raw == "" {
		return def, nil
	}
	var n int
	if _, err := fmt.Sscanf(raw, "%d", &n); err != nil || n < 1 || n > maxLimit || fmt.Sprint(n) != raw {
		return 0, badRequest(CodeInvalidField, "limit", fmt.Sprintf("limit must be 1-%d", maxLimit))
	}
	return n, nil
}
