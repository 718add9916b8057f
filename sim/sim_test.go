package sim

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/config"
)

// startSim runs every simulator on free 127.0.0.1 ports with fresh credentials in a temp dir
// and stops it when the test ends.
func startSim(t testing.TB, mutate func(*Config)) *Sim {
	t.Helper()
	s, stop := startSimStop(t, mutate)
	t.Cleanup(stop)
	return s
}

// startSimStop is startSim that also returns stop, which stops the simulators and waits for
// them (a second call does nothing), for tests that restart them.
func startSimStop(t testing.TB, mutate func(*Config)) (*Sim, func()) {
	t.Helper()
	cfg := DefaultConfig(t.TempDir())
	cfg.Webhook.Listen = "127.0.0.1:0"
	cfg.Admin.Listen, cfg.APNs.Listen, cfg.FCM.Listen, cfg.SMTP.Listen, cfg.SMS.Listen =
		"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Seed = 1
	cfg.Drain = 2 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	s, err := New(cfg, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	return s, func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("simulators did not stop within 10s")
			}
		})
	}
}

// caPool reads the CA file the way a client configured with its path would.
func caPool(t testing.TB, s *Sim) *x509.CertPool {
	t.Helper()
	pemBytes, err := os.ReadFile(s.Info().CAFile)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemBytes) {
		t.Fatal("CA file holds no certificate")
	}
	return p
}

// admin calls the admin API and decodes a JSON answer into out (when not nil).
func admin(t testing.TB, s *Sim, method, path string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.Info().Admin+path, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decoding: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

func setFaults(t testing.TB, s *Sim, name string, f Faults) {
	t.Helper()
	if code := admin(t, s, "PUT", "/sim/"+name+"/faults", f, nil); code != 200 {
		t.Fatalf("PUT faults: %d", code)
	}
}

func records(t testing.TB, s *Sim, name, to string) []Record {
	t.Helper()
	var out struct {
		Count    int      `json:"count"`
		Messages []Record `json:"messages"`
	}
	if code := admin(t, s, "GET", "/sim/"+name+"/messages?to="+url.QueryEscape(to), nil, &out); code != 200 {
		t.Fatalf("GET messages: %d", code)
	}
	if out.Count != len(out.Messages) {
		t.Fatalf("count %d but %d messages", out.Count, len(out.Messages))
	}
	return out.Messages
}

func TestSampleConfigIsValid(t *testing.T) {
	cfg := DefaultConfig(t.TempDir())
	if err := config.Load("../config/local/sim.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.APNs.Listen != "127.0.0.1:8443" || cfg.FCM.Listen != "127.0.0.1:8444" || cfg.SMTP.Listen != "127.0.0.1:2525" ||
		cfg.SMS.Listen != "127.0.0.1:8445" || cfg.Admin.Listen != "127.0.0.1:8446" {
		t.Fatalf("sample ports changed: %+v", cfg)
	}
}

func TestBadConfigNamesTheKey(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantKey string
	}{
		{"empty dir", func(c *Config) { c.Dir = "" }, "dir"},
		{"zero capacity", func(c *Config) { c.Records.Capacity = 0 }, "records.capacity"},
		{"bad listen", func(c *Config) { c.APNs.Listen = "everywhere" }, "apns.listen"},
		{"same port twice", func(c *Config) { c.SMS.Listen = c.FCM.Listen }, "sms.listen"},
		{"lower-case team id", func(c *Config) { c.APNs.TeamID = "team" }, "apns.team_id"},
		{"short key id", func(c *Config) { c.APNs.KeyID = "K1" }, "apns.key_id"},
		{"bad project", func(c *Config) { c.FCM.ProjectID = "Herald Local" }, "fcm.project_id"},
		{"no smtp password", func(c *Config) { c.SMTP.Password = "" }, "smtp.password"},
		{"tiny smtp size", func(c *Config) { c.SMTP.MaxMessageBytes = 10 }, "smtp.max_message_bytes"},
		{"bad account sid", func(c *Config) { c.SMS.AccountSID = "AC123" }, "sms.account_sid"},
		{"error rate above 1", func(c *Config) { c.FCM.Faults.ErrorRate = 1.5 }, "fcm.faults.error_rate"},
		{"error status 404", func(c *Config) { c.APNs.Faults.ErrorStatuses = []int{404} }, "apns.faults.error_statuses"},
		{"negative latency", func(c *Config) { c.SMTP.Faults.LatencyMS = -1 }, "smtp.faults.latency_ms"},
		{"bad log level", func(c *Config) { c.Telemetry.LogLevel = "chatty" }, "telemetry.log_level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig(t.TempDir())
			tt.mutate(&cfg)
			err := cfg.Validate()
			var ke *config.KeyError
			if !errors.As(err, &ke) || ke.Key != tt.wantKey {
				t.Fatalf("error %v, want one naming %q", err, tt.wantKey)
			}
		})
	}
}

func TestEnvironmentOverridesTheFile(t *testing.T) {
	t.Setenv("HERALD_SIM_APNS_LISTEN", "127.0.0.1:9443")
	t.Setenv("HERALD_SIM_APNS_TOPICS", "com.example.a,com.example.b")
	cfg := DefaultConfig(t.TempDir())
	if err := config.Load("../config/local/sim.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.APNs.Listen != "127.0.0.1:9443" || len(cfg.APNs.Topics) != 2 {
		t.Fatalf("env not applied: %+v", cfg.APNs)
	}
}

func TestCredentialsAreWrittenAndReusedAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	mutate := func(c *Config) { c.Dir = dir }
	s1 := startSim(t, mutate)
	info1 := s1.Info()
	if _, err := os.Stat(info1.CAFile); err != nil {
		t.Fatalf("CA not written: %v", err)
	}
	for _, f := range []string{info1.APNs.KeyFile, info1.FCM.CredentialsFile, filepath.Join(dir, "ca-key.pem")} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatalf("%s not written: %v", f, err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("secret %s is readable by others: %v", f, st.Mode())
		}
	}
	ca1, _ := os.ReadFile(info1.CAFile)
	key1, _ := os.ReadFile(info1.APNs.KeyFile)
	var sa1 serviceAccount
	raw, _ := os.ReadFile(info1.FCM.CredentialsFile)
	if err := json.Unmarshal(raw, &sa1); err != nil {
		t.Fatal(err)
	}
	if sa1.Type != "service_account" || sa1.ProjectID != "herald-local" || sa1.TokenURI != info1.FCM.TokenURI || sa1.ClientEmail == "" {
		t.Fatalf("service account: %+v", sa1)
	}

	s2 := startSim(t, mutate) // new ports, same dir
	ca2, _ := os.ReadFile(s2.Info().CAFile)
	key2, _ := os.ReadFile(s2.Info().APNs.KeyFile)
	var sa2 serviceAccount
	raw, _ = os.ReadFile(s2.Info().FCM.CredentialsFile)
	_ = json.Unmarshal(raw, &sa2)
	if !bytes.Equal(ca1, ca2) || !bytes.Equal(key1, key2) || sa1.PrivateKey != sa2.PrivateKey {
		t.Fatal("a restart replaced the CA or keys clients already trust")
	}
	if sa2.TokenURI != s2.Info().FCM.TokenURI {
		t.Fatalf("token_uri %s not rewritten to %s", sa2.TokenURI, s2.Info().FCM.TokenURI)
	}
}

func TestShutdownStopsEveryListener(t *testing.T) {
	cfg := DefaultConfig(t.TempDir())
	cfg.Webhook.Listen = "127.0.0.1:0"
	cfg.Admin.Listen, cfg.APNs.Listen, cfg.FCM.Listen, cfg.SMTP.Listen, cfg.SMS.Listen =
		"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	s, err := New(cfg, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	resp, err := http.Get(s.Info().Admin + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := http.Get(s.Info().Admin + "/healthz"); err == nil {
		t.Fatal("admin still answers after shutdown")
	}
}
