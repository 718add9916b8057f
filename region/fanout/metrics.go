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
	firedElsewhere = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_fanout_deferred_fired_elsewhere_total",
		Help: "Copies of a deferred event dropped because another region of the jurisdiction claimed its firing first (a scheduled row fired twice across a crash).",
	}, []string{"region", "tier"})
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
)

var (
	txnSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "herald_fanout_txn_seconds",
		Help:    "Time to commit one hand-off transaction (records and offsets), by tier.",
		Buckets: []float64{.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"region", "tier"})
	txnEvents = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "herald_fanout_txn_events",
		Help:    "Events whose records and offsets one hand-off transaction committed, by tier.",
		Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500},
	}, []string{"region", "tier"})
	txnFailures = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_fanout_txn_failures_total",
		Help: "Hand-off transactions that failed and were retried or given up at a rebalance, by tier.",
	}, []string{"region", "tier"})
	txnGivenUp = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_fanout_txn_given_up_events_total",
		Help: "Events whose hand-off was given up because their partition's claim ended (a rebalance, a broker outage, a stop); the partition's next consumer repeats them, by tier.",
	}, []string{"region", "tier"})
	hangingAborted = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_fanout_hanging_transactions_aborted_total",
		Help: "Hanging transactions of the tier's own hand-off producers that held its group's offsets (UNSTABLE_OFFSET_COMMIT: the fan-out could not start) and were aborted, by tier.",
	}, []string{"region", "tier"})
)
