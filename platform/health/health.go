// Package health serves liveness (/healthz) and readiness (/readyz) for every Herald process.
// Readiness runs each dependency check and turns 503 as soon as shutdown begins, so a load
// balancer stops sending before the listener closes.
package health

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether one dependency is usable.
type Check func(ctx context.Context) error

// Health holds the named checks of a process.
type Health struct {
	mu       sync.RWMutex
	checks   map[string]Check
	draining atomic.Bool
	info     map[string]string
}

// New returns a Health with static info (component, region, version) shown in every answer.
func New(info map[string]string) *Health {
	return &Health{checks: map[string]Check{}, info: info}
}

// Add registers a check.
func (h *Health) Add(name string, c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = c
}

// Drain marks the process as shutting down: readiness fails from now on.
func (h *Health) Drain() { h.draining.Store(true) }

// Report is the JSON body of /readyz.
type Report struct {
	Status string            `json:"status"`
	Info   map[string]string `json:"info,omitempty"`
	Checks map[string]string `json:"checks"`
}

// Run executes every check in parallel with a timeout each.
func (h *Health) Run(ctx context.Context) Report {
	h.mu.RLock()
	names := make([]string, 0, len(h.checks))
	for n := range h.checks {
		names = append(names, n)
	}
	h.mu.RUnlock()
	sort.Strings(names)
	results := make([]string, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		h.mu.RLock()
		c := h.checks[n]
		h.mu.RUnlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if err := c(cctx); err != nil {
				results[i] = "error: " + err.Error()
				return
			}
			results[i] = "ok"
		}()
	}
	wg.Wait()
	rep := Report{Status: "ok", Info: h.info, Checks: map[string]string{}}
	for i, n := range names {
		rep.Checks[n] = results[i]
		if results[i] != "ok" {
			rep.Status = "unavailable"
		}
	}
	if h.draining.Load() {
		rep.Status = "draining"
	}
	return rep
}

// Live answers 200 while the process serves.
func (h *Health) Live(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "info": h.info})
}

// Ready answers 200 when every check passes, 503 otherwise.
func (h *Health) Ready(w http.ResponseWriter, r *http.Request) {
	rep := h.Run(r.Context())
	code := http.StatusOK
	if rep.Status != "ok" {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, rep)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Mount serves /healthz, /readyz and the Prometheus /metrics on r.
func (h *Health) Mount(r gin.IRoutes) {
	r.GET("/healthz", gin.WrapF(h.Live))
	r.GET("/readyz", gin.WrapF(h.Ready))
	r.GET("/metrics", gin.WrapH(promhttp.Handler()))
}
