// Package analytics is Herald's central analytics service. It receives only anonymised,
// thresholded aggregates from the regions, never a user id, token, address or content.
//
// Regions post batches in the format of package wire (POST /v1/aggregates) to the ingest
// listener, over HTTPS with a client certificate naming the region (ingest.client_name) and
// the region's bearer token. The decoder accepts that closed schema only; a cell with fewer than k distinct
// recipients, a category not registered in config, or any extra field is refused with a 400
// naming the field. Batches are upserted by their key (region, window, seq), so a repeat
// counts once. GET /v1/categories tells the regions' exporters which categories are
// registered, so they fold any other into "other" rather than have a window refused. The query
// API (/v1/funnel, /v1/dropoff, /v1/latency, /v1/cost) and the dashboard (/dashboard/), on the
// operators' listener, read the sums. docs/analytics.md has the whole contract.
package analytics

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/herald-notify/herald/analytics/schema"
	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/platform/health"
	"github.com/herald-notify/herald/platform/httpserver"
	"github.com/herald-notify/herald/platform/migrate"
	"github.com/herald-notify/herald/platform/postgres"
)

// ServiceName is the discovery name of central analytics.
const ServiceName = "herald-analytics"

// Migrate creates and migrates the analytics database.
func Migrate(ctx context.Context, c Config, log *slog.Logger) error {
	return migrate.Database(ctx, c.Postgres, schema.Postgres(), log)
}

// Run serves analytics until ctx ends, then drains.
func Run(ctx context.Context, c Config, log *slog.Logger, version string) error {
	tokens, err := c.regionTokens()
	if err != nil {
		return err
	}
	operator, err := c.operatorToken(tokens)
	if err != nil {
		return err
	}
	pool, err := postgres.Connect(ctx, c.Postgres)
	if err != nil {
		return err
	}
	defer pool.Close()
	disc, err := discovery.Open(c.Discovery)
	if err != nil {
		return err
	}
	h := health.New(map[string]string{"component": "analytics", "version": version})
	h.Add("postgres", func(ctx context.Context) error { return pool.Ping(ctx) })

	ingestTLS, err := c.Ingest.TLS.Server().TLS()
	if err != nil {
		return fmt.Errorf("ingest.tls: %w", err)
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", c.Listen, err)
	}
	ingestLn, err := net.Listen("tcp", c.Ingest.Listen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("ingest.listen: listening on %s: %w", c.Ingest.Listen, err)
	}
	inst, stopDiscovery, err := discovery.RegisterListener(ctx, disc, ServiceName, "analytics", "http", ln, nil, c.Discovery.TTL)
	if err != nil {
		ln.Close()
		ingestLn.Close()
		return err
	}
	defer stopDiscovery()

	store := NewStore(pool)
	a := newAPI(c, credentials{regions: tokens, operator: operator}, store, log)
	// The sweep ends before the pool closes, however Run returns.
	sweepCtx, stopSweep := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopSweep()
	if c.MinuteRetention > 0 {
		wg.Go(func() { sweep(sweepCtx, store, c.MinuteRetention, log) })
	}
	// Two listeners: the operators' (dashboard, queries) and the regions' (ingest, mutual TLS).
	// Either failing stops both.
	beforeShutdown := sync.OnceFunc(func() { stopDiscovery(); h.Drain() })
	operatorSrv := &httpserver.Server{
		Name: "analytics-http", Handler: a.router(h), Log: log, Listener: ln,
		BeforeShutdown: beforeShutdown, ReadyDelay: 500 * time.Millisecond,
	}
	ingestSrv := &httpserver.Server{
		Name: "analytics-ingest", Handler: a.ingestRouter(h), Log: log, Listener: ingestLn, TLS: ingestTLS,
		BeforeShutdown: beforeShutdown, ReadyDelay: 500 * time.Millisecond,
	}
	log.Info("analytics started", "addr", inst.Address, "ingest_addr", ingestLn.Addr().String(), "k", c.K,
		"regions", sortedKeys(c.Regions), "client_name", c.Ingest.ClientName)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return operatorSrv.Run(gctx) })
	g.Go(func() error { return ingestSrv.Run(gctx) })
	return g.Wait()
}

// sweepEvery is how often minute data past the retention is deleted.
var sweepEvery = 10 * time.Minute

// sweep deletes minute data older than retention now and every sweepEvery until ctx ends.
func sweep(ctx context.Context, store *Store, retention time.Duration, log *slog.Logger) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		n, err := store.DeleteMinutesBefore(ctx, time.Now().Add(-retention))
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("sweeping old minute data", "err", err)
		case n > 0:
			metricSwept.Add(float64(n))
			log.Info("swept old minute data", "rows", n, "retention", retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
