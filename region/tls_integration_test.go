//go:build integration

package region_test

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/pki"
	"github.com/herald-notify/herald/platform/testenv"
)

// TestRegionRefusesEveryCallerWithoutAClientCertificateFromItsCA calls a region's API as a
// hostile neighbour would (plain HTTP, TLS without a certificate, a certificate from another
// CA, an expired one from the right CA), each trying to register a user as any app, and finds
// every call refused and nothing stored; the gateway's certificate then does the same call.
func TestRegionRefusesEveryCallerWithoutAClientCertificateFromItsCA(t *testing.T) {
	r := startRegion(t)
	d := testenv.PKI(t)
	dir := t.TempDir()
	now := time.Now()
	ca, err := pki.LoadCA(d.CAFile(), d.CAKeyFile())
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("another CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	clientWith := func(t *testing.T, issuer *pki.CA, from, to time.Time) *http.Client {
		leaf, err := issuer.Issue("caller", pki.Client, nil, from, to)
		if err != nil {
			t.Fatal(err)
		}
		cert, key := filepath.Join(dir, t.Name()+".pem"), filepath.Join(dir, t.Name()+"-key.pem")
		if err := leaf.WriteFiles(cert, key); err != nil {
			t.Fatal(err)
		}
		tc, err := pki.ClientConfig{CAFile: d.CAFile(), CertFile: cert, KeyFile: key}.TLS()
		if err != nil {
			t.Fatal(err)
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	}
	noCert := func(*testing.T) *http.Client {
		tc, err := d.Client("gateway").TLS()
		if err != nil {
			t.Fatal(err)
		}
		tc.GetClientCertificate = nil // offers no certificate
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	}
	putUser := func(hc *http.Client, base, app string) (*http.Response, error) {
		req, err := http.NewRequest(http.MethodPut, base+"/v1/users/ada", strings.NewReader(`{"jurisdiction":"EU","email":"ada@example.com"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Herald-App", app)
		req.Header.Set("Content-Type", "application/json")
		return hc.Do(req)
	}
	stored := func(app string) int {
		var n int
		if err := r.pg.QueryRow(t.Context(), `SELECT count(*) FROM users WHERE app_id = $1`, app).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	plainBase := "http://" + r.cfg.Listen

	t.Run("plain HTTP", func(t *testing.T) {
		resp, err := putUser(&http.Client{Timeout: 10 * time.Second}, plainBase, r.app)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "HTTPS") {
				t.Fatalf("plain HTTP got %d %s; want the TLS server's 400", resp.StatusCode, b)
			}
		}
	})
	t.Run("TLS without a client certificate", func(t *testing.T) {
		hc := noCert(t)
		resp, err := putUser(hc, r.base, r.app)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e struct {
			Error struct{ Code, Field string } `json:"error"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != http.StatusUnauthorized ||
			e.Error.Code != "unauthenticated" || e.Error.Field != "tls_client_certificate" {
			t.Fatalf("got %d %+v (%v); want 401 unauthenticated naming tls_client_certificate", resp.StatusCode, e, err)
		}
		// Health stays reachable without a certificate, for load balancers and the stack.
		ready, err := hc.Get(r.base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		ready.Body.Close()
		if ready.StatusCode != http.StatusOK {
			t.Fatalf("/readyz without a certificate: %d", ready.StatusCode)
		}
	})
	handshakeFails := func(t *testing.T, hc *http.Client) {
		resp, err := putUser(hc, r.base, r.app)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("the call was answered %d; want a refused handshake", resp.StatusCode)
		}
		if !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("error %v is not a refused certificate", err)
		}
	}
	t.Run("a certificate from another CA", func(t *testing.T) {
		handshakeFails(t, clientWith(t, other, now.Add(-time.Hour), now.Add(time.Hour)))
	})
	t.Run("an expired certificate from the region's CA", func(t *testing.T) {
		handshakeFails(t, clientWith(t, ca, now.Add(-2*time.Hour), now.Add(-time.Minute)))
	})
	t.Run("TLS 1.2", func(t *testing.T) {
		tc, err := d.Client("gateway").TLS()
		if err != nil {
			t.Fatal(err)
		}
		tc.MinVersion, tc.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		if resp, err := putUser(&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}, r.base, r.app); err == nil {
			resp.Body.Close()
			t.Fatalf("a TLS 1.2 call was answered %d", resp.StatusCode)
		}
	})
	if n := stored(r.app); n != 0 {
		t.Fatalf("%d users stored by refused callers", n)
	}
	resp, err := putUser(testenv.RegionClient(t), r.base, r.app)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 || stored(r.app) != 1 {
		t.Fatalf("the gateway's certificate: %d %s, %d stored", resp.StatusCode, b, stored(r.app))
	}
}
