package wire

import (
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of a send request.
const (
	MaxSendBytes    = 256 << 10
	MaxSmallBytes   = 16 << 10
	MaxRecipients   = 1000
	MaxMetadataKeys = 50
	MaxTextBytes    = 8 << 10
	maxScheduleAge  = 30 * 24 * time.Hour
)

// The vocabulary of the API.
var (
	Tiers    = []string{"transactional", "social", "marketing"}
	Channels = []string{"in_app", "push", "email", "sms"}
)

var (
	idRE           = IDRE
	topicRE        = TopicRE
	categoryRE     = CategoryRE
	countryRE      = regexp.MustCompile(`^[A-Z]{2}$`)
	jurisdictionRE = regexp.MustCompile(`^[A-Z]{2,8}$`)
	PhoneRE        = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	localeRE       = regexp.MustCompile(`^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$`)
	schemeRE       = regexp.MustCompile(`^[a-z][a-z0-9+.-]*$`)
	APNsTokenRE    = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	FCMTokenRE     = regexp.MustCompile(`^[A-Za-z0-9_:.-]{20,}$`)
)

// The patterns of names, as the OpenAPI documents give them.
var (
	// IDRE is what a user, template, device or app id matches (besides not being "." or "..").
	IDRE = regexp.MustCompile(IDPattern)
	// TopicRE is what a topic name matches (besides not being "." or "..").
	TopicRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
	// CategoryRE is what a category matches.
	CategoryRE = regexp.MustCompile(`^[a-z0-9_.-]{1,64}$`)
)

// IDPattern is IDRE's source.
const IDPattern = `^[A-Za-z0-9_.:@+-]{1,128}$`

// ValidID reports whether s can name a user, a template or a device: 1-128 of
// [A-Za-z0-9_.:@+-], and not "." or ".." (which a path would resolve).
func ValidID(s string) bool { return idRE.MatchString(s) && s != "." && s != ".." }

// ValidTopic reports whether s can name a topic.
func ValidTopic(s string) bool { return topicRE.MatchString(s) && s != "." && s != ".." }

// ValidJurisdiction reports whether s is shaped like a jurisdiction code (EU, US).
func ValidJurisdiction(s string) bool { return jurisdictionRE.MatchString(s) }

// blockedSchemes are link schemes that run code or carry content instead of pointing somewhere.
var blockedSchemes = []string{"javascript", "data", "vbscript", "file", "blob", "about", "filesystem"}

// CheckLink checks a notification's link: an absolute http(s) URL or an app deep link
// (scheme://...), never a scheme that runs code or carries inline content.
func CheckLink(field, link string) *Error {
	u, err := url.Parse(link)
	bad := refuse(CodeInvalidField, field, field+" must be an absolute http(s) URL or an app deep link (scheme://...)")
	if err != nil || u.Scheme == "" || !schemeRE.MatchString(strings.ToLower(u.Scheme)) || !strings.HasPrefix(link[len(u.Scheme):], "://") {
		return bad
	}
	if slices.Contains(blockedSchemes, strings.ToLower(u.Scheme)) {
		return refuse(CodeInvalidField, field, fmt.Sprintf("%s: the %s: scheme is not allowed", field, strings.ToLower(u.Scheme)))
	}
	for _, r := range link {
		if r < 0x20 || r == 0x7f || r == ' ' {
			return bad
		}
	}
	return nil
}

// Send is the body of POST /v1/notifications.
type Send struct {
	Type           string            `json:"type,omitzero"`
	Category       string            `json:"category,omitzero"`
	TemplateID     string            `json:"template_id,omitzero"`
	Data           map[string]any    `json:"data,omitzero"`
	Title          string            `json:"title,omitzero"`
	Body           string            `json:"body,omitzero"`
	Link           string            `json:"link,omitzero"`
	Recipients     []string          `json:"recipients,omitzero"`
	Topic          *string           `json:"topic,omitzero"`
	Channels       []string          `json:"channels,omitzero"`
	SendAt         string            `json:"send_at,omitzero"`
	IdempotencyKey string            `json:"idempotency_key,omitzero"`
	Metadata       map[string]string `json:"metadata,omitzero"`

	sendAt *time.Time
}

// DecodeSend reads and checks a send body; now is the accept time.
func DecodeSend(raw []byte, now time.Time) (*Send, *Error) {
	var s Send
	if e := Decode(raw, &s); e != nil {
		return nil, e
	}
	if e := s.Validate(now); e != nil {
		return nil, e
	}
	return &s, nil
}

// ScheduledFor is the time a validated send is due, nil when it is due now.
func (q *Send) ScheduledFor() *time.Time { return q.sendAt }

// TopicName is the topic of a topic send, "" for a send to recipients.
func (q *Send) TopicName() string {
	if q.Topic == nil {
		return ""
	}
	return *q.Topic
}

// Validate checks a decoded send and normalises it: recipients lose their repeats, in order.
func (q *Send) Validate(now time.Time) *Error {
	switch {
	case q.Type == "":
		return refuse(CodeMissingField, "type", "type is required (transactional, social or marketing)")
	case !slices.Contains(Tiers, q.Type):
		return refuse(CodeInvalidType, "type", fmt.Sprintf("unknown type %q (transactional, social or marketing)", q.Type))
	}
	if q.Category != "" && !categoryRE.MatchString(q.Category) {
		return refuse(CodeInvalidField, "category", "category must match "+categoryRE.String())
	}
	inline := q.Title != "" || q.Body != "" || q.Link != ""
	switch {
	case q.TemplateID != "" && inline:
		return refuse(CodeConflictingFields, "template_id", "give template_id with data, or an inline title and body, not both")
	case q.TemplateID != "" && !ValidID(q.TemplateID):
		return refuse(CodeInvalidField, "template_id", "template_id must match "+IDPattern)
	case q.TemplateID == "" && q.Body == "":
		return refuse(CodeMissingField, "body", "give template_id, or an inline body")
	case q.TemplateID == "" && q.Data != nil:
		return refuse(CodeConflictingFields, "data", "data is only used with template_id")
	case q.TemplateID == "" && q.Category == "":
		return refuse(CodeMissingField, "category", "category is required with an inline body")
	}
	for _, f := range []struct{ name, v string }{{"title", q.Title}, {"body", q.Body}, {"link", q.Link}} {
		if len(f.v) > MaxTextBytes || !utf8.ValidString(f.v) {
			return refuse(CodeInvalidField, f.name, fmt.Sprintf("%s must be valid UTF-8 of at most %d bytes", f.name, MaxTextBytes))
		}
	}
	if q.Link != "" {
		if e := CheckLink("link", q.Link); e != nil {
			return e
		}
	}
	if e := checkAudience(&q.Recipients, q.Topic); e != nil {
		return e
	}
	if q.Channels != nil && len(q.Channels) == 0 {
		return refuse(CodeInvalidChannel, "channels", "channels, when given, lists at least one channel (leave it out for every channel)")
	}
	for i, ch := range q.Channels {
		if !slices.Contains(Channels, ch) {
			return refuse(CodeInvalidChannel, fmt.Sprintf("channels[%d]", i), fmt.Sprintf("unknown channel %q (in_app, push, email, sms)", ch))
		}
		if slices.Index(q.Channels, ch) != i {
			return refuse(CodeInvalidChannel, fmt.Sprintf("channels[%d]", i), fmt.Sprintf("channel %q is listed twice", ch))
		}
	}
	q.sendAt = nil
	if q.SendAt != "" {
		t, err := time.Parse(time.RFC3339, q.SendAt)
		if err != nil {
			return refuse(CodeInvalidSendAt, "send_at", "send_at must be an RFC 3339 time, e.g. 2026-12-01T09:00:00Z")
		}
		if t.After(now.Add(maxScheduleAge)) {
			return refuse(CodeInvalidSendAt, "send_at", "send_at is more than 30 days ahead")
		}
		if t.After(now) {
			q.sendAt = &t
		}
	}
	if len(q.IdempotencyKey) > 255 || (q.IdempotencyKey != "" && strings.TrimSpace(q.IdempotencyKey) == "") {
		return refuse(CodeInvalidField, "idempotency_key", "idempotency_key must be 1-255 characters, not only spaces")
	}
	if len(q.Metadata) > MaxMetadataKeys {
		return refuse(CodeInvalidField, "metadata", fmt.Sprintf("at most %d metadata keys", MaxMetadataKeys))
	}
	for k, v := range q.Metadata {
		if k == "" || len(k) > 64 || len(v) > 1024 {
			return refuse(CodeInvalidField, "metadata."+k, "metadata keys are 1-64 bytes and values at most 1024 bytes")
		}
	}
	return nil
}

// checkAudience checks who a send or a trigger is for: recipients or a topic, not both, and
// drops repeated recipients, in order.
func checkAudience(recipients *[]string, topic *string) *Error {
	list := *recipients
	switch {
	case topic != nil && list != nil:
		return refuse(CodeConflictingFields, "topic", "give recipients or topic, not both")
	case topic != nil:
		if !ValidTopic(*topic) {
			return refuse(CodeInvalidField, "topic", "topic must match "+topicRE.String())
		}
		return nil
	case len(list) == 0:
		return refuse(CodeMissingField, "recipients", "give at least one recipient, or a topic")
	case len(list) > MaxRecipients:
		return refuse(CodeTooManyRecipients, "recipients", fmt.Sprintf("at most %d recipients per request (use a topic for more)", MaxRecipients))
	}
	seen := make(map[string]bool, len(list))
	uniq := make([]string, 0, len(list))
	for i, u := range list {
		if !ValidID(u) {
			return refuse(CodeInvalidField, fmt.Sprintf("recipients[%d]", i), "user ids must match "+IDPattern+" and not be . or ..")
		}
		if !seen[u] {
			seen[u] = true
			uniq = append(uniq, u)
		}
	}
	*recipients = uniq
	return nil
}

// ForRecipients is a copy of a validated send with only recipients (one region's share).
func (q *Send) ForRecipients(recipients []string) *Send {
	c := *q
	c.Recipients = recipients
	return &c
}

// User is the body of PUT /v1/users/{user_id}. A field left out keeps its stored value; an empty
// email, phone or locale removes it. On the public API, country (or jurisdiction) registers the
// user; the gateway forwards jurisdiction (and country when known) to the regions, which refuse
// a user outside their own jurisdiction.
type User struct {
	Country      *string `json:"country,omitzero"`
	Jurisdiction *string `json:"jurisdiction,omitzero"`
	Email        *string `json:"email,omitzero"`
	Phone        *string `json:"phone,omitzero"`
	Locale       *string `json:"locale,omitzero"`
}

// Validate checks each field given.
func (u *User) Validate() *Error {
	if u.Country != nil && !countryRE.MatchString(*u.Country) {
		return refuse(CodeInvalidField, "country", "country must be an ISO 3166-1 alpha-2 code like DE")
	}
	if u.Jurisdiction != nil && !jurisdictionRE.MatchString(*u.Jurisdiction) {
		return refuse(CodeInvalidField, "jurisdiction", "jurisdiction must be a jurisdiction code like EU")
	}
	if u.Email != nil && *u.Email != "" {
		if a, err := mail.ParseAddress(*u.Email); err != nil || a.Address != *u.Email || len(*u.Email) > 254 {
			return refuse(CodeInvalidField, "email", "email must be a plain address like ada@example.com")
		}
	}
	if u.Phone != nil && *u.Phone != "" && !PhoneRE.MatchString(*u.Phone) {
		return refuse(CodeInvalidField, "phone", "phone must be E.164, like +4915112345678")
	}
	if u.Locale != nil && *u.Locale != "" && (len(*u.Locale) > 35 || !localeRE.MatchString(*u.Locale)) {
		return refuse(CodeInvalidField, "locale", "locale must be a BCP 47 tag like de-DE")
	}
	return nil
}

// Device is the body of POST /v1/users/{user_id}/devices.
type Device struct {
	Platform string `json:"platform"`
	Token    string `json:"token"`
	DeviceID string `json:"device_id"`
}

// Validate checks the token against the platform.
func (d *Device) Validate() *Error {
	switch d.Platform {
	case "ios":
		if !APNsTokenRE.MatchString(d.Token) {
			return refuse(CodeInvalidField, "token", "an APNs device token is 64 hexadecimal characters")
		}
	case "android", "web":
		if !FCMTokenRE.MatchString(d.Token) || len(d.Token) > 4096 {
			return refuse(CodeInvalidField, "token", "an FCM registration token is 20-4096 characters of [A-Za-z0-9_:.-]")
		}
	default:
		return refuse(CodeInvalidField, "platform", `platform must be "ios", "android" or "web"`)
	}
	if !ValidID(d.DeviceID) {
		return refuse(CodeInvalidField, "device_id", "device_id must match "+IDPattern+" and not be . or ..")
	}
	return nil
}

// UserRef is the body of the routes that name their user in it (mark read, read all).
type UserRef struct {
	UserID string `json:"user_id"`
}

// Validate checks the user id.
func (r *UserRef) Validate() *Error {
	if r.UserID == "" {
		return refuse(CodeMissingField, "user_id", "user_id is required")
	}
	if !ValidID(r.UserID) {
		return refuse(CodeInvalidField, "user_id", "user_id must match "+IDPattern+" and not be . or ..")
	}
	return nil
}

// Content is one channel's content of a template.
type Content struct {
	Title   string `json:"title,omitzero"`
	Body    string `json:"body,omitzero"`
	Link    string `json:"link,omitzero"`
	Subject string `json:"subject,omitzero"`
	Text    string `json:"text,omitzero"`
	HTML    string `json:"html,omitzero"`
}

// Template is the body of PUT /v1/templates/{id}. Locales holds variants of Content per
// locale (a canonical BCP 47 tag): each has the channels and non-empty fields of Content.
// DefaultLocale is the locale whose plural and number rules Content follows ("en" when empty).
type Template struct {
	Type          string                        `json:"type"`
	Category      string                        `json:"category"`
	Content       map[string]Content            `json:"content"`
	Locales       map[string]map[string]Content `json:"locales,omitzero"`
	DefaultLocale string                        `json:"default_locale,omitzero"`
}

// Validate checks type, category and channels; the template language is checked by the region,
// which renders it.
func (t *Template) Validate() *Error {
	if !slices.Contains(Tiers, t.Type) {
		return refuse(CodeInvalidType, "type", fmt.Sprintf("unknown type %q (transactional, social or marketing)", t.Type))
	}
	if !categoryRE.MatchString(t.Category) {
		return refuse(CodeInvalidField, "category", "category must match "+categoryRE.String())
	}
	for ch := range t.Content {
		if !slices.Contains(Channels, ch) {
			return refuse(CodeInvalidChannel, "content."+ch, fmt.Sprintf("unknown channel %q (in_app, push, email, sms)", ch))
		}
	}
	return t.validateLocales()
}

// QuietHours is a daily window in the user's local time, "22:00" to "07:00".
type QuietHours struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// Preferences is the body of PUT /v1/users/{user_id}/preferences.
type Preferences struct {
	Channels     map[string]bool            `json:"channels,omitzero"`
	Categories   map[string]map[string]bool `json:"categories,omitzero"`
	QuietHours   *QuietHours                `json:"quiet_hours,omitzero"`
	Timezone     string                     `json:"timezone,omitzero"`
	ChannelOrder []string                   `json:"channel_order,omitzero"`
	HardStop     bool                       `json:"hard_stop"`
}

// Validate checks channels, categories, quiet hours, time zone and order.
func (p *Preferences) Validate() *Error {
	known := func(ch string) bool { return slices.Contains(Channels, ch) }
	for ch := range p.Channels {
		if !known(ch) {
			return refuse(CodeInvalidField, "channels."+ch, "unknown channel (in_app, push, email, sms)")
		}
	}
	for cat, chans := range p.Categories {
		if !categoryRE.MatchString(cat) {
			return refuse(CodeInvalidField, "categories."+cat, "categories must match "+categoryRE.String())
		}
		for ch := range chans {
			if !known(ch) {
				return refuse(CodeInvalidField, "categories."+cat+"."+ch, "unknown channel (in_app, push, email, sms)")
			}
		}
	}
	if q := p.QuietHours; q != nil {
		for _, f := range []struct{ name, v string }{{"quiet_hours.start", q.Start}, {"quiet_hours.end", q.End}} {
			if _, err := time.Parse("15:04", f.v); err != nil || len(f.v) != 5 {
				return refuse(CodeInvalidField, f.name, fmt.Sprintf("%q is not a time of day HH:MM", f.v))
			}
		}
	}
	if p.Timezone != "" {
		if _, err := time.LoadLocation(p.Timezone); err != nil || p.Timezone == "Local" {
			return refuse(CodeInvalidField, "timezone", fmt.Sprintf("%q is not an IANA time zone like Europe/Paris", p.Timezone))
		}
	}
	seen := map[string]bool{}
	for i, ch := range p.ChannelOrder {
		if !known(ch) {
			return refuse(CodeInvalidField, fmt.Sprintf("channel_order[%d]", i), "unknown channel (in_app, push, email, sms)")
		}
		if seen[ch] {
			return refuse(CodeInvalidField, fmt.Sprintf("channel_order[%d]", i), "channel listed twice")
		}
		seen[ch] = true
	}
	return nil
}

// Empty is the body of a route that takes none: an empty body or {} is accepted, anything else
// refused (a member is an unknown field).
type Empty struct{}
