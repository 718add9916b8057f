package telemetry

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel"

	"github.com/herald-notify/herald/platform/config"
)

func TestOTLPEndpointMustBeAnHTTPOrHTTPSURL(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		endpoint, caFile, wantKey string
	}{
		{"", "", ""},
		{"https://collector:4318", "", ""},
		{"http://127.0.0.1:4318", "", ""},
		{"https://collector:4318/otlp/", "", ""},
		{"collector:4318", "", "otlp_endpoint"}, // no scheme: never silently in the clear
		{"127.0.0.1:4318", "", "otlp_endpoint"},
		{"grpc://collector:4317", "", "otlp_endpoint"},
		{"https://", "", "otlp_endpoint"},
		{"https://user:pw@collector:4318", "", "otlp_endpoint"},
		{"https://collector:4318?x=1", "", "otlp_endpoint"},
		{"HTTPS://collector:4318", "", ""}, // url.Parse lowers the scheme
		{"", ca, "otlp_ca_file"},
		{"http://collector:4318", ca, "otlp_ca_file"},
		{"https://collector:4318", ca, "otlp_ca_file"}, // not PEM
		{"https://collector:4318", "/nonexistent/ca.pem", "otlp_ca_file"},
	}
	for _, c := range cases {
		cfg := Defaults()
		cfg.OTLPEndpoint, cfg.OTLPCAFile = c.endpoint, c.caFile
		err := cfg.Validate()
		var ke *config.KeyError
		switch {
		case c.wantKey == "" && err != nil:
			t.Errorf("%q: %v", c.endpoint, err)
		case c.wantKey != "" && (!errors.As(err, &ke) || ke.Key != c.wantKey):
			t.Errorf("%q (ca %q): got %v, want an error naming %s", c.endpoint, c.caFile, err, c.wantKey)
		}
	}
}

// collector counts the trace exports it receives, and how many came over TLS.
func collector(t *testing.T, tlsOn bool) (*httptest.Server, *atomic.Int32, *atomic.Int32) {
	var got, overTLS atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/traces" {
			got.Add(1)
			if r.TLS != nil {
				overTLS.Add(1)
			}
		}
		w.WriteHeader(http.StatusOK)
	})
	srv := httptest.NewUnstartedServer(h)
	if tlsOn {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, &got, &overTLS
}

// exportOne exports one span through c and returns the export's error (the SDK reports it
// to otel's error handler, not to the caller).
func exportOne(t *testing.T, c Config) error {
	t.Helper()
	var exportErr atomic.Value
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { exportErr.CompareAndSwap(nil, err) }))
	t.Cleanup(func() { otel.SetErrorHandler(otel.ErrorHandlerFunc(func(error) {})) })
	shutdown, err := SetupTracing(context.Background(), c, "telemetry-test")
	if err != nil {
		t.Fatal(err)
	}
	_, span := otel.Tracer("test").Start(context.Background(), "one")
	span.End()
	if err := shutdown(context.Background()); err != nil { // flushes: the export happens, or fails, here
		return err
	}
	if err, ok := exportErr.Load().(error); ok {
		return err
	}
	return nil
}

func TestOTLPExporterHonoursTheEndpointsScheme(t *testing.T) {
	t.Run("https exports over TLS, verified against otlp_ca_file", func(t *testing.T) {
		srv, got, overTLS := collector(t, true)
		ca := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
			t.Fatal(err)
		}
		c := Defaults()
		c.OTLPEndpoint, c.OTLPCAFile = srv.URL, ca // httptest's URL is https://127.0.0.1:port
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		if err := exportOne(t, c); err != nil {
			t.Fatal(err)
		}
		if got.Load() != 1 || overTLS.Load() != 1 {
			t.Fatalf("exports %d, over TLS %d; want 1 and 1", got.Load(), overTLS.Load())
		}
	})
	t.Run("https refuses a collector its roots do not certify", func(t *testing.T) {
		srv, got, _ := collector(t, true)
		c := Defaults()
		c.OTLPEndpoint = srv.URL
		if err := exportOne(t, c); err == nil || got.Load() != 0 {
			t.Fatalf("export to an unverified collector: %v, %d received", err, got.Load())
		}
	})
	t.Run("https never falls back to the clear", func(t *testing.T) {
		srv, got, _ := collector(t, false)
		c := Defaults()
		c.OTLPEndpoint = "https://" + srv.Listener.Addr().String()
		if err := exportOne(t, c); err == nil || got.Load() != 0 {
			t.Fatalf("https endpoint on a plain collector: %v, %d received in the clear", err, got.Load())
		}
	})
	t.Run("http exports in the clear", func(t *testing.T) {
		srv, got, overTLS := collector(t, false)
		c := Defaults()
		c.OTLPEndpoint = srv.URL
		if err := exportOne(t, c); err != nil {
			t.Fatal(err)
		}
		if got.Load() != 1 || overTLS.Load() != 0 {
			t.Fatalf("exports %d, over TLS %d; want 1 and 0", got.Load(), overTLS.Load())
		}
	})
}
