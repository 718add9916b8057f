package dispatch

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	attemptsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_dispatch_attempts_total",
		Help: "Provider attempts by channel, provider and outcome (delivered, failed, retrying, dead_lettered).",
	}, []string{"region", "channel", "provider", "outcome"})
	tasksTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_dispatch_tasks_total",
		Help: "Dispatch tasks handled, by channel and result (delivered, failed, retried, dead_lettered, expired, poison, no_target).",
	}, []string{"region", "channel", "result"})
	breakerState = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_dispatch_breaker_state",
		Help: "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.",
	}, []string{"region", "provider"})
	retryDepth = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_dispatch_retry_depth",
		Help: "Records waiting on a retry topic level, per channel (partitions held by this process).",
	}, []string{"region", "channel", "level"})
	failovers = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_dispatch_failovers_total",
		Help: "Sends that went to the secondary provider because the primary's breaker was open.",
	}, []string{"channel", "primary", "secondary"})
	deactivations = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_dispatch_token_deactivations_total",
		Help: "Device tokens marked inactive after provider feedback, by provider.",
	}, []string{"region", "provider"})
)
