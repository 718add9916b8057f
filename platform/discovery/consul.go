package discovery

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Consul is the Consul backend: services go through the local agent with an HTTP health check,
// keys through the KV store, watches through blocking queries.
type Consul struct {
	c        *api.Client
	waitTime time.Duration
}

// NewConsul returns a client for the agent at addr (host:port or a URL).
func NewConsul(addr string) (*Consul, error) {
	cfg := api.DefaultConfig()
	cfg.Address = addr
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", err)
	}
	return &Consul{c: c, waitTime: 5 * time.Minute}, nil
}

// Register registers the instance with the agent; Consul polls its HealthURL.
func (c *Consul) Register(ctx context.Context, in Instance) error {
	host, portStr, err := net.SplitHostPort(in.Address)
	if err != nil {
		return fmt.Errorf("instance address %q: %w", in.Address, err)
	}
	port, _ := strconv.Atoi(portStr)
	reg := &api.AgentServiceRegistration{ID: in.ID, Name: in.Service, Address: host, Port: port, Meta: in.Meta, Tags: tags(in.Meta)}
	if in.HealthURL != "" {
		reg.Check = &api.AgentServiceCheck{HTTP: in.HealthURL, Interval: "5s", Timeout: "2s", DeregisterCriticalServiceAfter: "1m",
			// A region's /readyz is HTTPS under the internal CA, which the agent need not
			// trust: the check reads readiness only (no certificate is asked, no data comes
			// back), and every call the gateway makes verifies the region's certificate itself.
			TLSSkipVerify: strings.HasPrefix(in.HealthURL, "https://")}
	}
	opts := api.ServiceRegisterOpts{}.WithContext(ctx)
	if err := c.c.Agent().ServiceRegisterOpts(reg, opts); err != nil {
		return fmt.Errorf("consul register %s/%s: %w", in.Service, in.ID, err)
	}
	return nil
}

// Deregister removes the instance from the agent.
func (c *Consul) Deregister(ctx context.Context, _, id string) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	if err := c.c.Agent().ServiceDeregisterOpts(id, q); err != nil {
		return fmt.Errorf("consul deregister %s: %w", id, err)
	}
	return nil
}

// Instances lists the passing instances of service.
func (c *Consul) Instances(ctx context.Context, service string) ([]Instance, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	entries, _, err := c.c.Health().Service(service, "", true, q)
	if err != nil {
		return nil, fmt.Errorf("consul health %s: %w", service, err)
	}
	out := make([]Instance, 0, len(entries))
	for _, e := range entries {
		addr := e.Service.Address
		if addr == "" {
			addr = e.Node.Address
		}
		out = append(out, Instance{Service: e.Service.Service, ID: e.Service.ID, Address: net.JoinHostPort(addr, strconv.Itoa(e.Service.Port)), Meta: e.Service.Meta})
	}
	return out, nil
}

// Get reads a key from the KV store.
func (c *Consul) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	kv, meta, err := c.c.KV().Get(key, q)
	if err != nil {
		return nil, 0, fmt.Errorf("consul kv get %s: %w", key, err)
	}
	if kv == nil {
		return nil, meta.LastIndex, ErrNotFound
	}
	return kv.Value, kv.ModifyIndex, nil
}

// Put writes a key.
func (c *Consul) Put(ctx context.Context, key string, value []byte) error {
	w := (&api.WriteOptions{}).WithContext(ctx)
	if _, err := c.c.KV().Put(&api.KVPair{Key: key, Value: value}, w); err != nil {
		return fmt.Errorf("consul kv put %s: %w", key, err)
	}
	return nil
}

// Watch is a blocking query on the key.
func (c *Consul) Watch(ctx context.Context, key string, index uint64) ([]byte, uint64, error) {
	q := (&api.QueryOptions{WaitIndex: index, WaitTime: c.waitTime}).WithContext(ctx)
	kv, meta, err := c.c.KV().Get(key, q)
	if err != nil {
		return nil, index, fmt.Errorf("consul kv watch %s: %w", key, err)
	}
	if kv == nil {
		return nil, meta.LastIndex, nil
	}
	return kv.Value, kv.ModifyIndex, nil
}

// tags turns the instance's meta into "key=value" tags (sorted), so operators can filter in
// Consul's UI and DNS (region=eu-west-1, jurisdiction=EU); Herald itself reads the meta.
func tags(meta map[string]string) []string {
	out := make([]string, 0, len(meta))
	for k, v := range meta {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
