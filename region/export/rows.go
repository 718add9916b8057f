package export

import (
	"strings"
	"time"

	"github.com/herald-notify/herald/analytics/wire"
	"github.com/herald-notify/herald/region/notify"
)

// row is one outcome as the exporter stores it.
type row struct {
	key                                                  string
	window                                               time.Time
	app, tier, category, channel, stage, reason, country string
	user                                                 string
	latencyMS                                            *int64
}

// EventKey identifies one recipient x channel reaching one stage of one notification: the same
// outcome produced twice (a redelivered stage) has the same key and is stored once.
func EventKey(notificationID, user, channel, stage string) string {
	return strings.Join([]string{notificationID, user, channel, stage}, "|")
}

// WindowOf is the 1-minute window (UTC) an outcome at t counts in.
func WindowOf(t time.Time) time.Time { return t.UTC().Truncate(wire.Window) }

// rows turns a record into the rows to store. Outcomes central would refuse (a stage, reason
// or channel outside its vocabularies) are dropped and counted, so one bad outcome never
// blocks a window; they cannot come from Herald's own stages.
func rows(b notify.EventBatch) (out []row, dropped int) {
	window := WindowOf(b.At)
	if !wire.ValidTier(b.Tier) || b.App == "" {
		return nil, len(b.Outcomes)
	}
	category := b.Category
	for _, o := range b.Outcomes {
		if notify.RecipientAction(o.Stage) { // told to the app, not counted in the funnel
			continue
		}
		if !wire.ValidStage(o.Stage) || !wire.ValidReason(o.Stage, o.Reason) || !wire.ValidChannel(o.Channel) || o.User == "" {
			dropped++
			continue
		}
		country := ""
		if o.Channel == notify.SMS {
			country = o.Country
		}
		r := row{key: EventKey(b.NotificationID, o.User, o.Channel, o.Stage), window: window, app: b.App, tier: b.Tier,
			category: category, channel: o.Channel, stage: o.Stage, reason: o.Reason, country: country, user: o.User}
		if o.Stage == wire.StageDelivered && !b.DueAt.IsZero() {
			ms := max(0, b.At.Sub(b.DueAt).Milliseconds())
			r.latencyMS = &ms
		}
		out = append(out, r)
	}
	return out, dropped
}
