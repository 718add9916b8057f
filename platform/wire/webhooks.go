package wire

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// WebhookEventTypes are the event types an app's webhook endpoints receive and filter on.
var WebhookEventTypes = []string{
	"notification.accepted", "notification.suppressed", "notification.deferred", "notification.sent",
	"notification.delivered", "notification.failed", "notification.expired", "notification.read",
	"notification.complained", "notification.unsubscribed",
}

// Limits of a webhook endpoint.
const (
	MaxWebhookURLBytes         = 2048
	MaxWebhookDescriptionBytes = 256
	MaxWebhookReplayIDs        = 1000
)

// WebhookEndpoint is the body of POST .../webhooks/endpoints.
type WebhookEndpoint struct {
	URL         string   `json:"url"`
	Description string   `json:"description,omitzero"`
	EventTypes  []string `json:"event_types,omitzero"`
}

// Validate checks the URL's shape (absolute http or https, a host, no credentials or fragment),
// the description and the event types. Which schemes a region accepts (https, and http only to
// a loopback host where so configured) is the region's check (CheckWebhookURL).
func (w *WebhookEndpoint) Validate() *Error {
	if w.URL == "" {
		return refuse(CodeMissingField, "url", "url is required")
	}
	if e := checkWebhookURLShape(w.URL); e != nil {
		return e
	}
	if len(w.Description) > MaxWebhookDescriptionBytes || !utf8.ValidString(w.Description) {
		return refuse(CodeInvalidField, "description", fmt.Sprintf("description must be at most %d bytes of UTF-8", MaxWebhookDescriptionBytes))
	}
	seen := map[string]bool{}
	for i, t := range w.EventTypes {
		field := fmt.Sprintf("event_types[%d]", i)
		if !slices.Contains(WebhookEventTypes, t) {
			return refuse(CodeInvalidField, field, "unknown event type (known: "+strings.Join(WebhookEventTypes, ", ")+")")
		}
		if seen[t] {
			return refuse(CodeInvalidField, field, "event type listed twice")
		}
		seen[t] = true
	}
	return nil
}

func checkWebhookURLShape(raw string) *Error {
	bad := func(msg string) *Error { return refuse(CodeInvalidField, "url", msg) }
	if len(raw) > MaxWebhookURLBytes {
		return bad(fmt.Sprintf("url must be at most %d bytes", MaxWebhookURLBytes))
	}
	for _, r := range raw {
		if r <= 0x20 || r == 0x7f {
			return bad("url must not contain spaces or control characters")
		}
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Opaque != "" {
		return bad("url must be an absolute https URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return bad("url must be an https URL")
	}
	if u.Hostname() == "" {
		return bad("url must name a host")
	}
	if u.User != nil {
		return bad("url must not carry credentials")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return bad("url must not have a fragment")
	}
	return nil
}

// CheckWebhookURL is the regions' rule for an endpoint's URL: its shape (WebhookEndpoint), and
// https, or http to a loopback host (127.0.0.0/8, ::1, localhost) when allowLoopbackHTTP.
func CheckWebhookURL(raw string, allowLoopbackHTTP bool) *Error {
	if e := checkWebhookURLShape(raw); e != nil {
		return e
	}
	u, _ := url.Parse(raw)
	if u.Scheme == "https" {
		return nil
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	if allowLoopbackHTTP && (host == "localhost" || (ip != nil && ip.IsLoopback())) {
		return nil
	}
	if allowLoopbackHTTP {
		return refuse(CodeInvalidField, "url", "url must be https (http only to a loopback host)")
	}
	return refuse(CodeInvalidField, "url", "url must be https")
}

// WebhookReplay is the body of POST .../webhooks/endpoints/{id}/replay: the dead letters to
// deliver again (event_ids), or all of the endpoint's when left out.
type WebhookReplay struct {
	EventIDs []string `json:"event_ids,omitzero"`
}

// Validate checks the ids.
func (r *WebhookReplay) Validate() *Error {
	if len(r.EventIDs) > MaxWebhookReplayIDs {
		return refuse(CodeInvalidField, "event_ids", fmt.Sprintf("at most %d event ids at a time", MaxWebhookReplayIDs))
	}
	for i, id := range r.EventIDs {
		if !ValidID(id) {
			return refuse(CodeInvalidField, fmt.Sprintf("event_ids[%d]", i), "event ids must match "+IDPattern)
		}
	}
	return nil
}

// Bounds of a rotation's overlap, in seconds: how long the secret a rotation replaces keeps
// signing deliveries next to the new one.
const (
	DefaultWebhookPreviousSecretSeconds = 24 * 60 * 60
	MaxWebhookPreviousSecretSeconds     = 7 * 24 * 60 * 60
)

// WebhookRotate is the body of POST .../webhooks/endpoints/{id}/rotate-secret, which may be
// left out (or {}): ExpirePreviousInSeconds is how long the replaced secret stays valid, 0 (at
// once) to MaxWebhookPreviousSecretSeconds; left out, DefaultWebhookPreviousSecretSeconds.
type WebhookRotate struct {
	ExpirePreviousInSeconds *int64 `json:"expire_previous_in_seconds,omitzero"`
}

// Validate checks the overlap's bounds (the decoding refused what is not an integer, null and
// numbers outside int64).
func (r *WebhookRotate) Validate() *Error {
	if n := r.ExpirePreviousInSeconds; n != nil && (*n < 0 || *n > MaxWebhookPreviousSecretSeconds) {
		return refuse(CodeInvalidField, "expire_previous_in_seconds",
			fmt.Sprintf("expire_previous_in_seconds must be an integer from 0 (the previous secret expires at once) to %d (7 days)", MaxWebhookPreviousSecretSeconds))
	}
	return nil
}

// KeepPrevious is the overlap the body asks for, the default when it names none.
func (r *WebhookRotate) KeepPrevious() time.Duration {
	if r.ExpirePreviousInSeconds == nil {
		return DefaultWebhookPreviousSecretSeconds * time.Second
	}
	return time.Duration(*r.ExpirePreviousInSeconds) * time.Second
}
