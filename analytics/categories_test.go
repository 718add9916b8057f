package analytics

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/analytics/wire"
	"github.com/herald-notify/herald/platform/health"
)

// verifiedAs is the TLS state of a connection whose client certificate (common name cn, DNS
// names dns) verified against the client CA; nil when cn is "" (no certificate).
func verifiedAs(cn string, dns ...string) *tls.ConnectionState {
	if cn == "" {
		return &tls.ConnectionState{HandshakeComplete: true}
	}
	leaf := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}
	return &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf}}}
}

// GET /v1/categories gives a region's exporter the categories ingest accepts, so it can fold
// any other into "other" itself; it answers a region's client certificate with that region's
// token only (401 or 403 otherwise), and only on the ingest listener.
func TestCategoriesEndpointListsWhatIngestAcceptsToRegionsOnly(t *testing.T) {
	cfg := validConfig(t)
	cfg.Categories.Apps["blog"] = nil
	tokens, err := cfg.regionTokens()
	if err != nil {
		t.Fatal(err)
	}
	a := newAPI(cfg, credentials{regions: tokens, operator: testOperatorToken}, nil, slog.New(slog.DiscardHandler))
	ingest, operators := a.ingestRouter(health.New(nil)), a.router(health.New(nil))
	all := &wire.Categories{Global: []string{"security"}, Apps: map[string][]string{"shop": {"order"}, "blog": {}}}
	for _, tc := range []struct {
		name   string
		router *gin.Engine
		tls    *tls.ConnectionState
		auth   string
		status int
		code   string
		want   *wire.Categories
	}{
		{"a region's certificate and token", ingest, verifiedAs("exporter-eu-west-1"), "Bearer 0123456789abcdef-eu", 200, "", all},
		{"another region's certificate and token", ingest, verifiedAs("exporter-us-east-1"), "Bearer 0123456789abcdef-us", 200, "", all},
		{"the region as a DNS name of the certificate", ingest, verifiedAs("someone", "exporter-us-east-1"), "Bearer 0123456789abcdef-us", 200, "", all},
		{"no certificate", ingest, verifiedAs(""), "Bearer 0123456789abcdef-eu", 401, "unauthenticated", nil},
		{"plain HTTP", ingest, nil, "Bearer 0123456789abcdef-eu", 401, "unauthenticated", nil},
		{"a certificate of the CA naming no region", ingest, verifiedAs("gateway"), "Bearer 0123456789abcdef-eu", 403, "unknown_client", nil},
		{"a certificate naming two regions", ingest, verifiedAs("exporter-eu-west-1", "exporter-us-east-1"), "Bearer 0123456789abcdef-eu", 403, "unknown_client", nil},
		{"a region's certificate with another region's token", ingest, verifiedAs("exporter-eu-west-1"), "Bearer 0123456789abcdef-us", 401, "unauthorized", nil},
		{"a region's certificate and no token", ingest, verifiedAs("exporter-eu-west-1"), "", 401, "unauthorized", nil},
		{"a region's certificate and a wrong token", ingest, verifiedAs("exporter-eu-west-1"), "Bearer 0123456789abcdef-xx", 401, "unauthorized", nil},
		{"not a bearer token", ingest, verifiedAs("exporter-eu-west-1"), "Basic MDEyMzQ1Njc4OWFiY2RlZi1ldQ==", 401, "unauthorized", nil},
		{"the operators' listener", operators, nil, "Bearer 0123456789abcdef-eu", 401, "unauthenticated", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, "/v1/categories", nil)
			req.TLS = tc.tls
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			tc.router.ServeHTTP(w, req)
			if w.Code != tc.status {
				t.Fatalf("%d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.want == nil {
				var e struct{ Error struct{ Code string } }
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Code != tc.code {
					t.Errorf("answer %s, want the code %s", w.Body, tc.code)
				}
				if tc.code == "unauthorized" && w.Header().Get("WWW-Authenticate") == "" {
					t.Error("a 401 without WWW-Authenticate")
				}
				return
			}
			var got wire.Categories
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, *tc.want) {
				t.Errorf("got %+v, want %+v", got, *tc.want)
			}
			// The exporter's rule on the answer is central's rule on a cell.
			for _, c := range []struct{ app, category string }{
				{"shop", "order"}, {"shop", "security"}, {"blog", "order"}, {"blog", "other"}, {"news", "promo"},
			} {
				if got.Allows(c.app, c.category) != cfg.Categories.Allowed(c.app, c.category) {
					t.Errorf("%s/%s: the exporter and ingest disagree", c.app, c.category)
				}
			}
		})
	}
}
