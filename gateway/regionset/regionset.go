// Package regionset keeps the gateway's live view of which region API endpoints are healthy.
//
// Endpoints come from discovery (the regions register their API there). With Consul, the list
// is already filtered by Consul's health checks; with the file backend, a registration only says
// the process was alive within the TTL, so the set probes every endpoint's /readyz itself. A
// region leaves the set at the first failed probe (or a failed proxied call) and comes back at
// the first good one.
package regionset

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/herald-notify/herald/platform/discovery"
)

// Service is the discovery name regions register their API under.
const Service = "herald-region"

var metricHealthy = promauto.NewGaugeVec(prometheus.GaugeOpts{
	Name: "herald_gateway_region_healthy_endpoints",
	Help: "Healthy API endpoints the gateway sees per region.",
}, []string{"region"})

// Lister lists a service's registered instances (discovery.Backend has it).
type Lister interface {
	Instances(ctx context.Context, service string) ([]discovery.Instance, error)
}

// Set is the live set of healthy region endpoints.
type Set struct {
	disc     Lister
	probe    bool // probe /readyz ourselves (file backend)
	interval time.Duration
	client   *http.Client
	log      *slog.Logger

	mu      sync.RWMutex
	regions map[string]*region
	states  map[string]*probeState // by endpoint
	// listed maps every endpoint discovery lists (healthy or not) to its region, for RegionOf.
	listed map[string]string
	ready  chan struct{}
	once   sync.Once

	fallAfter, riseAfter int
}

// Hysteresis. A region whose store is recovering answers some probes slowly or 503 and others
// 200; taking it out at the first such probe and back at the next good one made the gateway
// mark eu-west-1 unhealthy and healthy several times within seconds, failing its users over
// for nothing. An endpoint now leaves the set after FallAfter failed probes in a row and comes
// back after RiseAfter good ones. An endpoint that refuses the connection (nothing listens: the
// process is gone) leaves at once, as does one a call found dead (MarkDown).
const (
	FallAfter = 3
	RiseAfter = 2
)

// probeState is one endpoint's recent probes.
type probeState struct {
	healthy    bool
	fails, oks int
}

// outcome is what one probe found.
type outcome int

const (
	probeOK      outcome = iota
	probeFailed          // a timeout, a 503, a handshake that failed: maybe passing
	probeRefused         // nothing listens there
)

type region struct {
	jurisdiction string
	endpoints    []string // healthy, sorted
	next         atomic.Uint32
}

// Status is one region as the gateway sees it.
type Status struct {
	Region       string   `json:"region"`
	Jurisdiction string   `json:"jurisdiction"`
	Healthy      bool     `json:"healthy"`
	Endpoints    []string `json:"endpoints"`
}

// New returns a Set; probe says whether to check /readyz (true for the file backend).
func New(disc Lister, probe bool, interval, timeout time.Duration, log *slog.Logger) *Set {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Set{
		disc: disc, probe: probe, interval: interval, log: log,
		client:    &http.Client{Timeout: timeout},
		regions:   map[string]*region{},
		states:    map[string]*probeState{},
		ready:     make(chan struct{}),
		fallAfter: FallAfter, riseAfter: RiseAfter,
	}
}

// Run refreshes the set every interval until ctx ends.
func (s *Set) Run(ctx context.Context) error {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.Refresh(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Ready is closed after the first refresh.
func (s *Set) Ready() <-chan struct{} { return s.ready }

// Refresh lists the regions and probes them once.
func (s *Set) Refresh(ctx context.Context) {
	defer s.once.Do(func() { close(s.ready) })
	list, err := s.disc.Instances(ctx, Service)
	if err != nil {
		// Keep the last view: discovery being down says nothing about the regions.
		s.log.Warn("listing regions in discovery failed; keeping the last view", "err", err)
		return
	}
	type cand struct{ region, jurisdiction, addr string }
	var cands []cand
	for _, in := range list {
		if roles := in.Meta["roles"]; roles != "" && !slices.Contains(strings.Split(roles, ","), "api") {
			continue
		}
		if in.Meta["region"] == "" || in.Address == "" {
			continue
		}
		cands = append(cands, cand{in.Meta["region"], in.Meta["jurisdiction"], in.Address})
	}
	listed := make(map[string]string, len(cands))
	for _, c := range cands {
		listed[c.addr] = c.region
	}
	s.mu.Lock()
	s.listed = listed // before the probes, which dial these addresses
	s.mu.Unlock()
	found := make([]outcome, len(cands))
	var wg sync.WaitGroup
	for i, c := range cands {
		if !s.probe {
			continue // probeOK: discovery's own checks decide
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			found[i] = s.probeOne(ctx, c.addr)
		}()
	}
	wg.Wait()
	ok := make([]bool, len(cands))
	s.mu.Lock()
	seen := map[string]bool{}
	for i, c := range cands {
		ok[i] = s.judge(c.addr, found[i])
		seen[c.addr] = true
	}
	for addr := range s.states {
		if !seen[addr] {
			delete(s.states, addr)
		}
	}
	s.mu.Unlock()

	next := map[string]*region{}
	for i, c := range cands {
		r := next[c.region]
		if r == nil {
			r = &region{jurisdiction: c.jurisdiction}
			next[c.region] = r
		}
		if ok[i] {
			r.endpoints = append(r.endpoints, c.addr)
		}
	}
	s.mu.Lock()
	for name, r := range next {
		slices.Sort(r.endpoints)
		r.endpoints = slices.Compact(r.endpoints)
		if old := s.regions[name]; old != nil {
			r.next.Store(old.next.Load())
			if len(old.endpoints) > 0 && len(r.endpoints) == 0 {
				s.log.Warn("region unhealthy: no endpoint answers", "region", name)
			} else if len(old.endpoints) == 0 && len(r.endpoints) > 0 {
				s.log.Info("region healthy again", "region", name, "endpoints", r.endpoints)
			}
		}
		metricHealthy.WithLabelValues(name).Set(float64(len(r.endpoints)))
	}
	for name := range s.regions {
		if next[name] == nil {
			metricHealthy.WithLabelValues(name).Set(0)
			s.log.Warn("region left discovery", "region", name)
		}
	}
	s.regions = next
	s.mu.Unlock()
}

// RegionOf names the region an endpoint address belongs to, as discovery last listed it.
func (s *Set) RegionOf(addr string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.listed[addr]
	return r, ok
}

// Scheme is how the gateway reaches every region endpoint: HTTPS, presenting its client
// certificate (regions refuse callers without one).
const Scheme = "https"

// WithTransport makes the probes dial with rt: the gateway's own transport, so a probe proves
// the handshake its calls will make (the region's certificate, the gateway's accepted).
func (s *Set) WithTransport(rt http.RoundTripper) *Set {
	s.client.Transport = rt
	return s
}

// judge applies one probe's outcome to the endpoint's state (with s.mu held) and returns whether
// it is healthy now. An endpoint's first probe decides at once.
func (s *Set) judge(addr string, o outcome) bool {
	st := s.states[addr]
	if st == nil {
		st = &probeState{healthy: o == probeOK}
		s.states[addr] = st
		return st.healthy
	}
	switch o {
	case probeOK:
		st.fails, st.oks = 0, st.oks+1
		if !st.healthy && st.oks >= s.riseAfter {
			st.healthy = true
		}
	case probeFailed:
		st.oks, st.fails = 0, st.fails+1
		if st.healthy && st.fails >= s.fallAfter {
			st.healthy = false
		}
	case probeRefused:
		st.oks, st.fails = 0, st.fails+1
		st.healthy = false
	}
	return st.healthy
}

func (s *Set) probeOne(ctx context.Context, addr string) outcome {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, Scheme+"://"+addr+"/readyz", nil)
	if err != nil {
		return probeFailed
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.log.Debug("region probe failed", "endpoint", addr, "err", err)
		if errors.Is(err, syscall.ECONNREFUSED) {
			return probeRefused
		}
		return probeFailed
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return probeFailed
	}
	return probeOK
}

// Healthy reports whether the region has a healthy endpoint.
func (s *Set) Healthy(name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.regions[name]
	return r != nil && len(r.endpoints) > 0
}

// HealthyIn reports whether the region has a healthy endpoint and registered itself in
// jurisdiction: a region whose own config names another jurisdiction than the policy is not
// used for that jurisdiction's users (a misconfiguration must not move data).
func (s *Set) HealthyIn(name, jurisdiction string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.regions[name]
	return r != nil && len(r.endpoints) > 0 && r.jurisdiction == jurisdiction
}

// Pick returns one healthy endpoint (host:port) of the region, round robin.
func (s *Set) Pick(name string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.regions[name]
	if r == nil || len(r.endpoints) == 0 {
		return "", false
	}
	return r.endpoints[int(r.next.Add(1))%len(r.endpoints)], true
}

// MarkDown takes an endpoint out of the set after a failed call, until the next probe finds it
// healthy: requests stop going to a dead process without waiting for the next refresh.
func (s *Set) MarkDown(name, addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.regions[name]
	if r == nil {
		return
	}
	if st := s.states[addr]; st != nil {
		st.healthy, st.oks = false, 0 // back only after RiseAfter good probes
	}
	if i := slices.Index(r.endpoints, addr); i >= 0 {
		r.endpoints = slices.Delete(slices.Clone(r.endpoints), i, i+1)
		metricHealthy.WithLabelValues(name).Set(float64(len(r.endpoints)))
		s.log.Warn("region endpoint marked down after a failed call", "region", name, "endpoint", addr)
	}
}

// Statuses lists every region seen in discovery.
func (s *Set) Statuses() []Status {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Status, 0, len(s.regions))
	for name, r := range s.regions {
		out = append(out, Status{Region: name, Jurisdiction: r.jurisdiction, Healthy: len(r.endpoints) > 0, Endpoints: slices.Clone(r.endpoints)})
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Region, b.Region) })
	return out
}
