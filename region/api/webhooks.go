package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/webhooks"
)

// WebhookStore keeps the app's webhook endpoints in the jurisdiction's database
// (webhooks.Store).
type WebhookStore interface {
	Create(ctx context.Context, app, jurisdiction string, spec webhooks.Spec) (webhooks.Endpoint, string, error)
	List(ctx context.Context, app, jurisdiction string) ([]webhooks.Endpoint, error)
	Get(ctx context.Context, app, jurisdiction, id string) (webhooks.Endpoint, error)
	Rotate(ctx context.Context, app, jurisdiction, id string, keepPrevious time.Duration) (webhooks.Endpoint, string, error)
	SetDisabled(ctx context.Context, app, jurisdiction, id string, disabled bool) (webhooks.Endpoint, error)
	DeadLetters(ctx context.Context, app, jurisdiction, id string, limit int) ([]webhooks.DeadLetter, error)
	Replay(ctx context.Context, app, jurisdiction, id, region string, ids []string) (int64, error)
}

// Dead letters listed per page.
const (
	defaultDeadLetters = 100
	maxDeadLetters     = 1000
)

// withSecret is an endpoint as create and rotate answer it: with its secret, shown this once.
type withSecret struct {
	webhooks.Endpoint
	Secret string `json:"secret"`
}

func (s *Server) createWebhookEndpoint(c *gin.Context) {
	var b wire.WebhookEndpoint
	if e := decodeStrict(http.MaxBytesReader(c.Writer, c.Request.Body, smallBodyBytes), &b, smallBodyBytes); e != nil {
		writeError(c, e)
		return
	}
	if e := b.Validate(); e != nil {
		writeError(c, fromWire(e))
		return
	}
	if e := wire.CheckWebhookURL(b.URL, s.WebhooksAllowLoopbackHTTP); e != nil {
		writeError(c, fromWire(e))
		return
	}
	ep, secret, err := s.Webhooks.Create(c.Request.Context(), appOf(c), s.Jurisdiction, webhooks.Spec{URL: b.URL, Description: b.Description, EventTypes: b.EventTypes})
	if err != nil {
		s.failed(c, "registering a webhook endpoint", err)
		return
	}
	c.JSON(http.StatusCreated, withSecret{ep, secret})
}

func (s *Server) listWebhookEndpoints(c *gin.Context) {
	eps, err := s.Webhooks.List(c.Request.Context(), appOf(c), s.Jurisdiction)
	if err != nil {
		s.failed(c, "listing webhook endpoints", err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"jurisdiction": s.Jurisdiction, "endpoints": eps})
}

// endpointParam reads the endpoint id of the path.
func endpointParam(c *gin.Context) (string, bool) {
	id := c.Param("endpoint_id")
	if !wire.ValidID(id) {
		writeError(c, badRequest(CodeInvalidField, "endpoint_id", "endpoint ids must match "+idRE.String()+" and not be . or .."))
		return "", false
	}
	return id, true
}

// webhookFailed answers a store error: 404 for an unknown endpoint, 409 for a disabled one, 503
// otherwise.
func (s *Server) webhookFailed(c *gin.Context, what string, err error) {
	switch {
	case errors.Is(err, webhooks.ErrNotFound):
		notFound(c, "webhook endpoint")
	case errors.Is(err, webhooks.ErrDisabled):
		writeError(c, &Error{Status: http.StatusConflict, Code: CodeEndpointDisabled, Field: "endpoint_id", Message: "the endpoint is disabled: enable it before replaying"})
	default:
		s.failed(c, what, err)
	}
}

func (s *Server) getWebhookEndpoint(c *gin.Context) {
	id, ok := endpointParam(c)
	if !ok {
		return
	}
	ep, err := s.Webhooks.Get(c.Request.Context(), appOf(c), s.Jurisdiction, id)
	if err != nil {
		s.webhookFailed(c, "reading a webhook endpoint", err)
		return
	}
	c.JSON(http.StatusOK, ep)
}

// optionalBody reads a body that may be left out (nothing leaves dst as it is) of at most limit
// bytes into dst, under the one reading (package wire).
func optionalBody(c *gin.Context, dst any, limit int64) *Error {
	if c.Request.Body == nil || c.Request.ContentLength == 0 {
		return nil
	}
	raw, err := io.ReadAll(io.LimitReader(c.Request.Body, limit+1))
	if err != nil {
		return badRequest(CodeMalformedJSON, "", "the body could not be read")
	}
	if len(raw) == 0 {
		return nil
	}
	return decodeStrict(bytes.NewReader(raw), dst, limit)
}

// rotateWebhookSecret gives the endpoint a new secret; the replaced one stays valid for the
// body's expire_previous_in_seconds (default 24 h; no body, or {}, takes the default).
func (s *Server) rotateWebhookSecret(c *gin.Context) {
	id, ok := endpointParam(c)
	if !ok {
		return
	}
	var b wire.WebhookRotate
	if e := optionalBody(c, &b, smallBodyBytes); e != nil {
		writeError(c, e)
		return
	}
	if e := b.Validate(); e != nil {
		writeError(c, fromWire(e))
		return
	}
	ep, secret, err := s.Webhooks.Rotate(c.Request.Context(), appOf(c), s.Jurisdiction, id, b.KeepPrevious())
	if err != nil {
		s.webhookFailed(c, "rotating a webhook secret", err)
		return
	}
	c.JSON(http.StatusOK, withSecret{ep, secret})
}

func (s *Server) setWebhookDisabled(disabled bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		id, ok := endpointParam(c)
		if !ok || !s.emptyBody(c) {
			return
		}
		ep, err := s.Webhooks.SetDisabled(c.Request.Context(), appOf(c), s.Jurisdiction, id, disabled)
		if err != nil {
			s.webhookFailed(c, "changing a webhook endpoint", err)
			return
		}
		c.JSON(http.StatusOK, ep)
	}
}

func (s *Server) listWebhookDeadLetters(c *gin.Context) {
	id, ok := endpointParam(c)
	if !ok {
		return
	}
	limit := defaultDeadLetters
	if raw := c.Query("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > maxDeadLetters {
			writeError(c, badRequest(CodeInvalidField, "limit", "limit must be 1-"+strconv.Itoa(maxDeadLetters)))
			return
		}
		limit = n
	}
	dls, err := s.Webhooks.DeadLetters(c.Request.Context(), appOf(c), s.Jurisdiction, id, limit)
	if err != nil {
		s.webhookFailed(c, "listing webhook dead letters", err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"dead_letters": dls})
}

func (s *Server) replayWebhooks(c *gin.Context) {
	id, ok := endpointParam(c)
	if !ok {
		return
	}
	var b wire.WebhookReplay
	if c.Request.ContentLength != 0 {
		if e := decodeStrict(http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes), &b, MaxBodyBytes); e != nil {
			writeError(c, e)
			return
		}
	}
	if e := b.Validate(); e != nil {
		writeError(c, fromWire(e))
		return
	}
	n, err := s.Webhooks.Replay(c.Request.Context(), appOf(c), s.Jurisdiction, id, s.Region, b.EventIDs)
	if err != nil {
		s.webhookFailed(c, "replaying webhook dead letters", err)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"replayed": n})
}
