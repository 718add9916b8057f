package region

import (
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/herald-notify/herald/platform/apierr"
	"github.com/herald-notify/herald/platform/pki"
	"github.com/herald-notify/herald/region/api"
)

var unauthenticatedCalls = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "herald_region_unauthenticated_calls_total",
	Help: "Calls to the region API refused for want of a client certificate from the internal CA (handshakes refused for a bad certificate are in the log).",
}, []string{"region"})

// opsPaths are what a caller without a client certificate may reach over TLS: health for the
// stack scripts, load balancers and the gateway's probe, metrics for Prometheus. None of them
// carries an app's data.
var opsPaths = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// requireCaller refuses, with 401, every request but the ops paths whose connection did not
// present a client certificate the internal CA signed. A certificate that is offered and does
// not verify (another CA, expired) never gets this far: the TLS handshake fails. With
// tls.insecure_plaintext there is no certificate to check and the internal token (required
// then) is the credential.
func requireCaller(region string, plaintext bool, log *slog.Logger, next http.Handler) http.Handler {
	if plaintext {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if opsPaths[r.URL.Path] || pki.Verified(r.TLS) {
			next.ServeHTTP(w, r)
			return
		}
		unauthenticatedCalls.WithLabelValues(region).Inc()
		log.Debug("refused a call without a client certificate", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
		apierr.Write(w, http.StatusUnauthorized, api.CodeUnauthenticated, "regions accept calls only from callers with a client certificate of the internal CA", "tls_client_certificate")
	})
}
