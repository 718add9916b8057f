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
