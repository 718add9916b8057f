package receipts

import (
	"context"
	"fmt"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/notify"
)

// Email receipts come from SendGrid's signed Event Webhook.
//
// The SMTP dispatcher (events: sendgrid) gives each email an X-SMTPAPI header whose
// unique_args carry a receipt token sealed for EmailPurpose; SendGrid echoes unique arguments
// in every event of the message, as the member wire.SendGridTokenField. SendGrid posts batches
// of events, of many messages and so of many regions, to one URL: the jurisdiction's gateway,
// /v1/receipts/sendgrid. The gateway verifies the batch's ECDSA signature and timestamp, parses
// it once, splits it by the region each token names, and forwards each region only its
// events. The region trusts none of it: it opens each token itself (a token another region
// minted, or a forged one, does not open) and checks that the user is a resident of its
// jurisdiction.
//
// An event whose token does not open, or whose user is no longer a resident, is skipped and
// counted, not refused: a batch mixes messages, and one stale token must not make SendGrid
// retry the other events for a day.

// EmailPurpose is the sealtoken purpose (and region_secrets key name) of email receipt tokens.
const EmailPurpose = "receipts-email"

// SendGridPath is the path of SendGrid's event webhook on a gateway, and of the region's
// internal route the gateway forwards a region's events to.
const SendGridPath = "/v1/receipts/sendgrid"

// SendGridStatus maps a SendGrid event to the status it records, with its code:
//   - delivered: delivered;
//   - bounce (type bounce or blocked) and dropped: bounced (a hard bounce: failed, suppressed);
//   - deferred: deferred (a soft bounce, counted towards suppression);
//   - spamreport: complained (suppressed, the category turned off);
//   - unsubscribe, group_unsubscribe: unsubscribed (the category turned off);
//   - processed, open, click, group_resubscribe and types SendGrid may add: "" (acknowledged,
//     not recorded: opens are unreliable since mail clients prefetch images).
func SendGridStatus(ev wire.SendGridEvent) (status, code string) {
	switch ev.Event {
	case "delivered":
		return StatusDelivered, ""
	case "bounce", "dropped":
		return StatusBounced, ev.Status
	case "deferred":
		return StatusDeferred, ev.Status
	case "spamreport":
		return StatusComplained, ""
	case "unsubscribe", "group_unsubscribe":
		return StatusUnsubscribed, ""
	}
	return "", ""
}

// BatchOutcome says what a batch of events did.
type BatchOutcome struct {
	Events int `json:"events"`
	// Recorded events moved something on; Unchanged ones were repeats, or types not recorded.
	Recorded  int `json:"recorded"`
	Unchanged int `json:"unchanged"`
	// Skipped events had a token this region cannot open, or a user no longer its resident.
	Skipped int `json:"skipped"`
	// Statuses counts the events taken by the status they meant ("ignored" for types not
	// recorded) and whether they were recorded, for metrics.
	Statuses map[StatusCount]int `json:"-"`
}

// StatusCount is a key of BatchOutcome.Statuses.
type StatusCount struct {
	Status   string
	Recorded bool
}

// SendGrid records a batch of SendGrid events (the ones the gateway forwarded to this region).
// An error is the region's (a store, Kafka): the whole batch is answered 503 and SendGrid
// posts it again, which the events' idempotence makes harmless.
func (s *Service) SendGrid(ctx context.Context, b wire.SendGridBatch) (BatchOutcome, error) {
	out := BatchOutcome{Events: len(b.Events), Statuses: map[StatusCount]int{}}
	claims := make([]*Claim, len(b.Events))
	byApp := map[string][]int{}
	for i, ev := range b.Events {
		var c Claim
		if s.EmailKeys == nil || ev.Token == "" || s.EmailKeys.Open(ev.Token, &c) != nil || !c.valid() || c.Channel != notify.Email {
			out.Skipped++
			continue
		}
		claims[i] = &c
		byApp[c.App] = append(byApp[c.App], i)
	}
	if s.Users != nil {
		for app, idx := range byApp {
			users := make([]string, len(idx))
			for j, i := range idx {
				users[j] = claims[i].User
			}
			missing, err := s.Users.NotResident(ctx, app, s.Jurisdiction, users)
			if err != nil {
				return BatchOutcome{}, fmt.Errorf("checking residency: %w", err)
			}
			for _, j := range missing {
				claims[idx[j]] = nil
				out.Skipped++
			}
		}
	}
	for i, ev := range b.Events {
		c := claims[i]
		if c == nil {
			continue
		}
		status, code := SendGridStatus(ev)
		if status == "" {
			out.Unchanged++
			out.Statuses[StatusCount{"ignored", false}]++
			continue
		}
		// When the region received it, as a text's receipt: SendGrid's own timestamp may be
		// hours old (a retried batch), and the event's window in analytics is the present one.
		o, err := s.record(ctx, Receipt{Claim: *c, Status: status, Code: code, MessageID: ev.MessageID, To: ev.Email, At: s.now(), Source: "sendgrid"})
		if err != nil {
			return BatchOutcome{}, err
		}
		out.Statuses[StatusCount{status, o.Recorded}]++
		if o.Recorded {
			out.Recorded++
		} else {
			out.Unchanged++
		}
	}
	return out, nil
}

// turnOff turns the notification's category off on its channel for a user who complained
// about or unsubscribed from it through the provider, and tells the preference caches.
// Transactional mail keeps its category: a spam report on a sign-in code must not stop the
// next one (the complaint suppresses the address all the same).
func (s *Service) turnOff(ctx context.Context, r Receipt) error {
	c := r.Claim
	if actionStage(r.Status) == "" || s.Prefs == nil || c.Category == "" || c.Tier == notify.Transactional {
		return nil
	}
	if _, err := s.Prefs.TurnOff(ctx, c.App, c.User, c.Category, c.Channel); err != nil {
		return fmt.Errorf("turning the category off: %w", err)
	}
	if s.PrefsCache != nil {
		if err := s.PrefsCache.Invalidate(ctx, c.App, c.User); err != nil {
			return fmt.Errorf("telling the preference caches: %w", err)
		}
	}
	return nil
}
