package notify

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// deliveryLatency is the SLO measure: from when a delivery was due (accepted, or the end of its
// deferral) to delivered (the inbox row written, or the provider's acceptance). Fan-out and
// dispatch both observe it, so it is declared once here.
var deliveryLatency = promauto.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "herald_delivery_latency_seconds",
	Help:    "Due (accepted, or end of deferral) to delivered, by tier and channel.",
	Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800},
}, []string{"region", "tier", "channel"})

// ObserveDelivered records one delivery that was due at due.
func ObserveDelivered(region, tier, channel string, due, now time.Time) {
	deliveryLatency.WithLabelValues(region, tier, channel).Observe(max(0, now.Sub(due).Seconds()))
}

// Due is when a task became due: DueAt when fan-out set it (a deferred or scheduled send),
// else its acceptance.
func (t Task) Due() time.Time {
	if !t.DueAt.IsZero() {
		return t.DueAt
	}
	return t.AcceptedAt
}
