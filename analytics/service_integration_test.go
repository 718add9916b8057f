//go:build integration

package analytics

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/analytics/wire"
	"github.com/herald-notify/herald/platform/apierr"
	"github.com/herald-notify/herald/platform/pki"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/testenv"
)

// Tokens of the test service's two regions.
const (
	euToken = "test-token-eu-west-1-0123456789"
	usToken = "test-token-us-east-1-0123456789"
)

// service is central analytics running in-process on free ports, with a private database:
// base is the operators' listener, ingest the regions' (mutual TLS, the test PKI).
type service struct {
	base   string
	ingest string
	cfg    Config
	db     *pgxpool.Pool
}

func startService(t testing.TB) *service { t.Helper(); return startServiceWith(t, nil) }

// startServiceWith starts the service with edit applied to the test config.
func startServiceWith(t testing.TB, edit func(*Config)) *service {
	t.Helper()
	cfg := DefaultConfig(t.TempDir())
	cfg.Listen = freeAddr(t)
	cfg.Ingest.Listen = freeAddr(t)
	srv := testenv.PKI(t).Server("analytics")
	cfg.Ingest.TLS = IngestTLSConfig{CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: srv.ClientCAFile}
	cfg.Postgres = testenv.Postgres(t)
	cfg.Regions = map[string]RegionConfig{"eu-west-1": {Token: euToken}, "us-east-1": {Token: usToken}}
	cfg.Operator.Token = testOperatorToken
	cfg.Categories = CategoriesConfig{Global: []string{"security", "news"}, Apps: map[string][]string{"shop": {"order"}}}
	cfg.Prices = PriceConfig{Currency: "USD", EmailPerThousand: 0.10, SMS: SMSPrices{Default: 0.05, PerCountry: map[string]float64{"DE": 0.08, "US": 0.0079}}}
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, 2*time.Minute)
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("HERALD_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if err := Migrate(ctx, cfg, log); err != nil {
		t.Fatal(err)
	}
	db, err := postgres.Connect(ctx, cfg.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(runCtx, cfg, log, "test") }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("analytics stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("analytics did not stop within 30s")
		}
		db.Close()
	})
	s := &service{base: "http://" + cfg.Listen, ingest: "https://" + cfg.Ingest.Listen, cfg: cfg, db: db}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(s.base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("analytics not ready after 30s")
	return nil
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// tokenRegions is whose certificate post presents with a token: the token's region's, and
// eu-west-1's with any other token.
var tokenRegions = map[string]string{euToken: "eu-west-1", usToken: "us-east-1"}

// exporterClient is an HTTPS client with region's exporter certificate of the test PKI.
func exporterClient(t testing.TB, region string) *http.Client {
	t.Helper()
	return tlsClient(t, testenv.Exporter(t, region))
}

// tlsClient is an HTTPS client with the certificate of cc.
func tlsClient(t testing.TB, cc pki.ClientConfig) *http.Client {
	t.Helper()
	tc, err := cc.TLS()
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: tc}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 30 * time.Second, Transport: tr}
}

// noCertClient is an HTTPS client that trusts the test CA and offers no client certificate.
func noCertClient(t testing.TB) *http.Client {
	t.Helper()
	hc := exporterClient(t, "eu-west-1")
	hc.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = nil
	return hc
}

// post sends body (a wire.Batch, a map, or raw bytes) to the ingest endpoint with token, over
// mutual TLS with the certificate of the token's region (tokenRegions).
func (s *service) post(t testing.TB, token string, body any) (int, map[string]any) {
	t.Helper()
	region := tokenRegions[token]
	if region == "" {
		region = "eu-west-1"
	}
	return s.postWith(t, exporterClient(t, region), s.ingest, token, body)
}

// postWith sends body to base's ingest endpoint with client and token (none if empty).
func (s *service) postWith(t testing.TB, client *http.Client, base, token string, body any) (int, map[string]any) {
	t.Helper()
	raw, ok := body.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/aggregates", bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("ingest answered %d with %q", resp.StatusCode, b)
	}
	return resp.StatusCode, out
}

// mustPost posts a batch that must be accepted, and returns the result (stored, ...).
func (s *service) mustPost(t testing.TB, token string, b wire.Batch) string {
	t.Helper()
	code, out := s.post(t, token, b)
	if code != http.StatusOK {
		t.Fatalf("batch %s/%s/%d refused: %d %v", b.Region, b.WindowStart.Format(time.RFC3339), b.Seq, code, out)
	}
	return out["result"].(string)
}

// get reads a query endpoint as the operator into dst and returns the status.
func (s *service) get(t testing.TB, path string, dst any) int {
	t.Helper()
	return s.getAs(t, testOperatorToken, path, dst)
}

// getAs reads a query endpoint with token (none if empty) into dst and returns the status.
func (s *service) getAs(t testing.TB, token, path string, dst any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.base+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(dst); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode
}

func (s *service) count(t *testing.T, table string) int64 {
	t.Helper()
	var n int64
	if err := s.db.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func apiError(out map[string]any) apierr.Detail {
	e, _ := out["error"].(map[string]any)
	d := apierr.Detail{}
	d.Code, _ = e["code"].(string)
	d.Field, _ = e["field"].(string)
	d.Message, _ = e["message"].(string)
	return d
}

// window is the start of the window mins minutes before now's.
func window(mins int) time.Time {
	return time.Now().UTC().Truncate(time.Minute).Add(-time.Duration(mins) * time.Minute)
}

func c(app, tier, category, channel, stage, reason string, count, distinct int64) wire.Cell {
	return wire.Cell{Key: wire.Key{App: app, Tier: tier, Category: category, Channel: channel, Stage: stage, Reason: reason}, Count: count, DistinctRecipients: distinct}
}

func batch(region string, ws time.Time, seq int, cells ...wire.Cell) wire.Batch {
	return wire.Batch{Version: wire.Version, Region: region, WindowStart: ws, Seq: seq, Cells: cells}
}
