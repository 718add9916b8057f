package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/herald-notify/herald/platform/wire"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/herald-notify/herald/platform/apierr"
)

// Error codes of the regional API. They are stable: clients branch on them. Each is also the
// label of herald_api_rejections_total.
const (
	CodeMalformedJSON        = wire.CodeMalformedJSON
	CodeUnknownField         = wire.CodeUnknownField
	CodeDuplicateField       = wire.CodeDuplicateField
	CodePayloadTooLarge      = wire.CodePayloadTooLarge
	CodeInvalidField         = wire.CodeInvalidField
	CodeMissingField         = wire.CodeMissingField
	CodeConflictingFields    = wire.CodeConflictingFields
	CodeInvalidType          = wire.CodeInvalidType
	CodeUnknownTemplate      = "unknown_template"
	CodeTemplateTypeMismatch = "template_type_mismatch"
	CodeMissingVariable      = "missing_variable"
	CodeInvalidTemplate      = "invalid_template"
	CodeTooManyRecipients    = wire.CodeTooManyRecipients
	CodeInvalidChannel       = wire.CodeInvalidChannel
	CodeInvalidSendAt        = wire.CodeInvalidSendAt
	CodeDuplicateRequest     = "duplicate_idempotency_key"
	CodeMissingApp           = "missing_app"
	CodeUnauthenticated      = "unauthenticated"
	CodeNotFound             = "not_found"
	CodeNotResident          = "not_resident"
	CodeUnavailable          = "unavailable"
	CodeDeadlineExceeded     = "deadline_exceeded"
	CodeInvalidTimeout       = "invalid_timeout"
	CodeEndpointDisabled     = "endpoint_disabled"
	CodeCredentialRefused    = "credential_refused"
)

var rejections = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "herald_api_rejections_total",
	Help: "Requests refused by the regional API, by error code.",
}, []string{"code"})

// Error is an API error with its HTTP status.
type Error struct {
	Status  int
	Code    string
	Message string
	Field   string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func badRequest(code, field, msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: code, Field: field, Message: msg}
}

func writeError(c *gin.Context, e *Error) {
	rejections.WithLabelValues(e.Code).Inc()
	apierr.Write(c.Writer, e.Status, e.Code, e.Message, e.Field)
	c.Abort()
}

func notFound(c *gin.Context, what string) {
	writeError(c, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: what + " not found"})
}

// unavailable is a 503 the caller retries after Retry-After: deadline_exceeded when the
// request's deadline ended it (a produce Kafka did not acknowledge in time, a store that did not
// answer), unavailable otherwise.
func unavailable(c *gin.Context, msg string) {
	c.Header("Retry-After", "2")
	code := CodeUnavailable
	if errors.Is(c.Request.Context().Err(), context.DeadlineExceeded) {
		code = CodeDeadlineExceeded
		msg = "the request did not finish within the region's deadline: " + msg
	}
	writeError(c, &Error{Status: http.StatusServiceUnavailable, Code: code, Message: msg})
}
