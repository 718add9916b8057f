package regionset

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/platform/pki"
)

type instances []discovery.Instance

func (l instances) Instances(context.Context, string) ([]discovery.Instance, error) { return l, nil }

// TestProbeHealthyOnlyWhenTheGatewaysHandshakeSucceeds: a region counts as healthy only when
// the gateway's own transport completes the mutual-TLS handshake with it, so a CA mismatch
// shows as an unhealthy region (503 region_unavailable), never as calls refused with 401.
func TestProbeHealthyOnlyWhenTheGatewaysHandshakeSucceeds(t *testing.T) {
	plan := pki.Plan{Servers: []string{"region"}, Hosts: []string{"127.0.0.1"}, Clients: []string{"gateway"}, CAValidity: time.Hour, LeafValidity: time.Hour}
	ours, theirs := pki.Dir(filepath.Join(t.TempDir(), "ours")), pki.Dir(filepath.Join(t.TempDir(), "theirs"))
	for _, d := range []pki.Dir{ours, theirs} {
		if _, err := d.Ensure(plan, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	ready := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			w.WriteHeader(http.StatusOK)
			return
		}
		http.NotFound(w, r)
	})
	serve := func(tc *tls.Config) string {
		srv := httptest.NewUnstartedServer(ready)
		if tc != nil {
			srv.TLS = tc
			srv.StartTLS()
		} else {
			srv.Start()
		}
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().String()
	}
	serverTLS, err := ours.Server("region").TLS()
	if err != nil {
		t.Fatal(err)
	}
	region := serve(serverTLS)
	plain := serve(nil)
	transport := func(d pki.Dir) http.RoundTripper {
		tc, err := d.Client("gateway").TLS()
		if err != nil {
			t.Fatal(err)
		}
		return &http.Transport{TLSClientConfig: tc}
	}
	// The gateway's certificate is of another CA (named differently, so Go's client would
	// rather send no certificate than this one), but it trusts the region's.
	foreignCert := func() http.RoundTripper {
		other, err := pki.NewCA("another CA", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := other.Issue("gateway", pki.Client, nil, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		cert, key := filepath.Join(t.TempDir(), "gw.pem"), filepath.Join(t.TempDir(), "gw-key.pem")
		if err := leaf.WriteFiles(cert, key); err != nil {
			t.Fatal(err)
		}
		tc, err := pki.ClientConfig{CAFile: ours.CAFile(), CertFile: cert, KeyFile: key}.TLS()
		if err != nil {
			t.Fatal(err)
		}
		return &http.Transport{TLSClientConfig: tc}
	}
	cases := []struct {
		name    string
		addr    string
		rt      http.RoundTripper
		healthy bool
	}{
		{"the gateway's certificate and CA", region, transport(ours), true},
		{"a gateway certificate of another CA", region, foreignCert(), false},
		{"a region certified by a CA the gateway does not trust", region, transport(theirs), false},
		{"no client TLS configured (system roots)", region, http.DefaultTransport, false},
		{"a plain-HTTP endpoint", plain, transport(ours), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := New(instances{{Address: c.addr, Meta: map[string]string{"region": "eu-west-1", "jurisdiction": "EU", "roles": "api"}}}, true, time.Second, 2*time.Second, nil).WithTransport(c.rt)
			s.Refresh(context.Background())
			if got := s.Healthy("eu-west-1"); got != c.healthy {
				t.Fatalf("healthy = %v, want %v", got, c.healthy)
			}
			if addr, ok := s.Pick("eu-west-1"); ok && !strings.HasPrefix(Scheme+"://"+addr, "https://127.0.0.1:") {
				t.Fatalf("picked %s", addr)
			}
		})
	}
}

// RegionOf knows every endpoint discovery lists, healthy or not: the gateway's TLS dialer
// asks it which region's name to verify, for its health probes too.
func TestRegionOfNamesEveryListedEndpointAndNoOther(t *testing.T) {
	s := New(instances{
		{Address: "10.0.0.1:8080", Meta: map[string]string{"region": "eu-west-1", "jurisdiction": "EU"}},
		{Address: "10.0.0.2:8080", Meta: map[string]string{"region": "us-east-1", "jurisdiction": "US", "roles": "api,dispatch"}},
		{Address: "10.0.0.3:8080", Meta: map[string]string{"region": "eu-west-1", "roles": "dispatch"}}, // no API
	}, true, time.Hour, 200*time.Millisecond, slog.New(slog.DiscardHandler))
	s.Refresh(context.Background()) // the probes fail: nothing listens there
	for addr, want := range map[string]string{"10.0.0.1:8080": "eu-west-1", "10.0.0.2:8080": "us-east-1", "10.0.0.3:8080": "", "10.0.0.9:8080": ""} {
		got, ok := s.RegionOf(addr)
		if got != want || ok != (want != "") {
			t.Errorf("RegionOf(%s) = %q, %v; want %q", addr, got, ok, want)
		}
	}
}

// tlsRegion serves handler over the region's mutual TLS and returns its address and the
// gateway's transport to it.
func tlsRegion(t *testing.T, handler http.Handler) (*httptest.Server, http.RoundTripper) {
	t.Helper()
	plan := pki.Plan{Servers: []string{"region"}, Hosts: []string{"127.0.0.1"}, Clients: []string{"gateway"}, CAValidity: time.Hour, LeafValidity: time.Hour}
	d := pki.Dir(filepath.Join(t.TempDir(), "pki"))
	if _, err := d.Ensure(plan, time.Now()); err != nil {
		t.Fatal(err)
	}
	stc, err := d.Server("region").TLS()
	if err != nil {
		t.Fatal(err)
	}
	ctc, err := d.Client("gateway").TLS()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(handler)
	srv.TLS = stc
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &http.Transport{TLSClientConfig: ctc}
}

// TestARegionWhoseStoreRecoversDoesNotFlap: while a region's store recovers, its readiness
// answers some probes late (past the gateway's probe timeout) or 503 and others 200. The gateway
// keeps the region healthy through such a spell; a region failing probe after probe leaves after
// FallAfter of them and comes back after RiseAfter good ones; a region whose process is gone
// (connection refused) leaves at the first probe.
func TestARegionWhoseStoreRecoversDoesNotFlap(t *testing.T) {
	var mode atomic.Value // "ok", "recovering", "down"
	mode.Store("ok")
	var n atomic.Int64
	srv, rt := tlsRegion(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case "recovering": // the store check takes 2 s now and then, or fails
			switch n.Add(1) % 3 {
			case 1:
				time.Sleep(400 * time.Millisecond) // past the probe timeout below
			case 2:
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
		case "down":
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	addr := srv.Listener.Addr().String()
	s := New(instances{{Address: addr, Meta: map[string]string{"region": "eu-west-1", "jurisdiction": "EU", "roles": "api"}}}, true, time.Second, 200*time.Millisecond, nil).WithTransport(rt)
	ctx := context.Background()
	refresh := func(times int) (flips int, healthy bool) {
		was := s.Healthy("eu-west-1")
		for range times {
			s.Refresh(ctx)
			if now := s.Healthy("eu-west-1"); now != was {
				flips++
				was = now
			}
		}
		return flips, was
	}
	if _, healthy := refresh(1); !healthy {
		t.Fatal("a ready region is not healthy")
	}
	mode.Store("recovering")
	if flips, healthy := refresh(12); flips != 0 || !healthy {
		t.Fatalf("while the store recovered: %d changes of health, healthy at the end %v; want none", flips, healthy)
	}
	mode.Store("down")
	if _, healthy := refresh(FallAfter - 1); !healthy {
		t.Fatalf("unhealthy after %d failed probes, want %d", FallAfter-1, FallAfter)
	}
	if _, healthy := refresh(1); healthy {
		t.Fatalf("still healthy after %d failed probes in a row", FallAfter)
	}
	mode.Store("ok")
	if _, healthy := refresh(RiseAfter - 1); healthy {
		t.Fatalf("healthy again after %d good probe(s), want %d", RiseAfter-1, RiseAfter)
	}
	if _, healthy := refresh(1); !healthy {
		t.Fatalf("not healthy after %d good probes", RiseAfter)
	}
	srv.Close() // the process is gone: connections refused
	if _, healthy := refresh(1); healthy {
		t.Fatal("a region refusing connections is still healthy after a probe")
	}
}
