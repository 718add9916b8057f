package analytics

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/analytics/dashboard"
	"github.com/herald-notify/herald/analytics/wire"
	"github.com/herald-notify/herald/platform/apierr"
	"github.com/herald-notify/herald/platform/health"
	"github.com/herald-notify/herald/platform/pki"
)

// api serves ingest (the regions, over mutual TLS: ingestRouter), and queries and the dashboard
// (the operators: router).
type api struct {
	cfg      Config
	tokens   map[string]string // region -> token: ingest and categories
	operator string            // the operator token: queries and the dashboard
	sessions sessions
	store    *Store
	queries  *Queries
	rules    rules
	log      *slog.Logger
	now      func() time.Time
}

// credentials are the tokens read at start: each region's, and the operators'.
type credentials struct {
	regions  map[string]string
	operator string
}

func newAPI(cfg Config, creds credentials, store *Store, log *slog.Logger) *api {
	now := time.Now
	return &api{
		cfg: cfg, tokens: creds.regions, operator: creds.operator, store: store, log: log, now: now,
		sessions: newSessions(creds.operator, cfg.Operator.SessionTTL, now),
		queries:  &Queries{store: store, slo: cfg.SLO, prices: cfg.Prices},
		rules:    rules{k: cfg.K, categories: cfg.Categories, now: now},
	}
}

// publicDashboardFiles are what the dashboard serves before sign-in: the sign-in page itself.
// They hold no data.
var publicDashboardFiles = map[string]bool{"/login.html": true, "/login.js": true, "/app.css": true}

// ingestRouter serves the regions on the ingest listener (HTTPS, TLS 1.3): health without a
// client certificate, the ingest routes with a region's, nothing of the operators'.
func (a *api) ingestRouter(h *health.Health) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())
	h.Mount(r)
	r.POST("/v1/aggregates", a.ingest)
	r.GET("/v1/categories", a.categories)
	r.NoRoute(func(c *gin.Context) {
		a.reject(c, http.StatusNotFound, "not_found", "no such endpoint on the ingest listener; see docs/openapi-analytics.yaml", "")
	})
	return r
}

// router serves the operators on the operator listener: the dashboard, its sign-in and the
// query API. The ingest routes answer 401 unauthenticated here: a region posts over mutual TLS.
func (a *api) router(h *health.Health) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())
	h.Mount(r)
	notHere := func(c *gin.Context) {
		a.reject(c, http.StatusUnauthorized, codeUnauthenticated, "ingest is served only over mutual TLS, on the ingest listener (ingest.listen), with a region's client certificate", fieldClientCert)
	}
	r.POST("/v1/aggregates", notHere)
	r.GET("/v1/categories", notHere)
	// The dashboard's sign-in (the operator token for a session cookie).
	r.POST("/v1/session", a.signIn)
	r.GET("/v1/session", a.session)
	r.DELETE("/v1/session", a.signOut)
	// Operators only: every aggregate, and the regions' names.
	op := r.Group("/", a.operatorOnly)
	op.GET("/v1/meta", a.meta)
	op.GET("/v1/funnel", query(a, a.queries.Funnel))
	op.GET("/v1/dropoff", query(a, a.queries.Dropoff))
	op.GET("/v1/latency", query(a, a.queries.Latency))
	op.GET("/v1/cost", query(a, a.queries.Cost))
	op.GET("/v1/series", query(a, a.queries.Series))
	r.GET("/", func(c *gin.Context) { c.Redirect(http.StatusFound, "/dashboard/login.html") })
	// Browsers ask for /favicon.ico on any page without an icon link (the 401 answer a
	// signed-out dashboard gets, for one): an empty answer keeps that out of the 404s.
	r.GET("/favicon.ico", func(c *gin.Context) {
		c.Header("Cache-Control", "public, max-age=86400")
		c.Status(http.StatusNoContent)
	})
	files := http.StripPrefix("/dashboard", http.FileServer(http.FS(noListing{dashboard.Files()})))
	r.GET("/dashboard/*file", func(c *gin.Context) {
		// Everything the page uses comes from this process: the browser refuses anything else.
		c.Header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; form-action 'self'")
		c.Header("X-Content-Type-Options", "nosniff")
		c.Header("Referrer-Policy", "no-referrer")
		if !publicDashboardFiles[c.Param("file")] {
			if !a.requireOperator(c) {
				return
			}
			c.Header("Cache-Control", "no-store")
		}
		files.ServeHTTP(c.Writer, c.Request)
	})
	r.NoRoute(func(c *gin.Context) {
		a.reject(c, http.StatusNotFound, "not_found", "no such endpoint; see docs/openapi-analytics.yaml", "")
	})
	return r
}

// noListing serves files and directories that have an index.html, never a directory listing.
type noListing struct{ fsys fs.FS }

func (n noListing) Open(name string) (fs.File, error) {
	f, err := n.fsys.Open(name)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err == nil && st.IsDir() {
		if _, err := fs.Stat(n.fsys, path.Join(name, "index.html")); err != nil {
			f.Close()
			return nil, fs.ErrNotExist
		}
	}
	return f, nil
}

// Error code and field of a call to an ingest route without a verified client certificate.
const (
	codeUnauthenticated = "unauthenticated"
	fieldClientCert     = "tls_client_certificate"
)

// certRegion returns the region whose client certificate the request's connection presented,
// or answers 401 (no certificate, or none that verified) or 403 (a certificate of the CA that
// names no region) and returns "". A certificate that does not verify (another CA, expired,
// not for client authentication) never gets here: the handshake fails.
func (a *api) certRegion(c *gin.Context) string {
	cs := c.Request.TLS
	if !pki.Verified(cs) {
		a.log.Debug("refused an ingest call without a client certificate", "remote", c.Request.RemoteAddr, "path", c.Request.URL.Path)
		a.reject(c, http.StatusUnauthorized, codeUnauthenticated, "the ingest API answers a region's client certificate of the internal CA only", fieldClientCert)
		return ""
	}
	leaf := cs.VerifiedChains[0][0]
	var named []string
	for _, name := range sortedKeys(a.tokens) {
		want := a.cfg.Ingest.certName(name)
		if leaf.Subject.CommonName == want || slices.Contains(leaf.DNSNames, want) {
			named = append(named, name)
		}
	}
	// A certificate naming two regions speaks for neither.
	if len(named) == 1 {
		return named[0]
	}
	a.log.Warn("refused an ingest call: the client certificate names no region", "remote", c.Request.RemoteAddr,
		"subject", leaf.Subject.String(), "dns_names", leaf.DNSNames)
	a.reject(c, http.StatusForbidden, "unknown_client", fmt.Sprintf("the client certificate names no region, or more than one (want %s)", a.cfg.Ingest.ClientName), fieldClientCert)
	return ""
}

// region returns the region whose token the request carries, or "".
func (a *api) region(r *http.Request) string {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return ""
	}
	found := ""
	for name, want := range a.tokens {
		// Compare with every token, in constant time each, so timing tells nothing.
		if subtle.ConstantTimeCompare([]byte(tok), []byte(want)) == 1 {
			found = name
		}
	}
	return found
}

func (a *api) reject(c *gin.Context, status int, code, message, field string) {
	if want, ok := errorCodes[code]; !ok || want != status {
		a.log.Error("error code not in the catalogue (errors.go)", "code", code, "status", status)
	}
	metricRejections.WithLabelValues(code).Inc()
	apierr.Write(c.Writer, status, code, message, field)
	c.Abort()
}

// authorized returns the calling region: the one its client certificate names (certRegion),
// whose bearer token the request must carry as well. Otherwise it answers 401 or 403 and
// returns "".
func (a *api) authorized(c *gin.Context) string {
	region := a.certRegion(c)
	if region == "" {
		return ""
	}
	if a.region(c.Request) != region {
		c.Header("WWW-Authenticate", `Bearer realm="herald-analytics"`)
		a.reject(c, http.StatusUnauthorized, "unauthorized", "the bearer token of the certificate's region is required", "")
		return ""
	}
	return region
}

// categories is GET /v1/categories: what a cell may name, for the regions' exporters (they
// fold anything else into "other" before shipping). Regions only: the list names apps.
func (a *api) categories(c *gin.Context) {
	if a.authorized(c) == "" {
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, a.cfg.Categories.Wire())
}

// ingest is POST /v1/aggregates.
func (a *api) ingest(c *gin.Context) {
	region := a.authorized(c)
	if region == "" {
		return
	}
	body := http.MaxBytesReader(c.Writer, c.Request.Body, a.cfg.MaxBodyBytes)
	b, err := DecodeBatch(body)
	if err == nil {
		rules := a.rules
		rules.horizon = a.cfg.minuteHorizon(a.now(), ingestMargin)
		if fe := rules.check(b, region); fe != nil {
			err = fe
		}
	}
	var fe *FieldError
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		a.reject(c, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body exceeds %d bytes; split the window into batches", a.cfg.MaxBodyBytes), "")
		return
	case errors.As(err, &fe):
		// The refused value is not logged: it may be what must not leave a region.
		a.log.Warn("aggregate batch refused", "region", region, "code", fe.Code, "field", fe.Field)
		a.reject(c, fe.Status, fe.Code, fe.Message, fe.Field)
		return
	case err != nil:
		a.reject(c, http.StatusBadRequest, "invalid_json", "the body could not be read", "")
		return
	}
	result, err := a.store.Save(c.Request.Context(), b)
	if err != nil {
		a.log.Error("storing aggregate batch", "region", region, "window_start", b.WindowStart, "seq", b.Seq, "err", err)
		c.Header("Retry-After", "5")
		a.reject(c, http.StatusServiceUnavailable, "store_unavailable", "the batch could not be stored; retry it", "")
		return
	}
	metricBatches.WithLabelValues(region, result).Inc()
	if result != Unchanged {
		metricCells.WithLabelValues(region).Add(float64(len(b.Cells)))
	}
	c.JSON(http.StatusOK, gin.H{
		"region": b.Region, "window_start": b.WindowStart.UTC(), "seq": b.Seq,
		"result": result, "cells": len(b.Cells), "histograms": len(b.Latency),
	})
}

// meta tells the dashboard which filter values exist.
func (a *api) meta(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{
		"regions": sortedKeys(a.cfg.Regions), "tiers": wire.Tiers, "channels": wire.Channels,
		"stages": wire.Stages, "k": a.cfg.K, "currency": a.cfg.Prices.Currency,
		"latency_bounds_ms": wire.LatencyBoundsMS,
	})
}

// maxRange bounds one query, so a dashboard cannot ask for years of minute cells.
const maxRange = 93 * 24 * time.Hour

// parseFilter reads the query string; an unknown parameter or a bad value is a 400 naming it.
func (a *api) parseFilter(r *http.Request) (Filter, *FieldError) {
	q := r.URL.Query()
	for name := range q {
		switch name {
		case "region", "app", "tier", "channel", "from", "to":
		default:
			return Filter{}, fieldErr("unknown_parameter", name, "is not a filter; use region, app, tier, channel, from, to")
		}
	}
	f := Filter{Region: q.Get("region"), App: q.Get("app"), Tier: q.Get("tier"), Channel: q.Get("channel")}
	if _, ok := a.cfg.Regions[f.Region]; f.Region != "" && !ok {
		return Filter{}, fieldErr("invalid_parameter", "region", "must be one of %s", strings.Join(sortedKeys(a.cfg.Regions), ", "))
	}
	if f.App != "" && !appRE.MatchString(f.App) {
		return Filter{}, fieldErr("invalid_parameter", "app", "must be an app id")
	}
	if f.Tier != "" && !wire.ValidTier(f.Tier) {
		return Filter{}, fieldErr("invalid_parameter", "tier", "must be one of %s", strings.Join(wire.Tiers, ", "))
	}
	if f.Channel != "" && (f.Channel == wire.ChannelAll || !wire.ValidChannel(f.Channel)) {
		return Filter{}, fieldErr("invalid_parameter", "channel", "must be one of %s", strings.Join(wire.Channels, ", "))
	}
	f.To = a.now().UTC().Truncate(wire.Window).Add(wire.Window) // through the current window
	if s := q.Get("to"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return Filter{}, fieldErr("invalid_parameter", "to", "must be an RFC 3339 time")
		}
		f.To = t.UTC()
	}
	f.From = f.To.Add(-time.Hour)
	if s := q.Get("from"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return Filter{}, fieldErr("invalid_parameter", "from", "must be an RFC 3339 time")
		}
		f.From = t.UTC()
	}
	if !f.From.Before(f.To) {
		return Filter{}, fieldErr("invalid_parameter", "from", "must be before to")
	}
	if f.To.Sub(f.From) > maxRange {
		return Filter{}, fieldErr("invalid_parameter", "from", "the range must not exceed 93 days")
	}
	// Minute detail older than the retention is gone: such ends are widened to whole hours,
	// which the hourly sums hold. The answer's filter shows the range used.
	if h := a.cfg.minuteHorizon(a.now(), queryMargin); !h.IsZero() {
		if f.From.Before(h) {
			f.From = f.From.Truncate(time.Hour)
		}
		if f.To.Before(h) && !f.To.Equal(f.To.Truncate(time.Hour)) {
			f.To = f.To.Truncate(time.Hour).Add(time.Hour)
		}
	}
	return f, nil
}

func query[T any](a *api, run func(ctx context.Context, f Filter) (T, error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		f, fe := a.parseFilter(c.Request)
		if fe != nil {
			a.reject(c, fe.Status, fe.Code, fe.Message, fe.Field)
			return
		}
		res, err := run(c.Request.Context(), f)
		if err != nil {
			a.log.Error("analytics query", "path", c.Request.URL.Path, "err", err)
			a.reject(c, http.StatusServiceUnavailable, "store_unavailable", "the query could not be answered; retry", "")
			return
		}
		c.Header("Cache-Control", "no-store")
		c.JSON(http.StatusOK, res)
	}
}
