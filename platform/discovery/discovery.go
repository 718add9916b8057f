// Package discovery finds Herald processes and holds live configuration. It has two real
// backends behind one interface: Consul (hashicorp/consul/api) when CONSUL_HTTP_ADDR is set, and
// a directory of files otherwise, since no Consul server can run on the development machines.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/herald-notify/herald/platform/config"
)

// ErrNotFound is returned by Get for a key that does not exist.
var ErrNotFound = errors.New("discovery: key not found")

// Instance is one running process of a service.
type Instance struct {
	Service string            `json:"service"`
	ID      string            `json:"id"`
	Address string            `json:"address"` // host:port of its HTTP API
	Meta    map[string]string `json:"meta,omitempty"`
	// HealthURL is polled by Consul; the file backend relies on heartbeats instead.
	HealthURL string    `json:"health_url,omitempty"`
	Updated   time.Time `json:"updated"`
}

// Backend is what Herald needs from a discovery system.
type Backend interface {
	// Register adds or refreshes an instance.
	Register(ctx context.Context, in Instance) error
	Deregister(ctx context.Context, service, id string) error
	// Instances lists the healthy instances of a service.
	Instances(ctx context.Context, service string) ([]Instance, error)
	// Get reads a key; index identifies the version, for Watch.
	Get(ctx context.Context, key string) (value []byte, index uint64, err error)
	Put(ctx context.Context, key string, value []byte) error
	// Watch blocks until the key's index differs from index, or the backend's wait time passes
	// (then it returns the unchanged index), or ctx ends.
	Watch(ctx context.Context, key string, index uint64) (value []byte, newIndex uint64, err error)
}

// Config selects and configures the backend.
type Config struct {
	Backend    string `yaml:"backend" env:"HERALD_DISCOVERY_BACKEND"` // "file" or "consul"
	Path       string `yaml:"path" env:"HERALD_DISCOVERY_PATH"`
	ConsulAddr string `yaml:"consul_addr" env:"CONSUL_HTTP_ADDR"`
	// TTL is how long a file registration stays valid without a heartbeat.
	TTL time.Duration `yaml:"ttl"`
}

// Defaults returns the file backend under dir.
func Defaults(dir string) Config {
	return Config{Backend: "file", Path: dir, TTL: 30 * time.Second}
}

// Validate checks the block; keys are relative, callers prefix them. Setting CONSUL_HTTP_ADDR
// (consul_addr) selects Consul, as the consul CLI does.
func (c *Config) Validate() error {
	if c.ConsulAddr != "" {
		c.Backend = "consul"
	}
	switch c.Backend {
	case "file":
		if c.Path == "" {
			return config.Errorf("path", "", "is required for the file backend")
		}
	case "consul":
		if c.ConsulAddr == "" {
			return config.Errorf("consul_addr", "", "is required for the consul backend (or set CONSUL_HTTP_ADDR)")
		}
	default:
		return config.Errorf("backend", c.Backend, `must be "file" or "consul"`)
	}
	if c.TTL < time.Second {
		return config.Errorf("ttl", c.TTL.String(), "must be at least 1s")
	}
	return nil
}

// Open returns the configured backend.
func Open(c Config) (Backend, error) {
	switch c.Backend {
	case "consul":
		return NewConsul(c.ConsulAddr)
	case "file":
		return NewFile(c.Path, c.TTL)
	}
	return nil, fmt.Errorf("discovery: unknown backend %q", c.Backend)
}

// Keep registers in and refreshes the registration every ttl/3 until ctx ends, then deregisters.
// It returns once the first registration succeeded, or with its error.
func Keep(ctx context.Context, b Backend, in Instance, ttl time.Duration) (stop func(), err error) {
	if err := b.Register(ctx, in); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
				_ = b.Deregister(dctx, in.Service, in.ID)
				dcancel()
				return
			case <-t.C:
				_ = b.Register(ctx, in) // a missed heartbeat is retried at the next tick
			}
		}
	}()
	return func() { cancel(); <-done }, nil
}

// RegisterListener registers the HTTP API listening on ln as an instance of service (its id
// names the service, the host and the port; Consul polls its /readyz over scheme, "http" or
// "https") and keeps the registration fresh until stop is called or ctx ends.
func RegisterListener(ctx context.Context, b Backend, service, idPrefix, scheme string, ln net.Listener, meta map[string]string, ttl time.Duration) (Instance, func(), error) {
	host, _ := os.Hostname()
	addr := ln.Addr().String()
	in := Instance{
		Service:   service,
		ID:        fmt.Sprintf("%s-%s-%d", idPrefix, host, ln.Addr().(*net.TCPAddr).Port),
		Address:   addr,
		HealthURL: scheme + "://" + addr + "/readyz",
		Meta:      meta,
	}
	stop, err := Keep(ctx, b, in, ttl)
	if err != nil {
		return Instance{}, nil, fmt.Errorf("registering %s in discovery: %w", service, err)
	}
	return in, stop, nil
}
