package region

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/platform/health"
	"github.com/herald-notify/herald/platform/httpserver"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/lifecycle"
)

// ServiceName is the discovery name regions register under.
const ServiceName = "herald-region"

// Run starts the region process with its configured roles and blocks until ctx ends, then
// drains: readiness turns 503, the listener closes after in-flight requests finish.
func Run(ctx context.Context, c Config, log *slog.Logger, version string) error {
	log = log.With("region", c.Name)
	stores, err := OpenStores(ctx, c)
	if err != nil {
		return err
	}
	defer stores.Close()

	h := health.New(map[string]string{"component": "region", "region": c.Name, "jurisdiction": c.Jurisdiction, "roles": strings.Join(c.Roles, ","), "version": version})
	h.Add("postgres", func(ctx context.Context) error { return stores.PG.Ping(ctx) })
	h.Add("cassandra", func(ctx context.Context) error {
		return stores.Cass.Query(`SELECT region FROM region_info WHERE singleton = true`).WithContext(ctx).Exec()
	})
	h.Add("redis", func(ctx context.Context) error { return stores.Redis.Ping(ctx).Err() })
	h.Add("kafka", func(ctx context.Context) error { return kafka.Ping(ctx, stores.Kafka) })

	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", c.Listen, err)
	}
	router := NewRouter(h)

	disc, err := discovery.Open(c.Discovery)
	if err != nil {
		ln.Close()
		return err
	}
	host, _ := os.Hostname()
	inst := discovery.Instance{
		Service:   ServiceName,
		ID:        fmt.Sprintf("%s-%s-%d", c.Name, host, ln.Addr().(*net.TCPAddr).Port),
		Address:   ln.Addr().String(),
		HealthURL: "http://" + ln.Addr().String() + "/readyz",
		Meta:      map[string]string{"region": c.Name, "jurisdiction": c.Jurisdiction, "roles": strings.Join(c.Roles, ",")},
	}
	stopDiscovery, err := discovery.Keep(ctx, disc, inst, c.Discovery.TTL)
	if err != nil {
		ln.Close()
		return fmt.Errorf("registering in discovery: %w", err)
	}
	log.Info("region started", "addr", inst.Address, "roles", c.Roles)

	srv := &httpserver.Server{
		Name: "region-http", Handler: router, Log: log, Listener: ln,
		BeforeShutdown: func() { stopDiscovery(); h.Drain() },
		ReadyDelay:     drainDelay,
	}
	err = lifecycle.Run(ctx, log, lifecycle.Task{Name: "http", Run: srv.Run})
	stopDiscovery()
	return err
}

// drainDelay is how long readiness reports draining before the listener closes.
var drainDelay = 500 * time.Millisecond

// NewRouter builds the region's HTTP handler: health, metrics, and the API of the roles it runs.
func NewRouter(h *health.Health) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())
	r.GET("/healthz", gin.WrapF(h.Live))
	r.GET("/readyz", gin.WrapF(h.Ready))
	r.GET("/metrics", gin.WrapH(promhttp.Handler()))
	return r
}
