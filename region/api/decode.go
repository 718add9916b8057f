package api

import (
	"io"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/notify"
)

// Limits of a send request (the public API's, shared with the gateway).
const (
	MaxBodyBytes  = wire.MaxSendBytes
	MaxRecipients = wire.MaxRecipients
)

var (
	idRE        = wire.IDRE
	categoryRE  = wire.CategoryRE
	topicRE     = wire.TopicRE
	phoneRE     = wire.PhoneRE
	apnsTokenRE = wire.APNsTokenRE
	fcmTokenRE  = wire.FCMTokenRE
)

const (
	maxMetadataKeys = wire.MaxMetadataKeys
	maxTextBytes    = wire.MaxTextBytes
)

// fromWire is a refused body as the API answers it.
func fromWire(e *wire.Error) *Error {
	if e == nil {
		return nil
	}
	return badRequest(e.Code, e.Field, e.Message)
}

// decodeStrict reads one body of at most limit bytes into dst under the public API's one
// reading (package wire): the gateway read it the same way before forwarding it.
func decodeStrict(r io.Reader, dst any, limit int64) *Error {
	return fromWire(wire.Read(r, dst, limit))
}

// DecodeSend decodes and validates a send request. now is the accept time.
func DecodeSend(r io.Reader, now time.Time) (*wire.Send, *Error) {
	var req wire.Send
	if e := decodeStrict(r, &req, MaxBodyBytes); e != nil {
		return nil, e
	}
	if e := req.Validate(now); e != nil {
		return nil, fromWire(e)
	}
	return &req, nil
}

// inlineContent spreads an inline title and body over every channel.
func inlineContent(q *wire.Send) map[string]notify.Content {
	return map[string]notify.Content{
		notify.InApp: {Title: q.Title, Body: q.Body, Link: q.Link},
		notify.Push:  {Title: q.Title, Body: q.Body},
		notify.Email: {Subject: q.Title, Text: q.Body},
		notify.SMS:   {Text: q.Body},
	}
}

// emptyBody refuses a body on a route that takes none: nothing, or {}, is accepted.
func (s *Server) emptyBody(c *gin.Context) bool {
	if c.Request.Body == nil || c.Request.ContentLength == 0 {
		return true
	}
	raw, err := io.ReadAll(io.LimitReader(c.Request.Body, smallBodyBytes+1))
	if err != nil || len(raw) == 0 {
		return true
	}
	if e := wire.Decode(raw, &wire.Empty{}); e != nil {
		writeError(c, fromWire(e))
		return false
	}
	return true
}
