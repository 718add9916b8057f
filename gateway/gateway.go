package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/gateway/apikey"
	"github.com/herald-notify/herald/gateway/schema"
	"github.com/herald-notify/herald/platform/apierr"
	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/platform/health"
	"github.com/herald-notify/herald/platform/httpserver"
	"github.com/herald-notify/herald/platform/migrate"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/redis"
)

// ServiceName is the discovery name gateways register under.
const ServiceName = "herald-gateway"

// regionService is the discovery name regions register under (the gateway talks to regions
// over HTTP only, so it names the service rather than importing the region package).
const regionService = "herald-region"

// Migrate creates and migrates the global database.
func Migrate(ctx context.Context, c Config, log *slog.Logger) error {
	return migrate.Database(ctx, c.Postgres, schema.Postgres(), log)
}

// Run serves the gateway until ctx ends, then drains.
func Run(ctx context.Context, c Config, log *slog.Logger, version string) error {
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

	h := health.New(map[string]string{"component": "gateway", "jurisdiction": c.Jurisdiction, "version": version})
	h.Add("postgres", func(ctx context.Context) error { return pool.Ping(ctx) })
	h.Add("redis", func(ctx context.Context) error { return rdb.Ping(ctx).Err() })
	h.Add("regions", func(ctx context.Context) error {
		list, err := disc.Instances(ctx, regionService)
		if err != nil {
			return err
		}
		if len(list) == 0 {
			return errors.New("no region is registered in discovery")
		}
		return nil
	})

	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", c.Listen, err)
	}
	inst, stopDiscovery, err := discovery.RegisterListener(ctx, disc, ServiceName, "gateway", ln, map[string]string{"jurisdiction": c.Jurisdiction}, c.Discovery.TTL)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopDiscovery()

	router := newRouter(h, apikey.NewStore(pool), disc)
	srv := &httpserver.Server{
		Name: "gateway-http", Handler: router, Log: log, Listener: ln,
		BeforeShutdown: func() { stopDiscovery(); h.Drain() },
		ReadyDelay:     drainDelay,
	}
	log.Info("gateway started", "addr", inst.Address)
	return srv.Run(ctx)
}

var drainDelay = 500 * time.Millisecond

// keyVerifier is what the auth middleware needs from the key store.
type keyVerifier interface {
	Verify(ctx context.Context, plaintext string) (apikey.Key, error)
}

// instanceLister is what the router needs from discovery.
type instanceLister interface {
	Instances(ctx context.Context, service string) ([]discovery.Instance, error)
}

func newRouter(h *health.Health, keys keyVerifier, disc instanceLister) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())
	h.Mount(r)

	v1 := r.Group("/v1", authenticate(keys))
	v1.GET("/regions", func(c *gin.Context) {
		list, err := disc.Instances(c.Request.Context(), regionService)
		if err != nil {
			apierr.Write(c.Writer, http.StatusServiceUnavailable, "discovery_unavailable", "region discovery is unavailable", "")
			c.Abort()
			return
		}
		type region struct {
			Region       string `json:"region"`
			Jurisdiction string `json:"jurisdiction"`
			Instances    int    `json:"instances"`
		}
		byName := map[string]*region{}
		var out []*region
		for _, in := range list {
			name := in.Meta["region"]
			if byName[name] == nil {
				byName[name] = &region{Region: name, Jurisdiction: in.Meta["jurisdiction"]}
				out = append(out, byName[name])
			}
			byName[name].Instances++
		}
		c.JSON(http.StatusOK, gin.H{"regions": out})
	})
	return r
}

// authenticate checks the Bearer API key and puts the caller's app id in the context.
func authenticate(keys keyVerifier) gin.HandlerFunc {
	return func(c *gin.Context) {
		token, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
		if !ok || token == "" {
			apierr.Write(c.Writer, http.StatusUnauthorized, "unauthenticated", "an API key is required: Authorization: Bearer <key>", "Authorization")
			c.Abort()
			return
		}
		k, err := keys.Verify(c.Request.Context(), token)
		if errors.Is(err, apikey.ErrInvalid) {
			apierr.Write(c.Writer, http.StatusUnauthorized, "invalid_api_key", "the API key is unknown or revoked", "Authorization")
			c.Abort()
			return
		}
		if err != nil {
			apierr.Write(c.Writer, http.StatusServiceUnavailable, "auth_unavailable", "API keys cannot be checked right now; retry", "")
			c.Abort()
			return
		}
		c.Set("app_id", k.AppID)
		c.Next()
	}
}
