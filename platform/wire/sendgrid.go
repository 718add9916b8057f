package wire

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/sendgrid/sendgrid-go/helpers/eventwebhook"
)

// SendGrid's signed Event Webhook: a POST of a JSON array of events, batched, signed with
// ECDSA P-256 over the timestamp header followed by the raw body.
const (
	SendGridSignatureHeader = eventwebhook.VerificationHTTPHeader // X-Twilio-Email-Event-Webhook-Signature
	SendGridTimestampHeader = eventwebhook.TimestampHTTPHeader    // X-Twilio-Email-Event-Webhook-Timestamp
	// SendGridTokenField is the unique_args key Herald's mail carries in X-SMTPAPI; SendGrid
	// echoes unique arguments back as top-level members of every event of that message.
	SendGridTokenField = "herald_receipt"
	// MaxSendGridBytes bounds a batch: SendGrid posts up to 768 KiB (or 30 s) of events at
	// once.
	MaxSendGridBytes = 1 << 20
	// MaxSendGridEvents bounds the events of one batch.
	MaxSendGridEvents = 5000
	// MaxSendGridSignature bounds the signature header: base64 of a DER ECDSA P-256 signature
	// (at most 72 bytes).
	MaxSendGridSignature = 256
	// maxSendGridToken bounds an event's receipt token (sealtoken.MaxTokenBytes).
	maxSendGridToken = 1024
)

// SendGridEvent is one event of SendGrid's Event Webhook, the members Herald reads (SendGrid
// sends more, which are left out): what happened, when, to which address, and the receipt
// token of the message it is about.
type SendGridEvent struct {
	Event     string `json:"event"`
	Email     string `json:"email"`
	Timestamp int64  `json:"timestamp"`
	EventID   string `json:"sg_event_id,omitempty"`
	MessageID string `json:"sg_message_id,omitempty"`
	// Type tells a bounce ("bounce") from a block ("blocked").
	Type string `json:"type,omitempty"`
	// Status is the SMTP enhanced status code of a bounce or deferral ("5.1.1").
	Status string `json:"status,omitempty"`
	Reason string `json:"reason,omitempty"`
	Token  string `json:"herald_receipt,omitempty"`
}

// SendGridBatch is the events of one batch the gateway forwards to one region: only those
// whose token that region minted, as the gateway parsed them.
type SendGridBatch struct {
	Events []SendGridEvent `json:"events"`
}

var (
	sendGridEventRE  = regexp.MustCompile(`^[a-z_]{1,32}$`)
	sendGridStatusRE = regexp.MustCompile(`^[0-9]{1,3}(\.[0-9]{1,3}){0,2}$`)
)

// ParseSendGrid reads an Event Webhook body strictly: one JSON array of 1 to
// MaxSendGridEvents objects, valid UTF-8, no member named twice, the members Herald reads of
// the kind SendGrid sends, text without NUL. Members Herald does not read are ignored, and so
// is their content (SendGrid adds members over time). An event type Herald does not know is
// kept (the region acknowledges it without recording it).
func ParseSendGrid(raw []byte) ([]SendGridEvent, *Error) {
	if len(raw) > MaxSendGridBytes {
		return nil, refuse(CodePayloadTooLarge, "", fmt.Sprintf("the batch is over %d bytes", MaxSendGridBytes))
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return nil, refuse(CodeMalformedJSON, "", "the body must be a JSON array of events")
	}
	var items []jsontext.Value
	if err := json.Unmarshal(trimmed, &items); err != nil {
		return nil, refuse(CodeMalformedJSON, "", "the body is not a JSON array of events")
	}
	if len(items) == 0 {
		return nil, refuse(CodeInvalidField, "events", "the batch has no event")
	}
	if len(items) > MaxSendGridEvents {
		return nil, refuse(CodeInvalidField, "events", fmt.Sprintf("a batch has at most %d events", MaxSendGridEvents))
	}
	out := make([]SendGridEvent, len(items))
	for i, item := range items {
		field := "[" + strconv.Itoa(i) + "]"
		if item.Kind() != '{' {
			return nil, refuse(CodeInvalidField, field, field+" must be an event object")
		}
		if err := json.Unmarshal(item, &out[i]); err != nil {
			var se *json.SemanticError
			if errors.As(err, &se) && se.JSONPointer != "" {
				name := strings.TrimPrefix(string(se.JSONPointer), "/")
				return nil, refuse(CodeInvalidField, field+"."+name, field+"."+name+" is not of the kind SendGrid sends")
			}
			return nil, refuse(CodeMalformedJSON, field, field+" is not an event object")
		}
		if e := out[i].validate(field); e != nil {
			return nil, e
		}
	}
	return out, nil
}

func (e *SendGridEvent) validate(field string) *Error {
	if e.Event == "" {
		return refuse(CodeMissingField, field+".event", field+".event is required")
	}
	if !sendGridEventRE.MatchString(e.Event) {
		return refuse(CodeInvalidField, field+".event", field+".event is not an event type")
	}
	if e.Timestamp <= 0 || e.Timestamp > 1<<40 {
		return refuse(CodeInvalidField, field+".timestamp", field+".timestamp must be Unix seconds")
	}
	if e.Status != "" && !sendGridStatusRE.MatchString(e.Status) {
		return refuse(CodeInvalidField, field+".status", field+".status must be an SMTP status code")
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"email", e.Email, 320}, {"sg_event_id", e.EventID, 128}, {"sg_message_id", e.MessageID, 256},
		{"type", e.Type, 32}, {"reason", e.Reason, 1024}, {SendGridTokenField, e.Token, maxSendGridToken}} {
		if len(f.v) > f.max || !utf8.ValidString(f.v) || strings.ContainsRune(f.v, 0) {
			return refuse(CodeInvalidField, field+"."+f.name, fmt.Sprintf("%s.%s is over %d bytes or not text", field, f.name, f.max))
		}
	}
	return nil
}

// Validate checks a forwarded batch as strictly as the gateway read it.
func (b *SendGridBatch) Validate() *Error {
	if len(b.Events) == 0 || len(b.Events) > MaxSendGridEvents {
		return refuse(CodeInvalidField, "events", fmt.Sprintf("a batch has 1 to %d events", MaxSendGridEvents))
	}
	for i := range b.Events {
		if e := b.Events[i].validate("events[" + strconv.Itoa(i) + "]"); e != nil {
			return e
		}
	}
	return nil
}

// ParseSendGridKey reads a verification key as SendGrid's console and API give it: the base64
// of the DER public key, or the same in PEM. Only ECDSA P-256 keys are taken.
func ParseSendGridKey(s string) (*ecdsa.PublicKey, error) {
	s = strings.TrimSpace(s)
	var der []byte
	if block, _ := pem.Decode([]byte(s)); block != nil {
		der = block.Bytes
	} else {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("sendgrid verification key: neither PEM nor base64: %w", err)
		}
		der = b
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("sendgrid verification key: %w", err)
	}
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || k.Curve.Params().Name != "P-256" {
		return nil, errors.New("sendgrid verification key: not an ECDSA P-256 key")
	}
	return k, nil
}

// Refusals of a signed batch's headers.
var (
	ErrSendGridSignature = errors.New("the event webhook signature does not verify")
	ErrSendGridStale     = errors.New("the event webhook timestamp is too old or in the future")
)

// VerifySendGrid checks a batch's signature (sendgrid-go's eventwebhook: ECDSA over the
// timestamp header followed by the raw body) with any of keys, and that its timestamp is at
// most maxAge old and at most a minute ahead of now.
func VerifySendGrid(keys []*ecdsa.PublicKey, body []byte, signature, timestamp string, now time.Time, maxAge time.Duration) error {
	if signature == "" || len(signature) > MaxSendGridSignature || timestamp == "" || len(timestamp) > 12 {
		return ErrSendGridSignature
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || ts <= 0 {
		return ErrSendGridSignature
	}
	ok := false
	for _, k := range keys {
		if good, err := eventwebhook.VerifySignature(k, body, signature, timestamp); err == nil && good {
			ok = true
			break
		}
	}
	if !ok {
		return ErrSendGridSignature
	}
	at := time.Unix(ts, 0)
	if now.Sub(at) > maxAge || at.Sub(now) > time.Minute {
		return ErrSendGridStale
	}
	return nil
}
