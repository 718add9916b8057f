package gateway

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/pki"
)

// namedRegion runs an HTTPS region endpoint whose certificate names only dnsName (no
// address), as an ECS task's would, and counts the requests that reached it.
func namedRegion(t *testing.T, ca *pki.CA, dir, dnsName string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	now := time.Now()
	leaf, err := ca.Issue(dnsName, pki.Server, []string{dnsName}, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cert, key, caFile := filepath.Join(dir, "region.pem"), filepath.Join(dir, "region-key.pem"), filepath.Join(dir, "ca.pem")
	if err := leaf.WriteFiles(cert, key); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	tc, err := pki.ServerConfig{CertFile: cert, KeyFile: key, ClientCAFile: caFile}.TLS()
	if err != nil {
		t.Fatal(err)
	}
	var reached atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		if !pki.Verified(r.TLS) {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	srv.TLS = tc
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &reached
}

// gatewayClient is the gateway's transport to the regions, with region_tls as given and
// discovery listing the endpoints of listed.
func gatewayClient(t *testing.T, ca *pki.CA, dir string, rt RegionTLSConfig, listed map[string]string) *http.Client {
	t.Helper()
	now := time.Now()
	leaf, err := ca.Issue("gateway", pki.Client, nil, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	rt.CertFile, rt.KeyFile, rt.CAFile = filepath.Join(dir, "gw.pem"), filepath.Join(dir, "gw-key.pem"), filepath.Join(dir, "ca.pem")
	if err := leaf.WriteFiles(rt.CertFile, rt.KeyFile); err != nil {
		t.Fatal(err)
	}
	tc, err := rt.Client().TLS()
	if err != nil {
		t.Fatal(err)
	}
	nd := &net.Dialer{Timeout: 2 * time.Second}
	tr := &http.Transport{TLSClientConfig: tc, DialContext: nd.DialContext, TLSHandshakeTimeout: 5 * time.Second}
	if rt.ServerName != "" {
		d := &regionDialer{tls: tc, names: rt, dialer: nd, handshakeTimeout: 5 * time.Second,
			regionOf: func(addr string) (string, bool) { r, ok := listed[addr]; return r, ok }}
		tr.DialTLSContext = d.DialTLSContext
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// On ECS the gateway dials a region task's IP, which no certificate can name: with
// region_tls.server_name each endpoint is verified by the name of the region discovery lists
// it under, and an endpoint presenting another region's certificate, or one discovery does
// not list, gets nothing.
func TestRegionsAreVerifiedByTheirNameNotTheDialledAddress(t *testing.T) {
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	srv, reached := namedRegion(t, ca, dir, "eu-west-1.regions.herald.test")
	addr := strings.TrimPrefix(srv.URL, "https://")
	named := RegionTLSConfig{ServerName: "{region}.regions.herald.test"}

	for _, tc := range []struct {
		name    string
		rt      RegionTLSConfig
		listed  map[string]string
		wantErr string
	}{
		{"verified by the region's name", named, map[string]string{addr: "eu-west-1"}, ""},
		{"without server_name the address must be named", RegionTLSConfig{}, nil, "certificate"},
		{"another region's certificate at the endpoint", named, map[string]string{addr: "us-east-1"}, "us-east-1.regions.herald.test"},
		{"an endpoint discovery does not list", named, map[string]string{}, "no region in discovery"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := reached.Load()
			c := gatewayClient(t, ca, dir, tc.rt, tc.listed)
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL+"/v1/notifications", strings.NewReader(`{"body":"personal"}`))
			resp, err := c.Do(req)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("call: %v", err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || reached.Load() != before+1 {
					t.Fatalf("status %d, reached %d", resp.StatusCode, reached.Load()-before)
				}
				return
			}
			if err == nil {
				resp.Body.Close()
				t.Fatalf("call succeeded (%d); want an error naming %q", resp.StatusCode, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to name %q", err, tc.wantErr)
			}
			if reached.Load() != before {
				t.Fatal("the request reached an endpoint that was not verified")
			}
		})
	}
}

func TestRegionTLSServerNameIsValidated(t *testing.T) {
	for _, tc := range []struct {
		name, serverName string
		ok               bool
	}{
		{"empty: verify the address", "", true},
		{"one placeholder", "{region}.regions.herald.internal", true},
		{"no placeholder", "regions.herald.internal", false},
		{"two placeholders", "{region}.{region}.internal", false},
		{"upper case", "{region}.Regions.internal", false},
		{"not a DNS name", "{region}/x", false},
		{"NUL", "{region}.x\x00", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := RegionTLSConfig{ServerName: tc.serverName}.validateServerName()
			if (err == nil) != tc.ok {
				t.Fatalf("validate %q: %v", tc.serverName, err)
			}
			if err != nil && !strings.Contains(err.Error(), "server_name") {
				t.Fatalf("error does not name the key: %v", err)
			}
		})
	}
}
