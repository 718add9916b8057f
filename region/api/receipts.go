package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/receipts"
)

// CodeInvalidSignature is a provider callback whose signature does not verify.
const CodeInvalidSignature = "invalid_signature"

var receiptsTaken = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "herald_receipts_total",
	Help: "Provider status callbacks taken in, by provider kind, status, and whether it was recorded (false: a repeat, or a status before the carrier).",
}, []string{"region", "provider", "status", "recorded"})

var receiptsRefused = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "herald_receipts_refused_total",
	Help: "Provider status callbacks refused, by provider and error code (invalid_signature: the provider's auth token, or a forger; HeraldProviderReceiptsRefused).",
}, []string{"region", "provider", "code"})

// ReceiptTaker verifies and records providers' status callbacks (receipts.Service).
type ReceiptTaker interface {
	Twilio(ctx context.Context, token string, cb wire.TwilioCallback) (receipts.Outcome, error)
	SendGrid(ctx context.Context, b wire.SendGridBatch) (receipts.BatchOutcome, error)
}

var sendGridSkipped = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "herald_receipts_skipped_total",
	Help: "Provider events forwarded to this region that it did not take: a token it cannot open (another region's, forged, changed) or a user no longer its resident.",
}, []string{"region", "provider"})

// sendGridReceipts serves POST /v1/receipts/sendgrid: the events of a SendGrid event webhook
// batch whose tokens name this region, as the gateway verified and parsed them. The region
// opens each token itself and checks the user's residency; an event it cannot take is skipped
// and counted. 200 with the counts; 400 naming a malformed field; 503 when a store or Kafka
// failed (the gateway answers SendGrid 503, and SendGrid posts the batch again).
func (s *Server) sendGridReceipts(c *gin.Context) {
	if s.Receipts == nil {
		notFound(c, "receipt route")
		return
	}
	var b wire.SendGridBatch
	if e := decodeStrict(http.MaxBytesReader(c.Writer, c.Request.Body, 2*wire.MaxSendGridBytes), &b, 2*wire.MaxSendGridBytes); e != nil {
		writeError(c, e)
		return
	}
	if e := b.Validate(); e != nil {
		writeError(c, fromWire(e))
		return
	}
	out, err := s.Receipts.SendGrid(c.Request.Context(), b)
	if err != nil {
		s.failed(c, "recording email receipts", err)
		return
	}
	for k, n := range out.Statuses {
		receiptsTaken.WithLabelValues(s.Region, "sendgrid", k.Status, strconv.FormatBool(k.Recorded)).Add(float64(n))
	}
	if out.Skipped > 0 {
		sendGridSkipped.WithLabelValues(s.Region, "sendgrid").Add(float64(out.Skipped))
	}
	c.JSON(http.StatusOK, out)
}

// twilioReceipt serves POST /v1/receipts/twilio/{token}: a Twilio status callback, as the
// gateway parsed it. 200 with what it did; 404 for a token this region did not mint (or whose
// user is gone), 403 when the signature does not verify, 400 naming a malformed parameter.
func (s *Server) twilioReceipt(c *gin.Context) {
	if s.Receipts == nil {
		notFound(c, "receipt token")
		return
	}
	var cb wire.TwilioCallback
	if e := decodeStrict(http.MaxBytesReader(c.Writer, c.Request.Body, 4*wire.MaxCallbackBytes), &cb, 4*wire.MaxCallbackBytes); e != nil {
		writeError(c, e)
		return
	}
	if e := cb.Validate(); e != nil {
		writeError(c, fromWire(e))
		return
	}
	out, err := s.Receipts.Twilio(c.Request.Context(), c.Param("token"), cb)
	var fe *receipts.FieldError
	switch {
	case errors.Is(err, receipts.ErrNotFound):
		notFound(c, "receipt token")
	case errors.Is(err, receipts.ErrSignature):
		receiptsRefused.WithLabelValues(s.Region, "twilio", CodeInvalidSignature).Inc()
		writeError(c, &Error{Status: http.StatusForbidden, Code: CodeInvalidSignature, Field: wire.TwilioSignatureHeader, Message: err.Error()})
	case errors.As(err, &fe):
		writeError(c, badRequest(CodeInvalidField, fe.Field, fe.Error()))
	case err != nil:
		s.failed(c, "recording a receipt", err)
	default:
		recorded := "false"
		if out.Recorded {
			recorded = "true"
		}
		receiptsTaken.WithLabelValues(s.Region, "twilio", out.Status, recorded).Inc()
		c.JSON(http.StatusOK, out)
	}
}
