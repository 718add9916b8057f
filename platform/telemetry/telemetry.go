// Package telemetry sets up logging (log/slog), tracing (OpenTelemetry, exported over OTLP/HTTP
// when an endpoint is configured) and the Prometheus registry every Herald process exposes.
package telemetry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"

	"github.com/herald-notify/herald/platform/config"
)

// Config is the telemetry block of every component's config.
type Config struct {
	LogLevel  string `yaml:"log_level" env:"HERALD_LOG_LEVEL"`
	LogFormat string `yaml:"log_format" env:"HERALD_LOG_FORMAT"` // "json" or "text"
	// OTLPEndpoint is an OTLP/HTTP collector's base URL: https://host:port exports over TLS
	// (verified against the system's roots, or OTLPCAFile), http://host:port in the clear;
	// traces go to its path + /v1/traces. Empty keeps traces in process, which still
	// propagates trace context to the next hop.
	OTLPEndpoint string `yaml:"otlp_endpoint" env:"OTEL_EXPORTER_OTLP_ENDPOINT"`
	// OTLPCAFile, for an https endpoint, holds the CA (PEM) its certificate chains to.
	OTLPCAFile  string  `yaml:"otlp_ca_file" env:"OTEL_EXPORTER_OTLP_CERTIFICATE"`
	SampleRatio float64 `yaml:"sample_ratio"`
}

// Defaults returns JSON logs at info and full sampling.
func Defaults() Config { return Config{LogLevel: "info", LogFormat: "json", SampleRatio: 1} }

// Validate checks the block; keys are relative, callers prefix them.
func (c Config) Validate() error {
	if _, err := parseLevel(c.LogLevel); err != nil {
		return config.Errorf("log_level", c.LogLevel, "must be debug, info, warn or error")
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return config.Errorf("log_format", c.LogFormat, `must be "json" or "text"`)
	}
	if _, err := c.otlpOptions(); err != nil {
		return err
	}
	if c.SampleRatio < 0 || c.SampleRatio > 1 {
		return config.Errorf("sample_ratio", fmt.Sprint(c.SampleRatio), "must be between 0 and 1")
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(strings.ToUpper(s)))
	return l, err
}

// Logger returns a logger writing to w, tagged with the component.
func Logger(c Config, w io.Writer, component string) *slog.Logger {
	lvl, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if c.LogFormat == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h).With("component", component)
}

// SetupTracing installs the global tracer provider and the W3C trace-context propagator. The
// returned function flushes and stops the exporter.
func SetupTracing(ctx context.Context, c Config, service string) (func(context.Context) error, error) {
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(service)))
	if err != nil {
		return nil, fmt.Errorf("otel resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.SampleRatio))),
	}
	if c.OTLPEndpoint != "" {
		eopts, err := c.otlpOptions()
		if err != nil {
			return nil, err
		}
		exp, err := otlptracehttp.New(ctx, eopts...)
		if err != nil {
			return nil, fmt.Errorf("otlp exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return tp.Shutdown, nil
}

// otlpOptions turns the endpoint into the exporter's options: its scheme decides TLS.
func (c Config) otlpOptions() ([]otlptracehttp.Option, error) {
	if c.OTLPEndpoint == "" {
		if c.OTLPCAFile != "" {
			return nil, config.Errorf("otlp_ca_file", c.OTLPCAFile, "is set without otlp_endpoint")
		}
		return nil, nil
	}
	u, err := url.Parse(c.OTLPEndpoint)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, config.Errorf("otlp_endpoint", c.OTLPEndpoint, "must be an https:// (or, in the clear, http://) URL of a collector, like https://otel-collector:4318")
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(u.Host)}
	if p := strings.TrimSuffix(u.Path, "/"); p != "" {
		opts = append(opts, otlptracehttp.WithURLPath(p+"/v1/traces"))
	}
	switch {
	case u.Scheme == "http":
		if c.OTLPCAFile != "" {
			return nil, config.Errorf("otlp_ca_file", c.OTLPCAFile, "is set for an http:// endpoint, which uses no TLS")
		}
		opts = append(opts, otlptracehttp.WithInsecure())
	case c.OTLPCAFile != "":
		raw, err := os.ReadFile(c.OTLPCAFile)
		if err != nil {
			return nil, config.Errorf("otlp_ca_file", c.OTLPCAFile, "cannot be read: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw) {
			return nil, config.Errorf("otlp_ca_file", c.OTLPCAFile, "holds no PEM certificate")
		}
		opts = append(opts, otlptracehttp.WithTLSClientConfig(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}))
	default:
		opts = append(opts, otlptracehttp.WithTLSClientConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	return opts, nil
}
