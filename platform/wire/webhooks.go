package wire

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// WebhookEventTypes are the event types an app's webhook endpoints receive and filter on.
var WebhookEventTypes = []string{
	"notification.accepted", "notification.suppressed", "notification.deferred", "notification.sent",
	"notification.delivered", "notification.failed", "notification.expired", "notification.read",
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
