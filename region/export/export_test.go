package export

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/analytics/kanon"
	"github.com/herald-notify/herald/analytics/wire"
	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/pki"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/notify"
)

func TestAnOutcomeCountsInTheUTCMinuteItHappened(t *testing.T) {
	cet := time.FixedZone("CET", 3600)
	for _, tc := range []struct {
		name string
		at   time.Time
		want time.Time
	}{
		{"inside a minute", time.Date(2026, 11, 25, 4, 7, 59, 999e6, time.UTC), time.Date(2026, 11, 25, 4, 7, 0, 0, time.UTC)},
		{"on the minute", time.Date(2026, 11, 25, 4, 8, 0, 0, time.UTC), time.Date(2026, 11, 25, 4, 8, 0, 0, time.UTC)},
		{"another zone", time.Date(2026, 11, 25, 5, 8, 30, 0, cet), time.Date(2026, 11, 25, 4, 8, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := WindowOf(tc.at)
			if !got.Equal(tc.want) || got.Location() != time.UTC {
				t.Errorf("WindowOf(%v) = %v, want %v", tc.at, got, tc.want)
			}
		})
	}
}

func TestTheEventKeyTellsOutcomesApartAndNotTheirRepeats(t *testing.T) {
	base := EventKey("n1", "ada", "email", "delivered")
	if again := EventKey("n1", "ada", "email", "delivered"); again != base {
		t.Errorf("a repeat has another key: %q vs %q", again, base)
	}
	for _, other := range []string{
		EventKey("n2", "ada", "email", "delivered"), EventKey("n1", "bob", "email", "delivered"),
		EventKey("n1", "ada", "sms", "delivered"), EventKey("n1", "ada", "email", "dispatched"),
	} {
		if other == base {
			t.Errorf("%q has the key of another outcome", other)
		}
	}
}

func TestRowsKeepAnalyticsVocabulariesAndMeasureDeliveredLatency(t *testing.T) {
	due := time.Date(2026, 11, 25, 4, 0, 0, 0, time.UTC)
	b := notify.EventBatch{App: "shop", Tier: "transactional", Category: "order", NotificationID: "n1", DueAt: due, At: due.Add(1500 * time.Millisecond),
		Outcomes: []notify.Outcome{
			{User: "ada", Channel: "sms", Stage: "delivered", Country: "DE"},
			{User: "ada", Channel: "email", Stage: "suppressed", Reason: "no_address", Country: "DE"}, // country only on SMS
			{User: "bob", Channel: "email", Stage: "suppressed", Reason: "bored"},                     // not a wire reason
			{User: "bob", Channel: "pigeon", Stage: "fanned_out"},                                     // not a channel
			{User: "", Channel: "email", Stage: "fanned_out"},                                         // no recipient
			{User: "cy", Channel: "email", Stage: notify.StageComplained},                             // told to the app, not counted
			{User: "cy", Channel: "email", Stage: notify.StageUnsubscribed},                           // nor dropped as an error
		}}
	rs, dropped := rows(b)
	if dropped != 3 || len(rs) != 2 {
		t.Fatalf("%d rows, %d dropped; want 2 and 3", len(rs), dropped)
	}
	if rs[0].latencyMS == nil || *rs[0].latencyMS != 1500 || rs[0].country != "DE" || rs[0].key != "n1|ada|sms|delivered" {
		t.Errorf("delivered row %+v", rs[0])
	}
	if rs[1].latencyMS != nil || rs[1].country != "" || !rs[1].window.Equal(due) {
		t.Errorf("suppressed row %+v", rs[1])
	}
	if bad, dropped := rows(notify.EventBatch{App: "shop", Tier: "urgent", Outcomes: b.Outcomes[:1]}); len(bad) != 0 || dropped != 1 {
		t.Errorf("an unknown tier was kept: %+v", bad)
	}
}

func cellsOf(n int, key func(i int) wire.Key) []kanon.Cell {
	var out []kanon.Cell
	for i := range n {
		out = append(out, kanon.Cell{Key: key(i), Count: 1, Recipients: map[string]struct{}{fmt.Sprint("u", i): {}}})
	}
	return out
}

func TestBatchesAreFoldedToKAndSplitTheSameWayEachTime(t *testing.T) {
	w := time.Date(2026, 11, 25, 4, 0, 0, 0, time.UTC)
	big := cellsOf(maxCellsPerBatch+5, func(i int) wire.Key {
		// distinct keys, each with one recipient: with k=1 every one passes.
		return wire.Key{App: "shop", Tier: "social", Category: "order", Channel: "email", Stage: "failed", Reason: "permanent", Country: ""}
	})
	for i := range big {
		big[i].Key.App = fmt.Sprintf("app%06d", i)
	}
	// 4000 deliveries to 4 users: below k=10 however many observations.
	h := wire.NewHistogram("social", "email")
	h.Counts[3] = 4000
	few := kanon.Latency{Hist: h, Recipients: map[string]struct{}{"u1": {}, "u2": {}, "u3": {}, "u4": {}}}
	for _, tc := range []struct {
		name         string
		cells        []kanon.Cell
		latency      []kanon.Latency
		k            int
		wantBatches  int
		wantWithheld int64
	}{
		{"nothing left after folding is still one batch", cellsOf(3, func(int) wire.Key {
			return wire.Key{App: "shop", Tier: "social", Category: "order", Channel: "email", Stage: "delivered"}
		}), []kanon.Latency{few}, 10, 1, 3},
		{"a window over the request size is split", big, nil, 1, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := Batches("eu-west-1", w, tc.cells, tc.latency, tc.k)
			again := Batches("eu-west-1", w, tc.cells, tc.latency, tc.k)
			if len(bs) != tc.wantBatches || len(again) != len(bs) {
				t.Fatalf("%d batches (then %d), want %d", len(bs), len(again), tc.wantBatches)
			}
			var cells int
			for i, b := range bs {
				if b.Seq != i || !b.WindowStart.Equal(w) || b.Region != "eu-west-1" || b.Cells == nil {
					t.Errorf("batch %d: seq %d window %v", i, b.Seq, b.WindowStart)
				}
				if len(b.Cells) > 0 && (again[i].Cells[0] != b.Cells[0] || again[i].Cells[len(b.Cells)-1] != b.Cells[len(b.Cells)-1]) {
					t.Errorf("batch %d splits differently the second time", i)
				}
				for _, c := range b.Cells {
					if c.DistinctRecipients < int64(tc.k) {
						t.Errorf("cell below k: %+v", c)
					}
				}
				cells += len(b.Cells)
			}
			if bs[0].Withheld != tc.wantWithheld {
				t.Errorf("withheld %d, want %d", bs[0].Withheld, tc.wantWithheld)
			}
			if tc.latency != nil && (len(bs[0].Latency) != 0 || bs[0].LatencyWithheld != 4000) {
				t.Errorf("a histogram of 4 recipients was sent with k=%d: %+v", tc.k, bs[0].Latency)
			}
			if tc.k == 1 && cells != len(tc.cells) {
				t.Errorf("%d cells sent, want %d", cells, len(tc.cells))
			}
		})
	}
}

func TestExportConfigErrorsNameTheKey(t *testing.T) {
	ok := DefaultConfig()
	ok.CentralURL, ok.Token = "https://127.0.0.1:8091", "local-analytics-eu-west-1-token"
	cc := testenv.Exporter(t, "eu-west-1")
	ok.TLS = TLSConfig{CAFile: cc.CAFile, CertFile: cc.CertFile, KeyFile: cc.KeyFile}
	if err := ok.Validate(); err != nil {
		t.Fatalf("the local config is refused: %v", err)
	}
	withName := ok
	withName.TLS.ServerName = "analytics.herald.internal"
	if err := withName.Validate(); err != nil {
		t.Fatalf("a server name is refused: %v", err)
	}
	systemRoots := ok
	systemRoots.TLS.CAFile = ""
	if err := systemRoots.Validate(); err != nil {
		t.Fatalf("no ca_file (the system's roots) is refused: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		name, key string
		edit      func(*Config)
	}{
		{"no central URL", "central_url", func(c *Config) { c.CentralURL = "" }},
		{"no scheme", "central_url", func(c *Config) { c.CentralURL = "127.0.0.1:8091" }},
		{"plain http", "central_url", func(c *Config) { c.CentralURL = "http://127.0.0.1:8090" }},
		{"no certificate", "tls.cert_file", func(c *Config) { c.TLS.CertFile = "" }},
		{"a certificate that is not there", "tls.cert_file", func(c *Config) { c.TLS.CertFile = missing }},
		{"no key", "tls.key_file", func(c *Config) { c.TLS.KeyFile = "" }},
		{"a key that is not there", "tls.key_file", func(c *Config) { c.TLS.KeyFile = missing }},
		{"a CA that is not there", "tls.ca_file", func(c *Config) { c.TLS.CAFile = missing }},
		{"a server name that is no DNS name", "tls.server_name", func(c *Config) { c.TLS.ServerName = "Analytics Server" }},
		{"no token", "token", func(c *Config) { c.Token = "" }},
		{"a short token", "token", func(c *Config) { c.Token = "short" }},
		{"a token and a token file", "token_file", func(c *Config) { c.TokenFile = "/run/secrets/t" }},
		{"k of 0", "k", func(c *Config) { c.K = 0 }},
		{"a negative grace", "grace", func(c *Config) { c.Grace = -time.Second }},
		{"an hour's retention", "retention", func(c *Config) { c.Retention = time.Hour }},
		{"no interval", "interval", func(c *Config) { c.Interval = 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			err := c.Validate()
			var ke *config.KeyError
			if !errors.As(err, &ke) || ke.Key != tc.key {
				t.Errorf("error %v does not name %q", err, tc.key)
			}
		})
	}
}

// The exporter's TLS is the region's side of the mutual TLS: its certificate always offered,
// analytics' verified against ca_file, by server_name when set.
func TestExporterDialsWithItsCertificateAndVerifiesTheServerName(t *testing.T) {
	cc := testenv.Exporter(t, "eu-west-1")
	c := TLSConfig{CAFile: cc.CAFile, CertFile: cc.CertFile, KeyFile: cc.KeyFile, ServerName: "analytics.herald.internal"}
	tc, err := c.clientTLS()
	if err != nil {
		t.Fatal(err)
	}
	if tc.ServerName != "analytics.herald.internal" || tc.RootCAs == nil || tc.MinVersion != tls.VersionTLS13 || tc.InsecureSkipVerify {
		t.Errorf("client TLS: server name %q, roots %v, min version %x, skip verify %v", tc.ServerName, tc.RootCAs != nil, tc.MinVersion, tc.InsecureSkipVerify)
	}
	cert, err := tc.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil || len(cert.Certificate) == 0 {
		t.Fatalf("no client certificate offered: %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.CertFile = junk
	if _, err := c.clientTLS(); err == nil || !strings.Contains(err.Error(), "export.tls") {
		t.Errorf("a junk certificate: got %v, want an error naming export.tls", err)
	}
}

// The exporter New builds calls central over TLS 1.3 with the region's certificate and
// verifies central's: against ca_file and the host of central_url, or server_name when set.
func TestExporterCallsCentralWithItsCertificateAndVerifiesCentrals(t *testing.T) {
	d := testenv.PKI(t)
	serve := func(t *testing.T, certFile, keyFile string) string {
		t.Helper()
		sc, err := (pki.ServerConfig{CertFile: certFile, KeyFile: keyFile, ClientCAFile: d.CAFile()}).TLS()
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !pki.Verified(r.TLS) || r.TLS.VerifiedChains[0][0].Subject.CommonName != "exporter-eu-west-1" {
				http.Error(w, `{"error":{"code":"unauthenticated"}}`, http.StatusUnauthorized)
				return
			}
			_, _ = io.WriteString(w, `{"global":["order"],"apps":{}}`)
		}))
		srv.TLS = sc
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv.URL
	}
	exporter := func(t *testing.T, url, serverName string) *Exporter {
		t.Helper()
		cfg := DefaultConfig()
		cc := testenv.Exporter(t, "eu-west-1")
		cfg.CentralURL, cfg.Token = url, "local-analytics-eu-west-1-token"
		cfg.TLS = TLSConfig{CAFile: cc.CAFile, CertFile: cc.CertFile, KeyFile: cc.KeyFile, ServerName: serverName}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		e, err := New("eu-west-1", cfg, kafka.Config{}, nil, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	central := serve(t, d.CertFile("analytics"), d.KeyFile("analytics"))

	cats, err := exporter(t, central, "").client.Categories(context.Background())
	if err != nil || !cats.Allows("shop", "order") {
		t.Fatalf("central's categories over mutual TLS: %+v %v", cats, err)
	}
	if _, err := exporter(t, central, "localhost").client.Categories(context.Background()); err != nil {
		t.Errorf("server_name localhost, which central's certificate names: %v", err)
	}
	if _, err := exporter(t, central, "analytics.herald.internal").client.Categories(context.Background()); err == nil || !strings.Contains(err.Error(), "analytics.herald.internal") {
		t.Errorf("server_name central's certificate does not carry: %v, want the handshake refused naming it", err)
	}

	// A central certified by another CA is not central.
	other, err := pki.NewCA("another CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	leaf, err := other.Issue("analytics", pki.Server, []string{"127.0.0.1"}, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "impostor.pem"), filepath.Join(dir, "impostor-key.pem")
	if err := leaf.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	impostor := serve(t, certFile, keyFile)
	if _, err := exporter(t, impostor, "").client.Categories(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a central of another CA: %v, want the certificate refused", err)
	}
}
