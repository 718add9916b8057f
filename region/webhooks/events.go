// Package webhooks tells apps what happened to what they sent: the region's webhooks role
// consumes its own delivery events (<region>.events) in its own consumer group, turns each
// outcome into one event per matching endpoint the app registered in the region's jurisdiction,
// keeps it in Postgres before the record's offset is committed, and delivers it signed per the
// Standard Webhooks specification (webhook-id, webhook-timestamp, webhook-signature), at least
// once: exponential backoff up to a horizon (24 h), one circuit breaker per endpoint, then a
// dead letter the API can replay.
//
// Residency: a region consumes only its own events topic, so an event about a user is sent from
// the user's home region, and only to endpoints registered for that region's jurisdiction (they
// live in the jurisdiction's database). No payload crosses a jurisdiction.
package webhooks

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/herald-notify/herald/region/notify"
)

// Event types, as the payload's "type" names them and endpoints filter on them.
const (
	TypeAccepted   = "notification.accepted"
	TypeSuppressed = "notification.suppressed"
	TypeDeferred   = "notification.deferred"
	TypeSent       = "notification.sent"
	TypeDelivered  = "notification.delivered"
	TypeFailed     = "notification.failed"
	TypeExpired    = "notification.expired"
	TypeRead       = "notification.read"
	// TypeComplained and TypeUnsubscribed come from an email provider's events (SendGrid's):
	// the recipient reported the email as spam, or unsubscribed through the provider.
	TypeComplained   = "notification.complained"
	TypeUnsubscribed = "notification.unsubscribed"
)

// Types lists every event type, in the catalogue's order.
var Types = []string{TypeAccepted, TypeSuppressed, TypeDeferred, TypeSent, TypeDelivered, TypeFailed, TypeExpired, TypeRead, TypeComplained, TypeUnsubscribed}

// KnownType reports whether t is an event type.
func KnownType(t string) bool {
	for _, k := range Types {
		if k == t {
			return true
		}
	}
	return false
}

// typeOf maps a delivery event's stage to the webhook event type; ok is false for stages apps
// are not told about (fanned_out: an internal hand-off, followed by sent or delivered).
func typeOf(stage string) (typ string, ok bool) {
	switch stage {
	case notify.StageAccepted:
		return TypeAccepted, true
	case notify.StageSuppressed:
		return TypeSuppressed, true
	case notify.StageDeferred:
		return TypeDeferred, true
	case notify.StageDispatched:
		return TypeSent, true
	case notify.StageDelivered:
		return TypeDelivered, true
	case notify.StageFailed, notify.StageDeadLettered:
		return TypeFailed, true
	case notify.StageExpired:
		return TypeExpired, true
	case notify.StageRead:
		return TypeRead, true
	case notify.StageComplained:
		return TypeComplained, true
	case notify.StageUnsubscribed:
		return TypeUnsubscribed, true
	}
	return "", false
}

// Event is one thing that happened to one recipient x channel of a notification.
type Event struct {
	// ID is stable: the same outcome, read again from a redelivered or replayed record, has
	// the same id (receivers deduplicate on webhook-id).
	ID   string
	App  string
	User string
	Type string
	Data Data
	At   time.Time
}

// Data is the payload's "data": what an app needs to act, never the message's content.
type Data struct {
	NotificationID string `json:"notification_id"`
	UserID         string `json:"user_id"`
	// Channel is in_app, push, email or sms; "all" for accepted and a deferral before fan-out
	// chose channels.
	Channel  string `json:"channel"`
	Category string `json:"category,omitempty"`
	Tier     string `json:"tier,omitempty"`
	// Reason says why, for suppressed (channel_disabled, bounced, ...), deferred (quiet_hours,
	// send_at) and failed (permanent, a provider's reason, or dead_lettered: retries exhausted).
	Reason string `json:"reason,omitempty"`
}

// payload is the signed body, as Standard Webhooks recommends: type, timestamp, data.
type payload struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      Data      `json:"data"`
}

// Payload is the event's signed body.
func (e Event) Payload() []byte {
	raw, _ := json.Marshal(payload{Type: e.Type, Timestamp: e.At.UTC(), Data: e.Data})
	return raw
}

// EventID is the stable id of one outcome: the same key the exporter counts an outcome once by
// (notification, user, channel, stage), with the app, hashed so the id names no user.
func EventID(app, notification, user, channel, stage string) string {
	h := sha256.New()
	for _, s := range []string{app, notification, user, channel, stage} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "msg_" + hex.EncodeToString(h.Sum(nil)[:16])
}

// Events maps a decoded batch to webhook events, leaving out stages apps are not told about.
func Events(b notify.EventBatch) []Event {
	out := make([]Event, 0, len(b.Outcomes))
	for _, o := range b.Outcomes {
		typ, ok := typeOf(o.Stage)
		if !ok || o.User == "" {
			continue
		}
		reason := o.Reason
		if o.Stage == notify.StageDeadLettered {
			reason = "dead_lettered"
		}
		out = append(out, Event{
			ID: EventID(b.App, b.NotificationID, o.User, o.Channel, o.Stage), App: b.App, User: o.User, Type: typ, At: b.At,
			Data: Data{NotificationID: b.NotificationID, UserID: o.User, Channel: o.Channel, Category: b.Category, Tier: b.Tier, Reason: reason},
		})
	}
	return out
}

// Matches reports whether an endpoint filtering on types takes events of type typ (no filter:
// every type).
func Matches(types []string, typ string) bool {
	if len(types) == 0 {
		return true
	}
	for _, t := range types {
		if t == typ {
			return true
		}
	}
	return false
}
