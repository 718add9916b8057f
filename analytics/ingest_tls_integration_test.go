//go:build integration

package analytics

import (
	"crypto/tls"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/pki"
	"github.com/herald-notify/herald/platform/testenv"
)

// The region → analytics hop: ingest answers only a region's client certificate of the
// internal CA, with that region's token, for that region's batch. Every other caller is
// refused — with a JSON 401/403 and a stable code, or (a certificate of another CA) in the
// handshake — and nothing is stored; then the region's own certificate stores the batch.
func TestIngestAnswersOnlyTheBatchsRegionsClientCertificateAndStoresNothingElse(t *testing.T) {
	s := startService(t)
	b := batch("eu-west-1", window(2), 0, c("shop", "transactional", "order", "email", "delivered", "", 20, 20))

	// A certificate of another CA, named as an exporter: the client trusts analytics' CA.
	otherCA, err := pki.NewCA("another CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	leaf, err := otherCA.Issue("exporter-eu-west-1", pki.Client, nil, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	otherCert, otherKey := filepath.Join(dir, "other.pem"), filepath.Join(dir, "other-key.pem")
	if err := leaf.WriteFiles(otherCert, otherKey); err != nil {
		t.Fatal(err)
	}
	d := testenv.PKI(t)
	other := tlsClient(t, pki.ClientConfig{CAFile: d.CAFile(), CertFile: otherCert, KeyFile: otherKey})
	if _, err := other.Post(s.ingest+"/v1/aggregates", "application/json", strings.NewReader("{}")); err == nil {
		t.Error("a certificate of another CA completed a call; want the handshake refused")
	}

	for _, tc := range []struct {
		name   string
		client *http.Client
		base   string
		token  string
		status int
		code   string
	}{
		{"no client certificate", noCertClient(t), s.ingest, euToken, 401, "unauthenticated"},
		{"the operators' listener, plain HTTP", http.DefaultClient, s.base, euToken, 401, "unauthenticated"},
		{"a certificate of the CA that is no region's (the gateway's)", tlsClient(t, d.Client("gateway")), s.ingest, euToken, 403, "unknown_client"},
		{"us-east-1's certificate and token, eu-west-1's batch", exporterClient(t, "us-east-1"), s.ingest, usToken, 403, "region_mismatch"},
		{"eu-west-1's certificate with us-east-1's token", exporterClient(t, "eu-west-1"), s.ingest, usToken, 401, "unauthorized"},
		{"eu-west-1's certificate without a token", exporterClient(t, "eu-west-1"), s.ingest, "", 401, "unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := s.postWith(t, tc.client, tc.base, tc.token, b)
			if e := apiError(out); code != tc.status || e.Code != tc.code {
				t.Errorf("%d %+v, want %d %s", code, e, tc.status, tc.code)
			}
		})
	}
	// Plain HTTP to the ingest listener is not routed at all.
	if resp, err := http.Post("http://"+s.cfg.Ingest.Listen+"/v1/aggregates", "application/json", strings.NewReader("{}")); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the ingest listener: %d, want the TLS server's 400", resp.StatusCode)
		}
	}
	for _, table := range []string{"batches", "cells", "latency"} {
		if n := s.count(t, table); n != 0 {
			t.Fatalf("%s holds %d rows after refused calls", table, n)
		}
	}

	// The region's own certificate and token, over TLS 1.3.
	hc := exporterClient(t, "eu-west-1")
	if code, out := s.postWith(t, hc, s.ingest, euToken, b); code != http.StatusOK || out["result"] != Stored {
		t.Fatalf("eu-west-1's certificate: %d %v", code, out)
	}
	resp, err := hc.Get(s.ingest + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 {
		t.Errorf("the ingest listener is not TLS 1.3: %+v", resp.TLS)
	}
	// The ingest listener serves none of the operators' routes, even to a region.
	req, _ := http.NewRequest(http.MethodGet, s.ingest+"/v1/funnel", nil)
	req.Header.Set("Authorization", "Bearer "+testOperatorToken)
	if resp, err := hc.Do(req); err != nil {
		t.Error(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("the query API on the ingest listener: %d, want 404", resp.StatusCode)
		}
	}
	if n := s.count(t, "batches"); n != 1 {
		t.Errorf("%d batches stored, want 1", n)
	}
}
