package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/herald-notify/herald/gateway/apikey"
	"github.com/herald-notify/herald/gateway/directory"
	"github.com/herald-notify/herald/gateway/regionset"
	"github.com/herald-notify/herald/gateway/schema"
	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/platform/health"
	"github.com/herald-notify/herald/platform/httpserver"
	"github.com/herald-notify/herald/platform/lifecycle"
	"github.com/herald-notify/herald/platform/migrate"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/redis"
	"github.com/herald-notify/herald/residency"
)

// ServiceName is the discovery name gateways register under.
const ServiceName = "herald-gateway"

// Migrate creates and migrates the global database.
func Migrate(ctx context.Context, c Config, log *slog.Logger) error {
	return migrate.Database(ctx, c.Postgres, schema.Postgres(), log)
}

var drainDelay = 500 * time.Millisecond

// regionScheme is how every call to a region goes: HTTPS with the gateway's client certificate.
const regionScheme = regionset.Scheme

// keyCacheTTL is how long a verified API key is trusted without asking the database: the time a
// revocation takes to apply.
const keyCacheTTL = 2 * time.Second

// Run serves the gateway until ctx ends, then drains.
func Run(ctx context.Context, c Config, log *slog.Logger, version string) error {
	secret, err := c.DirectorySecret()
	if err != nil {
		return err
	}
	pool, err := postgres.Connect(ctx, c.Postgres)
	if err != nil {
		return err
	}
	defer pool.Close()
	rdb, err := redis.Connect(ctx, c.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()
	disc, err := discovery.Open(c.Discovery)
	if err != nil {
		return err
	}
	policy := &residency.Holder{}
	if err := policy.Load(ctx, disc, c.PolicyKey); err != nil {
		return err
	}
	log.Info("residency policy loaded", "version", policy.Current().Version, "key", c.PolicyKey)

	regionTLS, err := c.RegionTLS.Client().TLS()
	if err != nil {
		return fmt.Errorf("region_tls: %w", err)
	}
	netDialer := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:                 nil,
		TLSClientConfig:       regionTLS,
		TLSHandshakeTimeout:   5 * time.Second,
		DialContext:           netDialer.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}
	var regions *regionset.Set
	if c.RegionTLS.ServerName != "" {
		// Each region is verified by its name, not by the address discovery lists.
		d := &regionDialer{tls: regionTLS, names: c.RegionTLS, dialer: netDialer, handshakeTimeout: transport.TLSHandshakeTimeout,
			regionOf: func(addr string) (string, bool) { return regions.RegionOf(addr) }}
		transport.DialTLSContext = d.DialTLSContext
		log.Info("regions verified by name", "server_name", c.RegionTLS.ServerName)
	}
	client := &http.Client{Transport: transport}
	regions = regionset.New(disc, c.Discovery.Backend != "consul", c.Health.Interval, c.Health.Timeout, log).WithTransport(client.Transport)
	h := health.New(map[string]string{"component": "gateway", "jurisdiction": c.Jurisdiction, "version": version})
	h.Add("postgres", func(ctx context.Context) error { return pool.Ping(ctx) })
	h.Add("redis", func(ctx context.Context) error { return rdb.Ping(ctx).Err() })
	h.Add("regions", func(context.Context) error {
		for _, st := range regions.Statuses() {
			if st.Healthy {
				return nil
			}
		}
		return errors.New("no region is healthy")
	})

	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", c.Listen, err)
	}
	inst, stopDiscovery, err := discovery.RegisterListener(ctx, disc, ServiceName, "gateway", "http", ln, map[string]string{"jurisdiction": c.Jurisdiction}, c.Discovery.TTL)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopDiscovery()

	publicURL := c.PublicURL
	if publicURL == "" {
		publicURL = "http://" + ln.Addr().String()
	}
	keyStore := apikey.NewStore(pool)
	audit := newAuditShipper(regions, client, c.RegionToken, log)
	sendGridKeys, err := c.Receipts.SendGrid.Keys()
	if err != nil {
		return fmt.Errorf("receipts.sendgrid: %w", err)
	}
	srv := &Server{
		SendGridKeys: sendGridKeys, SendGridMaxAge: c.Receipts.SendGrid.maxAge(),
		Jurisdiction: c.Jurisdiction, PublicURL: publicURL, RegionToken: c.RegionToken, DefaultLimit: c.RateLimit.PerMinute, RequestTimeout: c.RequestTimeout,
		Keys: newKeyCache(keyStore, keyCacheTTL), TokenSecrets: newSecretCache(keyStore, keyCacheTTL), Directory: directory.New(pool, secret, c.Directory.CacheSize, c.Directory.CacheTTL),
		Policy: policy, Regions: regions, Limiter: &limiter{rdb: rdb, prefix: c.Redis.Prefix},
		Sends: &sendStore{db: pool}, Audit: audit, Health: h, Client: client, Log: log,
		Templates: &configSync{kind: templateKind, db: pool, regions: regions, policy: policy, client: client, token: c.RegionToken, log: log},
		Workflows: &configSync{kind: workflowKind, db: pool, regions: regions, policy: policy, client: client, token: c.RegionToken, log: log},
	}
	regions.Refresh(ctx)
	httpSrv := &httpserver.Server{
		Name: "gateway-http", Handler: srv.Handler(), Log: log, Listener: ln,
		BeforeShutdown: func() { stopDiscovery(); h.Drain() },
		ReadyDelay:     drainDelay,
	}
	log.Info("gateway started", "addr", inst.Address, "public_url", publicURL, "jurisdiction", c.Jurisdiction)
	// The audit shipper outlives the HTTP server, so the decisions of the requests drained at
	// shutdown are shipped too.
	auditCtx, stopAudit := context.WithCancel(context.WithoutCancel(ctx))
	auditDone := make(chan struct{})
	go func() { defer close(auditDone); _ = audit.Run(auditCtx) }()
	defer func() { stopAudit(); <-auditDone }()
	return lifecycle.Run(ctx, log,
		lifecycle.Task{Name: "http", Run: httpSrv.Run},
		lifecycle.Task{Name: "region health", Run: regions.Run},
		lifecycle.Task{Name: "policy watch", Run: func(ctx context.Context) error { policy.Watch(ctx, disc, c.PolicyKey, log); return nil }},
		lifecycle.Task{Name: "template sync", Run: func(ctx context.Context) error { return srv.Templates.Run(ctx, 2*time.Second) }},
		lifecycle.Task{Name: "workflow sync", Run: func(ctx context.Context) error { return srv.Workflows.Run(ctx, 2*time.Second) }},
	)
}
