package export

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	eventsStored = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_export_outcomes_total",
		Help: "Delivery outcomes consumed by the exporter, by result: stored, duplicate (already stored), dropped (outside analytics' vocabularies); and records retried (retry: a store failed transiently) or set aside (dead_lettered: <region>.dlq.export).",
	}, []string{"region", "result"})
	windowsShipped = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_export_windows_total",
		Help: "Windows the exporter posted to central analytics, by central's answer: stored, replaced, unchanged, refused, failed.",
	}, []string{"region", "result"})
	unregistered = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_export_unregistered_category_events_total",
		Help: "Events whose category central does not register, shipped under category other (counted each time their window is shipped).",
	}, []string{"region"})
	windowsPending = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_export_windows_pending",
		Help: "Closed windows not yet acknowledged by central analytics.",
	}, []string{"region"})
)
