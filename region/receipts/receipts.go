// Package receipts takes in what providers report after they took a message: Twilio's status
// callbacks (sent, delivered, undelivered, failed), each signed with X-Twilio-Signature, and
// SendGrid's signed Event Webhook for email (sendgrid.go: delivered, bounced, deferred,
// complained, unsubscribed).
//
// The dispatcher gives each SMS a StatusCallback URL on the jurisdiction's gateway,
// /v1/receipts/twilio/{token}, whose token (region/sealtoken, purpose "receipts") names the
// delivery the callbacks are about: app, notification, user, channel, tier, category and the
// provider that was called. The gateway forwards a callback to the region the token names, as
// it parsed it; the region opens the token, verifies the signature with the provider's auth
// token, and records the status beside the delivery's state (delivery_status.receipts, a map
// of status to time: adding to it commutes, so receipts that arrive twice or out of order
// leave the same final state). A receipt that moves the final state on produces the matching
// delivery event (delivered, or failed), which the exporter counts and the webhooks role tells
// the app; an undelivered number the carrier says does not exist is suppressed.
package receipts

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/sealtoken"
	"github.com/herald-notify/herald/region/suppress"
)

// Purpose is the sealtoken purpose (and region_secrets key name) of receipt tokens.
const Purpose = "receipts"

// TwilioPath is the path of Twilio status callbacks on a gateway; the token follows it.
const TwilioPath = "/v1/receipts/twilio/"

// Errors the API maps to answers.
var (
	// ErrNotFound: the token is not one this region minted (forged, changed, another
	// region's), or names a provider the region no longer has.
	ErrNotFound = errors.New("no delivery has that receipt token")
	// ErrSignature: X-Twilio-Signature does not verify.
	ErrSignature = errors.New("the X-Twilio-Signature does not verify")
)

// FieldError is a callback parameter that is missing or malformed.
type FieldError struct{ Field, Msg string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Claim names the delivery a receipt token is about.
type Claim struct {
	App          string `json:"a"`
	Notification string `json:"n"`
	User         string `json:"u"`
	Channel      string `json:"ch"`
	Tier         string `json:"t"`
	Category     string `json:"c"`
	Provider     string `json:"p"`
	// Due is when delivery became due (accepted, or a deferral's end): a delivered receipt's
	// latency counts from it, to the handset.
	Due      time.Time `json:"d,omitzero"`
	IssuedAt time.Time `json:"iat"`
}

func (c Claim) valid() bool {
	return c.App != "" && c.Notification != "" && c.User != "" && c.Channel != "" && c.Tier != "" && c.Provider != ""
}

// Statuses a receipt records, as Twilio names them.
const (
	StatusSent        = "sent"
	StatusDelivered   = "delivered"
	StatusUndelivered = "undelivered"
	StatusFailed      = "failed"
	// Email statuses, from SendGrid's event webhook (sendgrid.go).
	StatusBounced      = "bounced"
	StatusDeferred     = "deferred"
	StatusComplained   = "complained"
	StatusUnsubscribed = "unsubscribed"
)

// rank orders statuses: the final state of a delivery is its receipts' highest. A failure
// ranks above delivered: a carrier reports one or the other, and should both arrive, the
// failure is the one an app must act on. Statuses before the carrier (queued, accepted,
// scheduled, sending) are not recorded.
//
// A deferral ranks with sent (the message is still on its way); a complaint or an unsubscribe
// has no rank: it is what the recipient did with a delivered message, recorded beside the
// statuses without moving the delivery's state.
func rank(status string) int {
	switch status {
	case StatusSent, StatusDeferred:
		return 1
	case StatusDelivered:
		return 2
	case StatusUndelivered, StatusFailed, StatusBounced:
		return 3
	}
	return 0
}

// actionStage is the delivery event of what a recipient did (complained, unsubscribed); ""
// for a status.
func actionStage(status string) string {
	switch status {
	case StatusComplained:
		return notify.StageComplained
	case StatusUnsubscribed:
		return notify.StageUnsubscribed
	}
	return ""
}

// Final returns the final status of a delivery's receipts ("" when none): the highest rank,
// ties broken by name, so any order of the same receipts gives the same answer.
func Final(statuses []string) string {
	best := ""
	for _, s := range statuses {
		if r, b := rank(s), rank(best); r > b || (r == b && r > 0 && s > best) {
			best = s
		}
	}
	return best
}

// State is the delivery state a final receipt status means: delivered, failed, or "" (sent:
// the dispatcher's own state stands).
func State(final string) string {
	switch final {
	case StatusDelivered:
		return notify.StateDelivered
	case StatusUndelivered, StatusFailed, StatusBounced:
		return notify.StateFailed
	}
	return ""
}

// Carrier error codes of undelivered and failed texts (Twilio's 30xxx): the number is not a
// phone a text reaches (hard bounce: suppressed), or not now (soft: counted, suppressed after
// repeated ones, as the dispatcher counts a provider's soft refusals).
var (
	hardCodes = map[string]bool{"30005": true, "30006": true, "21211": true, "21614": true}
	softCodes = map[string]bool{"30003": true, "30008": true}
)

// Bounce classifies a failure's error code: "hard", "soft" or "". An email bounce (or a
// message SendGrid dropped) is hard, a deferral soft, whatever the code.
func Bounce(status, code string) string {
	switch status {
	case StatusBounced:
		return "hard"
	case StatusDeferred:
		return "soft"
	}
	if rank(status) < 3 {
		return ""
	}
	switch {
	case hardCodes[code]:
		return "hard"
	case softCodes[code]:
		return "soft"
	}
	return ""
}

// Receipt is one verified status report about one delivery.
type Receipt struct {
	Claim     Claim
	Status    string
	Code      string // the carrier's error code, for undelivered and failed
	MessageID string
	To        string
	At        time.Time
	// Source names the provider kind in suppression details: twilio, sendgrid.
	Source string
}

// twilioStatuses are every MessageStatus Twilio posts; the ones rank does not order are
// acknowledged and not recorded.
var twilioStatuses = map[string]bool{"queued": true, "accepted": true, "scheduled": true, "sending": true, "canceled": true,
	"sent": true, "delivered": true, "undelivered": true, "failed": true, "receiving": true, "received": true, "read": true, "partially_delivered": true}

// one returns the single value of a parameter; a missing, repeated or overlong one is a
// FieldError.
func one(p map[string][]string, name string, required bool, max int) (string, error) {
	vs := p[name]
	switch {
	case len(vs) == 0 && !required:
		return "", nil
	case len(vs) != 1:
		return "", &FieldError{name, "must be given once"}
	case len(vs[0]) > max || strings.ContainsRune(vs[0], 0):
		return "", &FieldError{name, "is not a value Twilio sends"}
	case required && vs[0] == "":
		return "", &FieldError{name, "must not be empty"}
	}
	return vs[0], nil
}

// ParseTwilio checks a callback's parameters (the signature is checked apart): MessageSid and
// MessageStatus once each, ErrorCode digits when given.
func ParseTwilio(p map[string][]string) (status, code, sid, to string, err error) {
	if sid, err = one(p, "MessageSid", true, 64); err != nil {
		return
	}
	if status, err = one(p, "MessageStatus", true, 32); err != nil {
		return
	}
	if !twilioStatuses[status] {
		return "", "", "", "", &FieldError{"MessageStatus", "is not a Twilio message status"}
	}
	if code, err = one(p, "ErrorCode", false, 8); err != nil {
		return
	}
	if _, perr := strconv.ParseUint(code, 10, 32); code != "" && perr != nil {
		return "", "", "", "", &FieldError{"ErrorCode", "must be digits"}
	}
	to, err = one(p, "To", false, 64)
	return
}

// Log is where receipts are kept: beside the delivery's state in the delivery log.
type Log interface {
	// Receipts returns the statuses recorded for a delivery.
	Receipts(ctx context.Context, notification, user, channel string) ([]string, error)
	// AddReceipt records status at for a delivery (adding to what is there).
	AddReceipt(ctx context.Context, notification, user, channel, status, code string, at time.Time) error
}

// Producer hands delivery events to Kafka.
type Producer interface {
	Send(ctx context.Context, msgs ...kafka.Message) error
}

// Suppressor takes a number that bounced onto the app's suppression list.
type Suppressor interface {
	Suppress(ctx context.Context, app, user, channel, address, reason, detail string) error
	SoftBounce(ctx context.Context, app, user, channel, address, notification, detail string) (bool, error)
}

// Service verifies and records receipts.
type Service struct {
	Region string
	Keys   *sealtoken.Keyring
	// AuthToken returns the auth token of the named Twilio provider the app's text went
	// through (an app's own account's, for a text sent with it).
	AuthToken  func(ctx context.Context, app, provider string) (string, bool)
	Deliveries Log
	Producer   Producer
	Sealer     notify.Sealer // nil: plain events (unit tests)
	Suppress   Suppressor    // nil: nothing suppressed
	// Users and Jurisdiction check that the token's user is still a resident of the region's
	// jurisdiction: an erased or moved user's receipts are not found.
	Users interface {
		NotResident(ctx context.Context, app, jurisdiction string, ids []string) ([]int, error)
	}
	Jurisdiction string
	// EmailKeys opens the receipt tokens of email (purpose EmailPurpose), which SendGrid
	// echoes in its events (nil: every email event is skipped).
	EmailKeys *sealtoken.Keyring
	// Prefs turns a category off for a user who complained or unsubscribed through the
	// provider, and PrefsCache tells the preference caches at once (nil: neither).
	Prefs interface {
		TurnOff(ctx context.Context, app, user, category, channel string) (bool, error)
	}
	PrefsCache interface {
		Invalidate(ctx context.Context, app, user string) error
	}
	// ProduceWait bounds the wait for Kafka to take a receipt's event (0: the request's
	// deadline): a callback Kafka cannot take in time is answered 503 at once, rather than
	// holding the API's producer and the gateway's connections while the sends compete for it.
	ProduceWait time.Duration
	Now         func() time.Time
}

// CallbackURL returns the status callback URL of a delivery on gateway (the jurisdiction's
// public base URL), its token minted with keys.
func CallbackURL(keys *sealtoken.Keyring, gateway string, c Claim) (string, error) {
	tok, err := keys.Seal(c)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(gateway, "/") + TwilioPath + tok, nil
}

// Outcome says what a receipt did.
type Outcome struct {
	Status string `json:"status"`
	// Recorded is false for a status already recorded (a repeat) or one not kept (queued...).
	Recorded bool `json:"recorded"`
	// Final is the delivery's final receipt status after this one.
	Final string `json:"final,omitempty"`
}

// Twilio verifies and records one status callback for the delivery token names.
func (s *Service) Twilio(ctx context.Context, token string, cb wire.TwilioCallback) (Outcome, error) {
	var c Claim
	if err := s.Keys.Open(token, &c); err != nil || !c.valid() {
		return Outcome{}, ErrNotFound
	}
	auth, ok := s.AuthToken(ctx, c.App, c.Provider)
	if !ok {
		return Outcome{}, ErrNotFound
	}
	u, err := url.Parse(cb.URL)
	if err != nil || u.EscapedPath() != TwilioPath+token || !hmac.Equal([]byte(wire.TwilioSignature(auth, cb.URL, cb.Params)), []byte(cb.Signature)) {
		return Outcome{}, ErrSignature
	}
	if s.Users != nil {
		missing, err := s.Users.NotResident(ctx, c.App, s.Jurisdiction, []string{c.User})
		if err != nil {
			return Outcome{}, fmt.Errorf("checking residency: %w", err)
		}
		if len(missing) > 0 {
			return Outcome{}, ErrNotFound
		}
	}
	status, code, sid, to, err := ParseTwilio(cb.Params)
	if err != nil {
		return Outcome{}, err
	}
	return s.record(ctx, Receipt{Claim: c, Status: status, Code: code, MessageID: sid, To: to, At: s.now(), Source: "twilio"})
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// record keeps r and, when it moves the delivery's final state on, produces its delivery
// event first: a crash between the two leaves the receipt unrecorded, and its repeat (or the
// provider's next status) produces the event again with the same id, which receivers
// deduplicate; never an event lost.
func (s *Service) record(ctx context.Context, r Receipt) (Outcome, error) {
	c := r.Claim
	action := actionStage(r.Status)
	if rank(r.Status) == 0 && action == "" {
		return Outcome{Status: r.Status}, nil
	}
	have, err := s.Deliveries.Receipts(ctx, c.Notification, c.User, c.Channel)
	if err != nil {
		return Outcome{}, err
	}
	before := Final(have)
	after := Final(append(have, r.Status))
	for _, h := range have {
		if h == r.Status {
			return Outcome{Status: r.Status, Final: before}, nil
		}
	}
	stage, reason := action, ""
	if stage == "" && State(after) != State(before) {
		stage = notify.StageDelivered
		if State(after) == notify.StateFailed {
			stage, reason = notify.StageFailed, "permanent"
			if Bounce(r.Status, r.Code) == "hard" {
				reason = "bounced"
			}
		}
	}
	if stage != "" {
		country := ""
		if c.Channel == notify.SMS {
			country = notify.PhoneCountry(r.To)
		}
		b := notify.EventBatch{App: c.App, Tier: c.Tier, Category: c.Category, NotificationID: c.Notification, DueAt: c.Due, At: r.At,
			Outcomes: []notify.Outcome{{User: c.User, Channel: c.Channel, Stage: stage, Reason: reason, Country: country}}}
		m, ok, err := b.Message(ctx, s.Sealer, s.Region)
		if err != nil {
			return Outcome{}, fmt.Errorf("sealing the receipt's delivery event: %w", err)
		}
		if !ok { // the user was erased: nothing about them is recorded again
			return Outcome{Status: r.Status}, nil
		}
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if s.ProduceWait > 0 {
			pctx, cancel = context.WithTimeout(ctx, s.ProduceWait)
		}
		err = s.Producer.Send(pctx, m)
		cancel()
		if err != nil {
			return Outcome{}, fmt.Errorf("producing the receipt's delivery event: %w", err)
		}
	}
	if err := s.suppress(ctx, r); err != nil {
		return Outcome{}, err
	}
	if err := s.turnOff(ctx, r); err != nil {
		return Outcome{}, err
	}
	if err := s.Deliveries.AddReceipt(ctx, c.Notification, c.User, c.Channel, r.Status, r.Code, r.At); err != nil {
		return Outcome{}, err
	}
	return Outcome{Status: r.Status, Recorded: true, Final: after}, nil
}

// suppress puts a number the carrier says no text reaches, an address that bounced, or one
// whose recipient reported the mail as spam, on the app's list (a soft failure counts towards
// it).
func (s *Service) suppress(ctx context.Context, r Receipt) error {
	if s.Suppress == nil || r.To == "" {
		return nil
	}
	c := r.Claim
	detail := r.Source + " " + r.Status
	if r.Code != "" {
		detail += " " + r.Code
	}
	if r.Status == StatusComplained {
		if err := s.Suppress.Suppress(ctx, c.App, c.User, c.Channel, r.To, suppress.Complained, detail); err != nil {
			return fmt.Errorf("suppressing an address that complained: %w", err)
		}
		return nil
	}
	switch Bounce(r.Status, r.Code) {
	case "hard":
		if err := s.Suppress.Suppress(ctx, c.App, c.User, c.Channel, r.To, suppress.Bounced, detail); err != nil {
			return fmt.Errorf("suppressing a bounced address: %w", err)
		}
	case "soft":
		if _, err := s.Suppress.SoftBounce(ctx, c.App, c.User, c.Channel, r.To, c.Notification, detail); err != nil {
			return fmt.Errorf("counting a soft bounce: %w", err)
		}
	}
	return nil
}
