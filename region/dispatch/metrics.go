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
	appBreakersOpen = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_dispatch_app_breakers_open",
		Help: "Circuit breakers open now over apps' own provider accounts, per provider kind (app-apns, app-fcm, app-smtp, app-twilio): each app's account has its own breaker.",
	}, []string{"region", "provider"})
	appCredentialLoads = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_dispatch_app_credential_loads_total",
		Help: "Reads of apps' own provider credentials by the dispatcher's cache, by kind and result: found (a new version, a client built), same (no change), none (the app has none: the region's provider), stale (the store failed; the cached credential is used), error (the store failed with nothing cached; the send is retried), unusable (a stored credential that does not build a client).",
	}, []string{"region", "kind", "result"})
	fcmTokenRenewals = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_dispatch_fcm_token_renewals_total",
		Help: "FCM clients replaced, with a new access token, after FCM refused the token (401 UNAUTHENTICATED), per provider.",
	}, []string{"provider"})
	sendsHeld = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_dispatch_sends_held_total",
		Help: "Sends that waited for another send of the same notification, user, channel and target in this process (two copies of a task in flight at once), per channel; the wait is what keeps the provider from getting both.",
	}, []string{"region", "channel"})
	retriesReleased = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_dispatch_retries_released_total",
		Help: "Retries sent before their backoff ended because a provider of their channel came back (its breaker closed after a successful probe), per channel.",
	}, []string{"region", "channel"})
	retryDepth = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_dispatch_retry_depth",
		Help: "Records waiting on a retry topic level, per tier (legacy: a topic of the layout before tiers, being drained) and channel (partitions held by this process).",
	}, []string{"region", "tier", "channel", "level"})
	legacyForwarded = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_dispatch_legacy_forwarded_total",
		Help: "Records of a legacy per-channel dispatch or retry topic forwarded to their tier's topic, by channel and tier.",
	}, []string{"region", "channel", "tier"})
	emailWithoutUnsubscribe = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_email_without_unsubscribe_total",
		Help: "Marketing and social email sent without List-Unsubscribe because no link could be made (no gateway_url for the jurisdiction in the residency policy).",
	}, []string{"region"})
	suppressions = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_dispatch_suppressions_total",
		Help: "Addresses put on the suppression list by a provider's answer, per channel and kind (hard: a hard bounce, soft_bounce: the soft bounce that reached the limit, unsubscribed: an SMS STOP).",
	}, []string{"region", "channel", "kind"})
	failovers = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_dispatch_failovers_total",
		Help: "Sends that went to the secondary provider because the primary's breaker was open.",
	}, []string{"channel", "primary", "secondary"})
	deactivations = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_dispatch_token_deactivations_total",
		Help: "Device tokens marked inactive after provider feedback, by provider.",
	}, []string{"region", "provider"})
)

var (
	rateLimitWait = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "herald_dispatch_ratelimit_wait_seconds",
		Help:    "Time a send waited for its provider's shared rate-limit token, per provider.",
		Buckets: []float64{0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
	}, []string{"region", "provider"})
	rateLimitUnavailable = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_dispatch_ratelimit_unavailable_total",
		Help: "Sends made without the shared rate limit because Redis was unavailable (fail open), per provider.",
	}, []string{"region", "provider"})
)
