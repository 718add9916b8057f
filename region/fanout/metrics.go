package fanout

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	stageCounter = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_fanout_deliveries_total",
		Help: "Recipient x channel outcomes of fan-out, by tier, channel, state and reason.",
	}, []string{"region", "tier", "channel", "state", "reason"})
	fanoutPath = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_fanout_topic_path_total",
		Help: "Topic sends by fan-out path (on write or on read).",
	}, []string{"region", "path"})
	dedupUnavailable = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_fanout_dedup_unavailable_total",
		Help: "Times the dedup store could not be reached and delivery went on without it.",
	}, []string{"region"})
	eventsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_fanout_events_total",
		Help: "Events consumed by fan-out, by tier and result.",
	}, []string{"region", "tier", "result"})
	consumerLag = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_fanout_consumer_lag",
		Help: "Records behind the newest offset, per tier, summed over the partitions this process holds.",
	}, []string{"region", "tier"})
)
