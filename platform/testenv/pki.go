package testenv

import (
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/pki"
)

var (
	pkiOnce sync.Once
	pkiDir  pki.Dir
	pkiErr  error

	exporterMu sync.Mutex

	clientOnce   sync.Once
	regionClient *http.Client
	clientErr    error
)

// PKI returns the test process's internal certificates: a CA made for this run (never the
// local stack's), server certificates "region" and "analytics" (central analytics' ingest
// listener) for 127.0.0.1 and localhost, and the client certificate "gateway" (what the
// gateway and tests call regions with); Exporter adds a region's exporter certificate. Every test of the
// process shares them, so in-process regions and gateways trust each other.
func PKI(t testing.TB) pki.Dir {
	t.Helper()
	pkiOnce.Do(func() {
		var dir string
		if dir, pkiErr = os.MkdirTemp("", "herald-test-pki-"); pkiErr != nil {
			return
		}
		pkiDir = pki.Dir(dir)
		_, pkiErr = pkiDir.Ensure(pki.Plan{
			Servers: []string{"region", "analytics"}, Hosts: []string{"127.0.0.1", "localhost"}, Clients: []string{"gateway"},
			CAValidity: 24 * time.Hour, LeafValidity: 24 * time.Hour,
		}, time.Now())
	})
	if pkiErr != nil {
		t.Fatalf("test PKI: %v", pkiErr)
	}
	return pkiDir
}

// RegionClient is an HTTP client that calls regions as the gateway does: TLS 1.3 with the
// test CA's "gateway" client certificate. Like http.DefaultClient it has no overall timeout
// (event streams stay open); one client serves the whole test process.
func RegionClient(t testing.TB) *http.Client {
	t.Helper()
	d := PKI(t)
	clientOnce.Do(func() {
		tc, err := d.Client("gateway").TLS()
		if err != nil {
			clientErr = err
			return
		}
		regionClient = &http.Client{Transport: &http.Transport{TLSClientConfig: tc, MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second}}
	})
	if clientErr != nil {
		t.Fatal(clientErr)
	}
	return regionClient
}

// Exporter returns the client side of region's exporter as the test PKI certifies it: the
// client certificate "exporter-<region>" (central analytics' default ingest.client_name),
// issued on first use, and the CA that certified analytics' server certificate.
func Exporter(t testing.TB, region string) pki.ClientConfig {
	t.Helper()
	d := PKI(t)
	exporterMu.Lock()
	defer exporterMu.Unlock()
	name := "exporter-" + region
	if _, err := d.Ensure(pki.Plan{Clients: []string{name}, LeafValidity: 24 * time.Hour}, time.Now()); err != nil {
		t.Fatalf("test PKI: exporter certificate of %s: %v", region, err)
	}
	return d.Client(name)
}
