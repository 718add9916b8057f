package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/herald-notify/herald/region/notify"
)

// Limits of a send request.
const (
	MaxBodyBytes    = 256 << 10
	MaxRecipients   = 1000
	maxMetadataKeys = 50
	maxTextBytes    = 8 << 10
	maxScheduleAge  = 30 * 24 * time.Hour
)

var (
	idRE       = regexp.MustCompile(`^[A-Za-z0-9_.:@+-]{1,128}$`)
	categoryRE = regexp.MustCompile(`^[a-z0-9_.-]{1,64}$`)
	topicRE    = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
)

// SendRequest is the body of POST /v1/notifications.
type SendRequest struct {
	Type           string            `json:"type"`
	Category       string            `json:"category"`
	TemplateID     string            `json:"template_id"`
	Data           map[string]any    `json:"data"`
	Title          string            `json:"title"`
	Body           string            `json:"body"`
	Link           string            `json:"link"`
	Recipients     []string          `json:"recipients"`
	Topic          string            `json:"topic"`
	Channels       []string          `json:"channels"`
	SendAt         string            `json:"send_at"`
	IdempotencyKey string            `json:"idempotency_key"`
	Metadata       map[string]string `json:"metadata"`

	sendAt *time.Time
}

var unknownFieldRE = regexp.MustCompile(`json: unknown field "([^"]+)"`)

// decodeStrict reads one JSON object from r into dst: malformed JSON, unknown fields, a
// wrong type, trailing data and oversized bodies are API errors naming the field.
func decodeStrict(r io.Reader, dst any, limit int64) *Error {
	raw, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return badRequest(CodePayloadTooLarge, "", fmt.Sprintf("the body is over %d bytes", limit))
		}
		return badRequest(CodeMalformedJSON, "", "the body could not be read")
	}
	if int64(len(raw)) > limit {
		return badRequest(CodePayloadTooLarge, "", fmt.Sprintf("the body is over %d bytes", limit))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		if m := unknownFieldRE.FindStringSubmatch(err.Error()); m != nil {
			return badRequest(CodeUnknownField, m[1], fmt.Sprintf("unknown field %q", m[1]))
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field == "" {
			return badRequest(CodeInvalidField, "", "the body must be a JSON object")
		}
		if errors.As(err, &te) {
			return badRequest(CodeInvalidField, te.Field, fmt.Sprintf("%s must be a %s", te.Field, jsonKind(te.Type.Kind().String())))
		}
		return badRequest(CodeMalformedJSON, "", "the body is not a JSON object: "+err.Error())
	}
	if dec.More() {
		return badRequest(CodeMalformedJSON, "", "the body has data after the JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest(CodeMalformedJSON, "", "the body has data after the JSON object")
	}
	return nil
}

func jsonKind(goKind string) string {
	switch goKind {
	case "slice":
		return "list"
	case "map", "struct":
		return "object"
	case "int", "int64", "float64":
		return "number"
	}
	return goKind
}

// DecodeSend decodes and validates a send request. now is the accept time.
func DecodeSend(r io.Reader, now time.Time) (*SendRequest, *Error) {
	var req SendRequest
	if e := decodeStrict(r, &req, MaxBodyBytes); e != nil {
		return nil, e
	}
	if e := req.validate(now); e != nil {
		return nil, e
	}
	return &req, nil
}

func (q *SendRequest) validate(now time.Time) *Error {
	switch {
	case q.Type == "":
		return badRequest(CodeMissingField, "type", "type is required (transactional, social or marketing)")
	case !slices.Contains(notify.Tiers, q.Type):
		return badRequest(CodeInvalidType, "type", fmt.Sprintf("unknown type %q (transactional, social or marketing)", q.Type))
	}
	if q.Category != "" && !categoryRE.MatchString(q.Category) {
		return badRequest(CodeInvalidField, "category", "category must match "+categoryRE.String())
	}
	inline := q.Title != "" || q.Body != "" || q.Link != ""
	switch {
	case q.TemplateID != "" && inline:
		return badRequest(CodeConflictingFields, "template_id", "give template_id with data, or an inline title and body, not both")
	case q.TemplateID != "" && !idRE.MatchString(q.TemplateID):
		return badRequest(CodeInvalidField, "template_id", "template_id must match "+idRE.String())
	case q.TemplateID == "" && q.Body == "":
		return badRequest(CodeMissingField, "body", "give template_id, or an inline body")
	case q.TemplateID == "" && q.Data != nil:
		return badRequest(CodeConflictingFields, "data", "data is only used with template_id")
	case q.TemplateID == "" && q.Category == "":
		return badRequest(CodeMissingField, "category", "category is required with an inline body")
	}
	for field, v := range map[string]string{"title": q.Title, "body": q.Body, "link": q.Link} {
		if len(v) > maxTextBytes || !utf8.ValidString(v) {
			return badRequest(CodeInvalidField, field, fmt.Sprintf("%s must be valid UTF-8 of at most %d bytes", field, maxTextBytes))
		}
	}
	if q.Link != "" && !strings.HasPrefix(q.Link, "https://") && !strings.HasPrefix(q.Link, "http://") && !strings.Contains(q.Link, "://") {
		return badRequest(CodeInvalidField, "link", "link must be an absolute URL or an app deep link (scheme://...)")
	}
	switch {
	case q.Topic != "" && len(q.Recipients) > 0:
		return badRequest(CodeConflictingFields, "topic", "give recipients or topic, not both")
	case q.Topic != "":
		if !topicRE.MatchString(q.Topic) {
			return badRequest(CodeInvalidField, "topic", "topic must match "+topicRE.String())
		}
	case len(q.Recipients) == 0:
		return badRequest(CodeMissingField, "recipients", "give at least one recipient, or a topic")
	case len(q.Recipients) > MaxRecipients:
		return badRequest(CodeTooManyRecipients, "recipients", fmt.Sprintf("at most %d recipients per request (use a topic for more)", MaxRecipients))
	}
	seen := make(map[string]bool, len(q.Recipients))
	uniq := q.Recipients[:0:0]
	for i, u := range q.Recipients {
		if !idRE.MatchString(u) {
			return badRequest(CodeInvalidField, fmt.Sprintf("recipients[%d]", i), "user ids must match "+idRE.String())
		}
		if !seen[u] {
			seen[u] = true
			uniq = append(uniq, u)
		}
	}
	q.Recipients = uniq
	for i, ch := range q.Channels {
		if !slices.Contains(notify.Channels, ch) {
			return badRequest(CodeInvalidChannel, fmt.Sprintf("channels[%d]", i), fmt.Sprintf("unknown channel %q (in_app, push, email, sms)", ch))
		}
		if slices.Index(q.Channels, ch) != i {
			return badRequest(CodeInvalidChannel, fmt.Sprintf("channels[%d]", i), fmt.Sprintf("channel %q is listed twice", ch))
		}
	}
	if q.SendAt != "" {
		t, err := time.Parse(time.RFC3339, q.SendAt)
		if err != nil {
			return badRequest(CodeInvalidSendAt, "send_at", "send_at must be an RFC 3339 time, e.g. 2026-12-01T09:00:00Z")
		}
		if t.After(now.Add(maxScheduleAge)) {
			return badRequest(CodeInvalidSendAt, "send_at", "send_at is more than 30 days ahead")
		}
		if t.After(now) {
			q.sendAt = &t
		}
	}
	if len(q.IdempotencyKey) > 255 || (q.IdempotencyKey != "" && strings.TrimSpace(q.IdempotencyKey) == "") {
		return badRequest(CodeInvalidField, "idempotency_key", "idempotency_key must be 1-255 characters")
	}
	if len(q.Metadata) > maxMetadataKeys {
		return badRequest(CodeInvalidField, "metadata", fmt.Sprintf("at most %d metadata keys", maxMetadataKeys))
	}
	for k, v := range q.Metadata {
		if k == "" || len(k) > 64 || len(v) > 1024 {
			return badRequest(CodeInvalidField, "metadata."+k, "metadata keys are 1-64 bytes and values at most 1024 bytes")
		}
	}
	return nil
}

// inlineContent spreads an inline title and body over every channel.
func (q *SendRequest) inlineContent() map[string]notify.Content {
	return map[string]notify.Content{
		notify.InApp: {Title: q.Title, Body: q.Body, Link: q.Link},
		notify.Push:  {Title: q.Title, Body: q.Body},
		notify.Email: {Subject: q.Title, Text: q.Body},
		notify.SMS:   {Text: q.Body},
	}
}
