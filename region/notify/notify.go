// Package notify is the region's data model shared by its stages: the event accepted by the
// API and carried on the tier topics, the per-channel content, the dispatch task, the delivery
// states and suppression reasons. Its JSON forms are the Kafka wire format between stages.
package notify

import (
	"time"
)

// Tiers, in priority order.
const (
	Transactional = "transactional"
	Social        = "social"
	Marketing     = "marketing"
)

// Tiers lists the priority tiers.
var Tiers = []string{Transactional, Social, Marketing}

// Channels.
const (
	InApp = "in_app"
	Push  = "push"
	Email = "email"
	SMS   = "sms"
)

// Channels lists every channel, in the default delivery order.
var Channels = []string{InApp, Push, Email, SMS}

// Delivery states of one recipient x channel.
const (
	StateQueued       = "queued"
	StateDeferred     = "deferred"
	StateSuppressed   = "suppressed"
	StateDispatched   = "dispatched"
	StateDelivered    = "delivered"
	StateFailed       = "failed"
	StateDeadLettered = "dead_lettered"
)

// Suppression reasons. Each is also a metric label.
const (
	ReasonDuplicate   = "duplicate"
	ReasonExpired     = "expired"
	ReasonHardStop    = "hard_stop"
	ReasonChannelOff  = "channel_disabled"
	ReasonCategoryOff = "category_disabled"
	ReasonNoAddress   = "no_address"
	ReasonNoDevice    = "no_device"
	ReasonErased      = "erased"
)

// Content is what one channel shows; which fields apply depends on the channel.
type Content struct {
	Title   string `json:"title,omitempty"`
	Body    string `json:"body,omitempty"`
	Link    string `json:"link,omitempty"`
	Subject string `json:"subject,omitempty"`
	Text    string `json:"text,omitempty"`
	HTML    string `json:"html,omitempty"`
}

// WorkflowRef is the workflow run and step a notification came from.
type WorkflowRef struct {
	ID      string `json:"workflow_id"`
	Version int64  `json:"version"`
	RunID   string `json:"run_id"`
	Step    string `json:"step"`
}

// Event is an accepted notification as it travels on a tier topic. Content is rendered at
// accept time, so a template change or a missing variable never surfaces later in the pipeline.
type Event struct {
	ID         string             `json:"id"`
	AppID      string             `json:"app_id"`
	Tier       string             `json:"tier"`
	Category   string             `json:"category"`
	TemplateID string             `json:"template_id,omitempty"`
	Content    map[string]Content `json:"content"`
	// Localized holds the rendered variants of a template with locales, by canonical BCP 47
	// tag; fan-out gives each recipient the one their locale picks (ContentFor). Absent in
	// events without variants, and in records written before it existed.
	Localized      map[string]map[string]Content `json:"localized,omitempty"`
	Recipients     []string                      `json:"recipients,omitempty"`
	Topic          string                        `json:"topic,omitempty"`
	Channels       []string                      `json:"channels,omitempty"`
	SendAt         *time.Time                    `json:"send_at,omitempty"`
	IdempotencyKey string                        `json:"idempotency_key,omitempty"`
	Metadata       map[string]string             `json:"metadata,omitempty"`
	// Workflow names the workflow run and step that produced the notification; only the
	// workflow runner sets it (a send's metadata, which a caller writes, never does).
	Workflow   *WorkflowRef `json:"workflow,omitempty"`
	AcceptedAt time.Time    `json:"accepted_at"`
	// Deferred marks an event put back by the scheduler: its send_at or quiet hours were
	// honoured already, so fan-out does not defer it again.
	Deferred bool `json:"deferred,omitempty"`
	// OnlyChannels narrows a deferred single-recipient event to the channels that were deferred.
	OnlyChannels []string `json:"only_channels,omitempty"`
}

// Target is where a dispatch task goes: device tokens for push, an address for email, a
// number for SMS.
type Target struct {
	Devices []Device `json:"devices,omitempty"`
	Email   string   `json:"email,omitempty"`
	Phone   string   `json:"phone,omitempty"`
}

// Device is one push target.
type Device struct {
	DeviceID string `json:"device_id"`
	Platform string `json:"platform"`
	Token    string `json:"token"`
}

// Task is one recipient x channel delivery, on its tier's and channel's dispatch topic, keyed by recipient
// so one user's tasks stay in order.
type Task struct {
	NotificationID string            `json:"notification_id"`
	AppID          string            `json:"app_id"`
	Tier           string            `json:"tier"`
	Category       string            `json:"category"`
	UserID         string            `json:"user_id"`
	Channel        string            `json:"channel"`
	Content        Content           `json:"content"`
	Target         Target            `json:"target"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	AcceptedAt     time.Time         `json:"accepted_at"`
	// DueAt is when the delivery became due, when later than AcceptedAt (send_at, quiet hours):
	// the latency the SLO measures starts there.
	DueAt time.Time `json:"due_at,omitzero"`
	// ExpiresAt is when the task becomes useless (the tier's maximum age): the dispatcher
	// suppresses it as expired instead of sending it late.
	ExpiresAt time.Time `json:"expires_at"`
	Attempt   int       `json:"attempt"`
	// InboxItem says the notification left the user an inbox item (or a topic feed item) to
	// fetch: a content-free push then needs no copy of its content in the push content store.
	// False (and absent in older records) makes the dispatcher keep one.
	InboxItem bool `json:"inbox_item,omitempty"`
}

// IngressTopic is the topic a tier's events are accepted into: "eu-west-1.notify.marketing".
func IngressTopic(region, tier string) string { return region + ".notify." + tier }

// DispatchTopic is the task topic of a tier and channel: "eu-west-1.dispatch.transactional.push".
// Each tier has its own topic per channel (and its own consumer group and pool), so a marketing
// backlog never queues in front of an OTP. A tier Herald does not know (a record that does not
// say) is dispatched as marketing: it gets no priority it cannot show.
func DispatchTopic(region, tier, channel string) string {
	return region + ".dispatch." + DispatchTier(tier) + "." + channel
}

// DispatchTier is the tier whose dispatch topics carry a task of tier: tier itself when known,
// else Marketing.
func DispatchTier(tier string) string {
	switch tier {
	case Transactional, Social, Marketing:
		return tier
	}
	return Marketing
}

// LegacyDispatchTopic is a channel's task topic before tiers had their own, shared by every
// tier: "eu-west-1.dispatch.push". A region upgraded from that layout still drains it
// (region/dispatch); nothing new is produced to it.
func LegacyDispatchTopic(region, channel string) string { return region + ".dispatch." + channel }
