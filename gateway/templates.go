package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/herald-notify/herald/gateway/regionset"
	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/residency"
)

// templateSync keeps every region's copy of an app's templates in step with the latest one
// accepted here.
type templateSync struct {
	db      *pgxpool.Pool
	regions *regionset.Set
	policy  *residency.Holder
	client  *http.Client
	token   string
	log     *slog.Logger
}

// healthyRegions lists the policy's regions that are healthy in their own jurisdiction.
func (t *templateSync) healthyRegions() []string {
	p := t.policy.Current()
	var out []string
	for _, j := range p.Codes() {
		for _, r := range p.Regions(j) {
			if t.regions.HealthyIn(r, j) {
				out = append(out, r)
			}
		}
	}
	slices.Sort(out)
	return out
}

// push sends one template version to one region and records it.
func (t *templateSync) push(ctx context.Context, app, id, region string, body []byte, deleted bool, version int64, reqID string) (int, []byte, error) {
	addr, ok := t.regions.Pick(region)
	if !ok {
		return 0, nil, fmt.Errorf("%w: %s", errRegionDown, region)
	}
	method := http.MethodPut
	var rd io.Reader
	if deleted {
		method = http.MethodDelete
	} else {
		rd = bytes.NewReader(body)
	}
	u := url.URL{Scheme: regionset.Scheme, Host: addr, Path: "/v1/templates/" + id}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set(appHeader, app)
	setRegionBudget(ctx, req.Header)
	req.Header.Set("Content-Type", "application/json")
	if reqID != "" {
		req.Header.Set(requestIDHeader, reqID)
	}
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := t.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	ok = resp.StatusCode/100 == 2 || (deleted && resp.StatusCode == http.StatusNotFound)
	if ok {
		if _, err := t.db.Exec(ctx, `INSERT INTO template_sync (app_id, template_id, region, version) VALUES ($1, $2, $3, $4)
			ON CONFLICT (app_id, template_id, region) DO UPDATE SET version = GREATEST(template_sync.version, EXCLUDED.version)`,
			app, id, region, version); err != nil {
			return resp.StatusCode, raw, fmt.Errorf("recording template sync: %w", err)
		}
	}
	return resp.StatusCode, raw, nil
}

// change applies a PUT (body) or a DELETE (body nil) of a template: the first healthy region
// judges it (its 4xx is the answer, and nothing is stored); once accepted it becomes the
// latest version and goes to every other healthy region now, and to the others when they are
// back.
func (t *templateSync) change(c *gin.Context, body []byte) {
	ctx := c.Request.Context()
	app, id := appOf(c), c.Param("id")
	deleted := body == nil
	healthy := t.healthyRegions()
	if len(healthy) == 0 {
		unavailable(c, "region_unavailable", "no region is healthy; retry")
		return
	}
	var version int64
	err := t.db.QueryRow(ctx, `SELECT coalesce(max(version), 0) + 1 FROM templates WHERE app_id = $1 AND template_id = $2`, app, id).Scan(&version)
	if err != nil {
		t.log.Error("reading template versions", "err", err)
		unavailable(c, "store_unavailable", "templates cannot be written right now; retry")
		return
	}
	status, raw, err := t.push(ctx, app, id, healthy[0], body, deleted, version, reqID(c))
	if err != nil && status == 0 {
		t.log.Warn("template push failed", "region", healthy[0], "err", err)
		unavailable(c, "region_unavailable", "region "+healthy[0]+" did not answer; retry")
		return
	}
	if status/100 != 2 {
		c.Data(status, "application/json", raw)
		return
	}
	stored := body
	if deleted {
		stored = []byte{}
	}
	if _, err := t.db.Exec(ctx, `INSERT INTO templates (app_id, template_id, body, deleted, version) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (app_id, template_id) DO UPDATE SET body = EXCLUDED.body, deleted = EXCLUDED.deleted,
			version = GREATEST(templates.version + 1, EXCLUDED.version), updated_at = now()`, app, id, stored, deleted, version); err != nil {
		t.log.Error("storing a template", "err", err)
		unavailable(c, "store_unavailable", "templates cannot be written right now; retry")
		return
	}
	var wg sync.WaitGroup
	for _, r := range healthy[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if st, raw, err := t.push(context.WithoutCancel(ctx), app, id, r, body, deleted, version, reqID(c)); err != nil || st/100 != 2 && !(deleted && st == http.StatusNotFound) {
				t.log.Warn("template not yet in region; the reconciler retries", "region", r, "status", st, "body", string(raw), "err", err)
			}
		}()
	}
	wg.Wait()
	c.Data(status, "application/json", raw)
}

// Run pushes, every interval, the templates some healthy region does not hold at their latest
// version.
func (t *templateSync) Run(ctx context.Context, interval time.Duration) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if t.policy.Current() == nil {
			continue
		}
		for _, r := range t.healthyRegions() {
			if err := t.catchUp(ctx, r); err != nil && ctx.Err() == nil {
				t.log.Warn("template catch-up failed", "region", r, "err", err)
			}
		}
	}
}

func (t *templateSync) catchUp(ctx context.Context, region string) error {
	rows, err := t.db.Query(ctx, `SELECT t.app_id, t.template_id, t.body, t.deleted, t.version FROM templates t
		LEFT JOIN template_sync s ON s.app_id = t.app_id AND s.template_id = t.template_id AND s.region = $1
		WHERE s.version IS NULL OR s.version < t.version ORDER BY t.updated_at LIMIT 200`, region)
	if err != nil {
		return err
	}
	type tpl struct {
		app, id string
		body    []byte
		deleted bool
		version int64
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tpl, error) {
		var x tpl
		err := r.Scan(&x.app, &x.id, &x.body, &x.deleted, &x.version)
		return x, err
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, x := range list {
		st, raw, err := t.push(ctx, x.app, x.id, region, x.body, x.deleted, x.version, "")
		if err != nil {
			errs = append(errs, err)
		} else if st/100 != 2 && !(x.deleted && st == http.StatusNotFound) {
			errs = append(errs, fmt.Errorf("template %s/%s: %d %s", x.app, x.id, st, raw))
		} else {
			t.log.Info("template caught up", "region", region, "app", x.app, "template", x.id, "version", x.version)
		}
	}
	return errors.Join(errs...)
}

func (s *Server) putTemplate(c *gin.Context) {
	if !wire.ValidID(c.Param("id")) {
		abort(c, http.StatusBadRequest, wire.CodeInvalidField, "template ids must match "+wire.IDPattern+" and not be . or ..", "id")
		return
	}
	var t wire.Template
	if !decodeBody(c, wire.MaxSendBytes, &t) || !valid(c, t.Validate()) {
		return
	}
	// The regions (and the stored copy the reconciler replays) get what was read, not the bytes.
	s.Templates.change(c, wire.Encode(&t))
}

func (s *Server) deleteTemplate(c *gin.Context) { s.Templates.change(c, nil) }

// getTemplate reads the template from a region that holds its latest version.
func (s *Server) getTemplate(c *gin.Context) {
	healthy := s.Templates.healthyRegions()
	var synced []string
	rows, err := s.Templates.db.Query(c.Request.Context(), `SELECT s.region FROM template_sync s JOIN templates t USING (app_id, template_id)
		WHERE s.app_id = $1 AND s.template_id = $2 AND s.version >= t.version`, appOf(c), c.Param("id"))
	if err == nil {
		synced, _ = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	pick := ""
	for _, r := range healthy {
		if slices.Contains(synced, r) {
			pick = r
			break
		}
	}
	if pick == "" && len(healthy) > 0 {
		pick = healthy[0]
	}
	if pick == "" {
		unavailable(c, "region_unavailable", "no region is healthy; retry")
		return
	}
	s.forward(c, decision{Region: pick}, nil)
}
