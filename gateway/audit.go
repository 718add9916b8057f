package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/herald-notify/herald/gateway/regionset"
)

var (
	metricAuditPending = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "herald_gateway_audit_pending",
		Help: "Routing decisions recorded but not yet stored in their home region's audit chain.",
	})
	metricAuditShipped = promauto.NewCounter(prometheus.CounterOpts{
		Name: "herald_gateway_audit_shipped_total",
		Help: "Routing decisions stored in their home region's audit chain.",
	})
	metricAuditDropped = promauto.NewCounter(prometheus.CounterOpts{
		Name: "herald_gateway_audit_dropped_total",
		Help: "Routing decisions dropped: the queue was full, or they could not be shipped before shutdown.",
	})
)

var errAuditRefused = errors.New("audit entries refused by the region")

// auditEntry is one routing decision, in the JSON the regions' POST /internal/v1/audit takes.
type auditEntry struct {
	ID            string    `json:"id"`
	At            time.Time `json:"at"`
	App           string    `json:"app"`
	UserKey       string    `json:"user_key"`
	Jurisdiction  string    `json:"jurisdiction"`
	Region        string    `json:"region"`
	Reason        string    `json:"reason"`
	PolicyVersion int64     `json:"policy_version"`
	RequestID     string    `json:"request_id"`
}

// auditShipper queues decisions per home region and ships them in batches, so a request never
// waits on the audit; a region that is down gets its entries when it is back (each carries an
// id, so a batch retried after a lost answer is stored once). What is queued when the process
// dies is lost: the queue is in memory (docs/residency.md says so).
type auditShipper struct {
	regions *regionset.Set
	client  *http.Client
	token   string
	log     *slog.Logger
	max     int // per region

	mu      sync.Mutex
	pending map[string][]auditEntry
	wake    chan struct{}
}

const (
	auditBatch    = 500
	auditInterval = 200 * time.Millisecond
)

func newAuditShipper(regions *regionset.Set, client *http.Client, token string, log *slog.Logger) *auditShipper {
	return &auditShipper{regions: regions, client: client, token: token, log: log, max: 200_000,
		pending: map[string][]auditEntry{}, wake: make(chan struct{}, 1)}
}

// add queues e for the home region.
func (a *auditShipper) add(e auditEntry, home string) {
	e.ID = uuid.NewString()
	a.mu.Lock()
	if len(a.pending[home]) >= a.max {
		a.mu.Unlock()
		metricAuditDropped.Inc()
		a.log.Error("audit queue full; a routing decision is dropped", "region", home)
		return
	}
	a.pending[home] = append(a.pending[home], e)
	n := len(a.pending[home])
	a.mu.Unlock()
	metricAuditPending.Inc()
	if n >= auditBatch {
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
}

// Run ships until ctx ends, then makes a last attempt for up to five seconds.
func (a *auditShipper) Run(ctx context.Context) error {
	t := time.NewTicker(auditInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			a.flush(fctx)
			cancel()
			a.mu.Lock()
			left := 0
			for _, q := range a.pending {
				left += len(q)
			}
			a.mu.Unlock()
			if left > 0 {
				metricAuditDropped.Add(float64(left))
				a.log.Error("routing decisions not shipped before shutdown", "count", left)
			}
			return nil
		case <-t.C:
		case <-a.wake:
		}
		a.flush(ctx)
	}
}

// Flush ships everything queued now (tests and shutdown).
func (a *auditShipper) flush(ctx context.Context) {
	a.mu.Lock()
	regions := make([]string, 0, len(a.pending))
	for r, q := range a.pending {
		if len(q) > 0 {
			regions = append(regions, r)
		}
	}
	a.mu.Unlock()
	for _, r := range regions {
		for ctx.Err() == nil {
			a.mu.Lock()
			q := a.pending[r]
			n := min(len(q), auditBatch)
			batch := q[:n:n]
			a.mu.Unlock()
			if n == 0 {
				break
			}
			err := a.ship(ctx, r, batch)
			if errors.Is(err, errAuditRefused) {
				metricAuditDropped.Add(float64(n))
			} else if err != nil {
				a.log.Debug("audit shipping failed; kept for later", "region", r, "err", err)
				break
			}
			a.mu.Lock()
			a.pending[r] = a.pending[r][n:]
			a.mu.Unlock()
			metricAuditPending.Sub(float64(n))
			metricAuditShipped.Add(float64(n))
		}
	}
}

func (a *auditShipper) ship(ctx context.Context, region string, batch []auditEntry) error {
	addr, ok := a.regions.Pick(region)
	if !ok {
		return fmt.Errorf("%w: %s", errRegionDown, region)
	}
	body, err := json.Marshal(map[string]any{"entries": batch})
	if err != nil {
		return err
	}
	u := url.URL{Scheme: regionset.Scheme, Host: addr, Path: "/internal/v1/audit"}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		if resp.StatusCode/100 == 4 {
			// The region refuses these entries: retrying cannot help, and keeping them would
			// block the queue behind them. Say so loudly.
			a.log.Error("region refused audit entries; they are dropped", "region", region, "status", resp.StatusCode, "count", len(batch), "body", buf.String())
			return errAuditRefused
		}
		return fmt.Errorf("region %s answered %d", region, resp.StatusCode)
	}
	return nil
}
