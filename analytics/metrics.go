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
		Help: "Ingest and query requests refused, by error code.",
	}, []string{"code"})
)
