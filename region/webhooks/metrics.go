package webhooks

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	deliveries = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_webhook_attempts_total",
		Help: "Webhook delivery attempts by outcome: delivered, retry (failed, tried again), dead (past the horizon), breaker_open (not attempted).",
	}, []string{"region", "outcome"})
	enqueued = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_webhook_events_total",
		Help: "Webhook deliveries stored by the consumer: new, or duplicate (a redelivered events record).",
	}, []string{"region", "result"})
	breakerChanges = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_webhook_breaker_transitions_total",
		Help: "Per-endpoint circuit breaker transitions, by the state entered.",
	}, []string{"to"})
)

// The retention sweeper's (retention.go); reason is delivered or dead_letter.
var (
	deletedRows = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_webhook_retention_deleted_total",
		Help: "Webhook deliveries deleted past their retention, by reason: delivered (webhooks.delivered_retention), dead_letter (webhooks.dead_letter_retention).",
	}, []string{"region", "reason"})
	oldestAge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_webhook_retention_oldest_age_seconds",
		Help: "Age of the oldest delivered delivery or dead letter (reason) left in the jurisdiction's database after the last sweep (0: none); above herald_webhook_retention_seconds by more than the sweep interval, the sweep is not keeping up. Grows on from the last reading while Postgres cannot be read.",
	}, []string{"region", "reason"})
	retentionSeconds = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_webhook_retention_seconds",
		Help: "The configured retention of delivered deliveries and dead letters (reason).",
	}, []string{"region", "reason"})
	sweepErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_webhook_retention_errors_total",
		Help: "Retention sweeps of a kind of webhook delivery that failed (tried again at the next sweep).",
	}, []string{"region"})
)
