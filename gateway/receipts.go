package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/platform/wire"
)

// receiptsPrefix is the path of Twilio's status callbacks (public: the token and Twilio's
// signature are the credentials). A region gives each text it sends one on its
// jurisdiction's gateway.
const receiptsPrefix = "/v1/receipts/twilio/"

// twilioReceipt serves POST /v1/receipts/twilio/{token}: a Twilio status callback. The gateway
// reads the form once, strictly, and forwards what it parsed (with the URL Twilio signed and
// the signature) to the region the token names, which verifies the signature and records the
// status. Twilio does not retry a callback that fails; a 5xx is still what tells its console.
func (s *Server) twilioReceipt(c *gin.Context) {
	region, ok := s.tokenRegion(c, func(c *gin.Context) { abort(c, http.StatusNotFound, "not_found", "receipt token not found", "") })
	if !ok {
		return
	}
	if !strings.HasPrefix(c.GetHeader("Content-Type"), wire.TwilioCallbackMimeType) {
		abort(c, http.StatusUnsupportedMediaType, "unsupported_media_type", "a status callback is posted as application/x-www-form-urlencoded", "Content-Type")
		return
	}
	raw, err := io.ReadAll(io.LimitReader(c.Request.Body, wire.MaxCallbackBytes+1))
	if err != nil {
		abort(c, http.StatusBadRequest, wire.CodeInvalidField, "the body cannot be read", "")
		return
	}
	form, e := wire.ParseTwilioForm(string(raw))
	if e != nil {
		status := http.StatusBadRequest
		if e.Code == wire.CodePayloadTooLarge {
			status = http.StatusRequestEntityTooLarge
		}
		abort(c, status, e.Code, e.Message, e.Field)
		return
	}
	sigs := c.Request.Header.Values(wire.TwilioSignatureHeader)
	if len(sigs) != 1 || sigs[0] == "" {
		abort(c, http.StatusForbidden, "invalid_signature", "a status callback carries one X-Twilio-Signature", wire.TwilioSignatureHeader)
		return
	}
	cb := wire.TwilioCallback{URL: strings.TrimRight(s.PublicURL, "/") + c.Request.URL.RequestURI(), Params: form, Signature: sigs[0]}
	if e := cb.Validate(); e != nil {
		abort(c, http.StatusBadRequest, e.Code, e.Message, e.Field)
		return
	}
	body, _ := json.Marshal(cb) // strings and lists of strings: it cannot fail
	resp, err := s.call(c.Request.Context(), c, region, http.MethodPost, receiptsPrefix+c.Param("token"), "", body)
	if err != nil {
		s.regionFailed(c, region, err)
		return
	}
	relay(c, resp)
}
