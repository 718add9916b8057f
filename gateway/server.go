package gateway

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"

	"github.com/herald-notify/herald/gateway/apikey"
	"github.com/herald-notify/herald/gateway/directory"
	"github.com/herald-notify/herald/gateway/regionset"
	"github.com/herald-notify/herald/platform/apierr"
	"github.com/herald-notify/herald/platform/health"
	"github.com/herald-notify/herald/platform/httpserver"
	"github.com/herald-notify/herald/residency"
)

// Headers the gateway sets on the requests it forwards (the region API reads X-Herald-App, and
// X-Herald-Timeout-Ms: what is left of the request's deadline for the region to answer in).
const (
	appHeader       = "X-Herald-App"
	requestIDHeader = "X-Request-Id"
	// versionHeader carries the version of a template or workflow the gateway pushes.
	versionHeader = "X-Herald-Version"
	timeoutHeader = "X-Herald-Timeout-Ms"
)

var (
	metricRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_gateway_requests_total",
		Help: "Requests answered by the gateway, by route and status class.",
	}, []string{"route", "code"})
	metricDecisions = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_gateway_routing_decisions_total",
		Help: "Routing decisions, by jurisdiction and reason (home, failover, redirect, refused).",
	}, []string{"jurisdiction", "reason"})
	metricRateLimited = promauto.NewCounter(prometheus.CounterOpts{
		Name: "herald_gateway_rate_limited_total",
		Help: "Requests refused with 429 by the per-key limit.",
	})
	metricLimiterDown = promauto.NewCounter(prometheus.CounterOpts{
		Name: "herald_gateway_rate_limiter_unavailable_total",
		Help: "Requests let through unlimited because Redis could not be asked.",
	})
)

var errLimiterDown = errors.New("rate limiter unavailable")

// keyVerifier is what the auth middleware needs from the key store.
type keyVerifier interface {
	Verify(ctx context.Context, plaintext string) (apikey.Key, error)
}

// Server is the gateway's HTTP API.
type Server struct {
	Jurisdiction string
	PublicURL    string // this gateway's own URL: a jurisdiction whose gateway_url it is is served here
	RegionToken  string
	DefaultLimit int
	// RequestTimeout bounds every request but the event stream (zero: no deadline).
	RequestTimeout time.Duration

	Keys         keyVerifier
	TokenSecrets tokenSecrets
	Directory    *directory.Directory
	Policy       *residency.Holder
	Regions      *regionset.Set
	Limiter      *limiter
	Sends        *sendStore
	Templates    *configSync
	Workflows    *configSync
	Audit        *auditShipper
	Health       *health.Health
	Client       *http.Client
	Log          *slog.Logger
	// SendGridKeys verify SendGrid's signed Event Webhook (none: the route answers 404);
	// SendGridMaxAge is how old a batch's signature may be.
	SendGridKeys   []*ecdsa.PublicKey
	SendGridMaxAge time.Duration
	sendGridSeen   *replays
	Now            func() time.Time // nil: time.Now
}

// Handler builds the router.
func (s *Server) Handler() http.Handler {
	r := httpserver.Engine()
	r.Use(gin.Recovery(), requestID, httpserver.StrictAllowing(
		httpserver.FormsUnder(unsubscribePrefix), httpserver.FormsUnder(receiptsPrefix), httpserver.YAMLUnder(http.MethodPut, "/v1/workflows/")))
	s.Health.Mount(r)

	// One-click unsubscribe links in email: public, the token is the credential.
	r.GET(unsubscribePrefix+":token", otelgin.Middleware("herald-gateway"), s.deadline, s.unsubscribePage)
	r.POST(unsubscribePrefix+":token", otelgin.Middleware("herald-gateway"), s.deadline, s.oneClickUnsubscribe)
	// Providers' status callbacks: public, the token and the provider's signature are the
	// credentials.
	r.POST(receiptsPrefix+":token", otelgin.Middleware("herald-gateway"), s.deadline, s.twilioReceipt)
	// SendGrid's signed Event Webhook: public, SendGrid's signature is the credential.
	if s.sendGridSeen == nil {
		s.sendGridSeen = newReplays(100_000)
	}
	r.POST(sendGridPath, otelgin.Middleware("herald-gateway"), s.deadline, s.sendGridReceipts)

	v1 := r.Group("/v1", otelgin.Middleware("herald-gateway"), s.deadline, s.authenticate, s.rateLimit)
	v1.GET("/regions", s.listRegions)

	v1.POST("/notifications", s.send)
	v1.GET("/notifications/:id/status", s.status)
	v1.PATCH("/notifications/:id/read", s.byBodyUser)
	v1.POST("/notifications/read-all", s.byBodyUser)

	v1.PUT("/templates/:id", s.putTemplate)
	v1.GET("/templates/:id", s.getTemplate)
	v1.DELETE("/templates/:id", s.deleteTemplate)

	v1.PUT("/workflows/:id", s.putWorkflow)
	v1.GET("/workflows/:id", s.getWorkflow)
	v1.DELETE("/workflows/:id", s.deleteWorkflow)
	v1.POST("/workflows/:id/trigger", s.triggerWorkflow)
	v1.GET("/workflow-runs/:run_id", s.getWorkflowRun)

	v1.GET("/topics/:topic", s.topicInfo)
	v1.PUT("/topics/:topic/subscribers/:user_id", s.byPathUser)
	v1.DELETE("/topics/:topic/subscribers/:user_id", s.byPathUser)

	v1.PUT("/users/:user_id", s.putUser)
	v1.GET("/users/:user_id", s.getUser)
	v1.DELETE("/users/:user_id", s.eraseUser)
	v1.GET("/erasures/:id", s.getErasure)
	v1.POST("/users/:user_id/devices", s.byPathUser)
	v1.GET("/users/:user_id/devices", s.byPathUser)
	v1.DELETE("/users/:user_id/devices/:device_id", s.byPathUser)
	v1.GET("/users/:user_id/suppressions", s.byPathUser)
	v1.DELETE("/users/:user_id/suppressions/:channel", s.byPathUser)
	v1.GET("/users/:user_id/preferences", s.byPathUser)
	v1.PUT("/users/:user_id/preferences", s.byPathUser)
	v1.GET("/users/:user_id/notifications", s.byPathUser)
	v1.GET("/users/:user_id/notifications/unread-count", s.byPathUser)
	v1.GET("/users/:user_id/notifications/stream", s.byPathUser)
	v1.GET("/users/:user_id/notifications/:notification_id", s.byPathUser)

	s.mountWebhooks(v1)

	return r
}

// streamRoute is the one route without a deadline: an event stream stays open for hours.
const streamRoute = "/v1/users/:user_id/notifications/stream"

// deadline gives the request's context the gateway's deadline (RequestTimeout) less
// answerReserve: every store and region call of the request ends by then, and the client gets
// its answer, a 503 deadline_exceeded at worst, before RequestTimeout rather than at it.
func (s *Server) deadline(c *gin.Context) {
	if s.RequestTimeout <= 0 || c.FullPath() == streamRoute {
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.RequestTimeout-answerReserve(s.RequestTimeout))
	defer cancel()
	c.Request = c.Request.WithContext(ctx)
	c.Next()
}

// answerReserve is what the gateway keeps of a request's deadline to write its answer: a tenth,
// at most 500 ms. Without it an answer given at the deadline reached the client just after it
// (CI's postgres-restart: 64 requests answered after 5.0-5.1 s, 202s among them); with a
// twentieth (250 ms), a machine stalled as Cassandra came back still pushed 82 answers to
// 5.1-5.2 s.
func answerReserve(timeout time.Duration) time.Duration { return min(timeout/10, 500*time.Millisecond) }

// regionBudget is how long a region has to answer a call made under ctx: what is left of the
// request's deadline, less a margin for the answer to come back and be relayed (a fifth of it, at
// most 500 ms). The region answers by then itself (its 503 deadline_exceeded, or 202 from its
// outbox) rather than the gateway giving up on it: time spent here before the call (the rate
// limiter, a slow residency lookup) counts against the region's own request_timeout. ok is
// false without a deadline (the event stream).
func regionBudget(ctx context.Context) (budget time.Duration, ok bool) {
	d, ok := ctx.Deadline()
	if !ok {
		return 0, false
	}
	left := time.Until(d)
	return max(left-min(left/5, 500*time.Millisecond), time.Millisecond), true
}

// setRegionBudget tells the region, in X-Herald-Timeout-Ms, how long it has (regionBudget).
func setRegionBudget(ctx context.Context, h http.Header) {
	if b, ok := regionBudget(ctx); ok {
		h.Set(timeoutHeader, strconv.FormatInt(b.Milliseconds(), 10))
	}
}

// timedOut reports whether the request's deadline has passed (not its client gone).
func timedOut(c *gin.Context) bool {
	return errors.Is(c.Request.Context().Err(), context.DeadlineExceeded)
}

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// requestID gives every request an id (the caller's X-Request-Id when it is sane), answered in
// the same header and passed to the region, the audit and the logs.
func requestID(c *gin.Context) {
	id := c.GetHeader(requestIDHeader)
	if !requestIDRE.MatchString(id) {
		id = uuid.NewString()
	}
	c.Set("request_id", id)
	c.Header(requestIDHeader, id)
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	metricRequests.WithLabelValues(route, strconv.Itoa(c.Writer.Status()/100)+"xx").Inc()
}

func reqID(c *gin.Context) string { return c.GetString("request_id") }

// authenticate checks the Bearer API key and puts the caller's app id in the context.
func (s *Server) authenticate(c *gin.Context) {
	token, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if !ok && c.FullPath() == streamRoute {
		// EventSource in browsers cannot set headers: the stream takes the token in the query.
		token, ok = c.Query("access_token"), c.Query("access_token") != ""
	}
	if !ok || token == "" {
		abort(c, http.StatusUnauthorized, "unauthenticated", "an API key is required: Authorization: Bearer <key>", "Authorization")
		return
	}
	if !strings.HasPrefix(token, "hk_") {
		s.authenticateUserToken(c, token)
		return
	}
	k, err := s.Keys.Verify(c.Request.Context(), token)
	if errors.Is(err, apikey.ErrInvalid) {
		abort(c, http.StatusUnauthorized, "invalid_api_key", "the API key is unknown or revoked", "Authorization")
		return
	}
	if err != nil {
		s.Log.Error("verifying an API key", "err", err, "request_id", reqID(c))
		unavailable(c, "auth_unavailable", "API keys cannot be checked right now; retry")
		return
	}
	c.Set("app_id", k.AppID)
	c.Set("key_id", k.ID)
	limit := s.DefaultLimit
	if k.RateLimitPerMin != nil {
		limit = *k.RateLimitPerMin
	}
	c.Set("limit", limit)
}

func appOf(c *gin.Context) string { return c.GetString("app_id") }

// rateLimit applies the key's requests-per-minute limit.
func (s *Server) rateLimit(c *gin.Context) {
	wait, err := s.Limiter.allow(c.Request.Context(), c.GetString("key_id"), c.GetInt("limit"), reqID(c))
	if err != nil {
		metricLimiterDown.Inc()
		if !errors.Is(err, errLimiterDown) {
			s.Log.Warn("rate limiter unavailable; letting requests through", "err", err)
		}
		return
	}
	if wait > 0 {
		metricRateLimited.Inc()
		c.Header("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		abort(c, http.StatusTooManyRequests, "rate_limited", "this API key sent more than "+strconv.Itoa(c.GetInt("limit"))+" requests in the last minute", "")
	}
}

func (s *Server) listRegions(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"regions": s.Regions.Statuses(), "policy_version": s.Policy.Current().Version})
}

func abort(c *gin.Context, status int, code, msg, field string) {
	apierr.Write(c.Writer, status, code, msg, field)
	c.Abort()
}

// unavailable is a 503 the caller can retry as is.
func unavailable(c *gin.Context, code, msg string) {
	c.Header("Retry-After", "2")
	abort(c, http.StatusServiceUnavailable, code, msg, "")
}
