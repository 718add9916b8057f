package analytics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Labels are bounded: regions come from config (a batch is counted after its token matched),
// results and codes are constants.
var (
	metricBatches = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_analytics_batches_total",
		Help: "Aggregate batches accepted, by region and result (stored, replaced, unchanged).",
	}, []string{"region", "result"})
	metricCells = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_analytics_cells_total",
		Help: "Cells stored from accepted batches (repeats of a stored batch excluded).",
	}, []string{"region"})
	metricSwept = promauto.NewCounter(prometheus.CounterOpts{
		Name: "herald_analytics_swept_rows_total",
		Help: "Minute cells and histograms deleted past minute_retention (hourly sums stay).",
	})
	metricRejections = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_analytics_rejections_total",
		Help: "Ingest and query requests refused, by error code (operator credentials apart: herald_analytics_operator_refusals_total).",
	}, []string{"code"})
	// Apart from the rejections, whose unauthorized count is the regions' (an alert watches it):
	// a dashboard whose session expired is routine.
	metricOperatorRefusals = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_analytics_operator_refusals_total",
		Help: "Query, dashboard and sign-in requests refused for want of the operator token, by what was sent (none, token, session).",
	}, []string{"credential"})
)
