package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/platform/kafka"
)

// Stages of a delivery as the region's delivery events name them (analytics/wire's stages:
// the exporter passes them through unchanged).
const (
	StageAccepted     = "accepted"
	StageFannedOut    = "fanned_out"
	StageSuppressed   = "suppressed"
	StageDeferred     = "deferred"
	StageExpired      = "expired"
	StageDispatched   = "dispatched"
	StageDelivered    = "delivered"
	StageFailed       = "failed"
	StageDeadLettered = "dead_lettered"
	StageRead         = "read"
	// StageComplained and StageUnsubscribed are what a recipient did with a delivered email,
	// reported by the email provider (a spam report, an unsubscribe): they are told to the
	// app as webhook events and are not stages of the delivery funnel analytics counts.
	StageComplained   = "complained"
	StageUnsubscribed = "unsubscribed"
)

// RecipientAction reports whether stage is what a recipient did (complained, unsubscribed)
// rather than a stage of the delivery funnel.
func RecipientAction(stage string) bool {
	return stage == StageComplained || stage == StageUnsubscribed
}

// ChannelAll is the channel of an accepted outcome: channels are chosen later, at fan-out.
const ChannelAll = "all"

// EventsTopic is the region's delivery-events topic: "eu-west-1.events". Its records never
// leave the region; the exporter turns them into k-anonymous counts.
func EventsTopic(region string) string { return region + ".events" }

// EventBatch is one record on the events topic: the outcomes of one stage's unit of work for one
// notification (a fan-out chunk, a dispatch task, a read call). One record per unit rather than
// per recipient keeps the extra Kafka traffic to a record per chunk.
type EventBatch struct {
	App            string `json:"app"`
	Tier           string `json:"tier"`
	Category       string `json:"category"`
	NotificationID string `json:"notification_id"`
	// DueAt is when delivery became due (accepted, or the end of a deferral); delivered
	// latency is At - DueAt.
	DueAt time.Time `json:"due_at"`
	// At is when the stage happened; it sets the outcome's 1-minute window.
	At       time.Time `json:"at"`
	Outcomes []Outcome `json:"outcomes"`
}

// Outcome is one recipient x channel reaching a stage.
type Outcome struct {
	User string `json:"user,omitempty"`
	// Ref is, in a sealed record, the 1-based position of the outcome's user among the users
	// the record is sealed for (the id itself is only inside that user's wrap).
	Ref     int    `json:"ref,omitempty"`
	Channel string `json:"channel"`
	Stage   string `json:"stage"`
	Reason  string `json:"reason,omitempty"`
	// Country is the ISO code of an SMS recipient's number (it prices the message); empty
	// for other channels or an unknown prefix.
	Country string `json:"country,omitempty"`
}

// Message encodes b for the events topic, sealed for the users of its outcomes (s nil: plain;
// outcomes of erased users are left out),
// keyed by notification so one notification's records stay in order. It returns false when b
// has no outcome (nothing to produce).
func (b EventBatch) Message(ctx context.Context, s Sealer, region string) (kafka.Message, bool, error) {
	if len(b.Outcomes) == 0 {
		return kafka.Message{}, false, nil
	}
	if s == nil {
		raw, err := json.Marshal(b)
		if err != nil {
			return kafka.Message{}, false, fmt.Errorf("encoding delivery events: %w", err)
		}
		return kafka.Message{Topic: EventsTopic(region), Key: b.NotificationID, Value: raw}, true, nil
	}
	var users []string
	seen := map[string]bool{}
	for _, o := range b.Outcomes {
		if !seen[o.User] {
			seen[o.User] = true
			users = append(users, o.User)
		}
	}
	keys, err := s.For(ctx, b.App, users)
	if err != nil {
		return kafka.Message{}, false, err
	}
	// An erased user's outcomes are left out: nothing is sealed for them again.
	ref := map[string]int{}
	var sealedFor []envelope.Key
	for i, k := range keys {
		if k.ID != "" {
			sealedFor = append(sealedFor, k)
			ref[users[i]] = len(sealedFor)
		}
	}
	outs := make([]Outcome, 0, len(b.Outcomes))
	for _, o := range b.Outcomes {
		if ref[o.User] == 0 {
			continue
		}
		o.Ref, o.User = ref[o.User], ""
		outs = append(outs, o)
	}
	if len(outs) == 0 {
		return kafka.Message{}, false, nil
	}
	b.Outcomes = outs
	raw, err := json.Marshal(b)
	if err != nil {
		return kafka.Message{}, false, fmt.Errorf("encoding delivery events: %w", err)
	}
	value, _, err := seal(raw, sealedFor, "")
	if err != nil {
		return kafka.Message{}, false, err
	}
	return kafka.Message{Topic: EventsTopic(region), Key: b.NotificationID, Value: value}, true, nil
}

// DecodeEventBatch reads an events topic record. Outcomes of users whose key was destroyed are
// left out and counted in erased; ErrErased when none is left.
func DecodeEventBatch(ctx context.Context, s Sealer, raw []byte) (b EventBatch, erased int, err error) {
	if !envelope.IsSealed(raw) {
		err = json.Unmarshal(raw, &b)
		return b, 0, err
	}
	o, err := open(ctx, s, raw)
	if err != nil {
		return EventBatch{}, 0, err
	}
	if err := json.Unmarshal(o.Content, &b); err != nil {
		return EventBatch{}, 0, err
	}
	kept := b.Outcomes[:0]
	for _, out := range b.Outcomes {
		if out.Ref < 1 || out.Ref > len(o.Users) {
			return EventBatch{}, 0, fmt.Errorf("delivery event refers to user %d of %d", out.Ref, len(o.Users))
		}
		if out.User = o.Users[out.Ref-1]; out.User == "" {
			erased++
			continue
		}
		out.Ref = 0
		kept = append(kept, out)
	}
	b.Outcomes = kept
	return b, erased, nil
}

// StageOf maps a fan-out or dispatch state and reason to the events' stage and reason: the
// suppression reason "expired" is its own stage.
func StageOf(state, reason string) (stage, outReason string) {
	switch {
	case state == StateSuppressed && reason == ReasonExpired:
		return StageExpired, ""
	case state == StateQueued:
		return StageFannedOut, ""
	}
	return state, reason
}
