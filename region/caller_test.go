package region

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRequireCallerRefusesAPIRoutesWithoutAVerifiedCertificateButServesOps(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "served") })
	verified := &tls.ConnectionState{HandshakeComplete: true, VerifiedChains: [][]*x509.Certificate{{{}}}}
	anonymous := &tls.ConnectionState{HandshakeComplete: true}
	cases := []struct {
		name      string
		plaintext bool
		path      string
		tls       *tls.ConnectionState
		want      int
	}{
		{"API with a verified certificate", false, "/v1/notifications", verified, http.StatusOK},
		{"API without a certificate", false, "/v1/notifications", anonymous, http.StatusUnauthorized},
		{"internal audit without a certificate", false, "/internal/v1/audit", anonymous, http.StatusUnauthorized},
		{"an unknown path without a certificate", false, "/v2/anything", anonymous, http.StatusUnauthorized},
		{"a health path spelled differently", false, "/readyz/", anonymous, http.StatusUnauthorized},
		{"API over no TLS at all", false, "/v1/users/ada", nil, http.StatusUnauthorized},
		{"readiness without a certificate", false, "/readyz", anonymous, http.StatusOK},
		{"liveness without a certificate", false, "/healthz", anonymous, http.StatusOK},
		{"metrics without a certificate", false, "/metrics", anonymous, http.StatusOK},
		{"plain HTTP opt-out (the token guards the API)", true, "/v1/notifications", nil, http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := requireCaller("eu-west-1", c.plaintext, slog.New(slog.DiscardHandler), next)
			req := httptest.NewRequest(http.MethodPost, c.path, nil)
			req.TLS = c.tls
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != c.want {
				t.Fatalf("got %d, want %d", w.Code, c.want)
			}
			if c.want == http.StatusUnauthorized {
				var e struct {
					Error struct{ Code, Field string } `json:"error"`
				}
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Code != "unauthenticated" || e.Error.Field != "tls_client_certificate" {
					t.Fatalf("body %s (%v): want JSON unauthenticated naming tls_client_certificate", w.Body, err)
				}
			}
		})
	}
}
