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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/herald-notify/herald/gateway/regionset"
	"github.com/herald-notify/herald/residency"
)

// configKind is app-wide configuration the gateway keeps the latest version of and pushes to
// every region of the policy: templates and workflows.
type configKind struct {
	noun      string // "template"
	table     string // "templates": app_id, <idColumn>, body, deleted, version, last_version
	syncTable string // "template_sync": app_id, <idColumn>, region, version
	idColumn  string // "template_id"
	path      string // the regions' route, "/v1/templates/"
}

var (
	templateKind = configKind{noun: "template", table: "templates", syncTable: "template_sync", idColumn: "template_id", path: "/v1/templates/"}
	workflowKind = configKind{noun: "workflow", table: "workflows", syncTable: "workflow_sync", idColumn: "workflow_id", path: "/v1/workflows/"}
)

// sql writes the kind's tables and id column into a statement: {t}, {s} and {id}.
func (k configKind) sql(q string) string {
	return strings.NewReplacer("{t}", k.table, "{s}", k.syncTable, "{id}", k.idColumn).Replace(q)
}

// configSync keeps every region's copy of an app's templates (or workflows) in step with the
// latest one accepted here.
type configSync struct {
	kind    configKind
	db      *pgxpool.Pool
	regions *regionset.Set
	policy  *residency.Holder
	client  *http.Client
	token   string
	log     *slog.Logger
}

// healthyRegions lists the policy's regions that are healthy in their own jurisdiction.
func (t *configSync) healthyRegions() []string {
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

// push sends one version to one region and records that the region holds it. A 404 to a
// delete counts as held only when goneOK: the change was accepted (the region never had the
// item). The first region's 404 is the answer to a delete of an item it does not know, and then
// nothing is recorded: that region may simply have missed the item's last version.
func (t *configSync) push(ctx context.Context, app, id, region string, body []byte, deleted, goneOK bool, version int64, reqID string) (int, []byte, error) {
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
	u := url.URL{Scheme: regionset.Scheme, Host: addr, Path: t.kind.path + id}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set(appHeader, app)
	req.Header.Set(versionHeader, strconv.FormatInt(version, 10))
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
	ok = resp.StatusCode/100 == 2 || (deleted && goneOK && resp.StatusCode == http.StatusNotFound)
	if ok {
		if _, err := t.db.Exec(ctx, t.kind.sql(`INSERT INTO {s} (app_id, {id}, region, version) VALUES ($1, $2, $3, $4)
			ON CONFLICT (app_id, {id}, region) DO UPDATE SET version = GREATEST({s}.version, EXCLUDED.version)`),
			app, id, region, version); err != nil {
			return resp.StatusCode, raw, fmt.Errorf("recording %s sync: %w", t.kind.noun, err)
		}
	}
	return resp.StatusCode, raw, nil
}

// change applies a PUT (body) or a DELETE (body nil): a version is reserved first, so two
// concurrent changes never share one; the first healthy region judges the change (its 4xx is
// the answer, and nothing is stored); once accepted it becomes the latest version and goes to
// every other healthy region now, and to the others when they are back.
func (t *configSync) change(c *gin.Context, body []byte) {
	ctx := c.Request.Context()
	app, id := appOf(c), c.Param("id")
	deleted := body == nil
	healthy := t.healthyRegions()
	if len(healthy) == 0 {
		unavailable(c, "region_unavailable", "no region is healthy; retry")
		return
	}
	var version int64
	err := t.db.QueryRow(ctx, t.kind.sql(`INSERT INTO {t} (app_id, {id}, body, deleted, version, last_version) VALUES ($1, $2, '', true, 0, 1)
		ON CONFLICT (app_id, {id}) DO UPDATE SET last_version = GREATEST({t}.last_version, {t}.version) + 1
		RETURNING last_version`), app, id).Scan(&version)
	if err != nil {
		t.log.Error("reserving a version", "kind", t.kind.noun, "err", err)
		unavailable(c, "store_unavailable", t.kind.noun+"s cannot be written right now; retry")
		return
	}
	status, raw, err := t.push(ctx, app, id, healthy[0], body, deleted, false, version, reqID(c))
	if err != nil && status == 0 {
		t.log.Warn("push failed", "kind", t.kind.noun, "region", healthy[0], "err", err)
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
	if _, err := t.db.Exec(ctx, t.kind.sql(`UPDATE {t} SET body = $3, deleted = $4, version = $5, updated_at = now()
		WHERE app_id = $1 AND {id} = $2 AND version < $5`), app, id, stored, deleted, version); err != nil {
		t.log.Error("storing a change", "kind", t.kind.noun, "err", err)
		unavailable(c, "store_unavailable", t.kind.noun+"s cannot be written right now; retry")
		return
	}
	var wg sync.WaitGroup
	for _, r := range healthy[1:] {
		wg.Go(func() {
			if st, raw, err := t.push(context.WithoutCancel(ctx), app, id, r, body, deleted, true, version, reqID(c)); err != nil || st/100 != 2 && !(deleted && st == http.StatusNotFound) {
				t.log.Warn("not yet in region; the reconciler retries", "kind", t.kind.noun, "region", r, "status", st, "body", string(raw), "err", err)
			}
		})
	}
	wg.Wait()
	c.Data(status, "application/json", raw)
}

// Run pushes, every interval, the versions some healthy region does not hold.
func (t *configSync) Run(ctx context.Context, interval time.Duration) error {
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
				t.log.Warn("catch-up failed", "kind", t.kind.noun, "region", r, "err", err)
			}
		}
	}
}

func (t *configSync) catchUp(ctx context.Context, region string) error {
	rows, err := t.db.Query(ctx, t.kind.sql(`SELECT t.app_id, t.{id}, t.body, t.deleted, t.version FROM {t} t
		LEFT JOIN {s} s ON s.app_id = t.app_id AND s.{id} = t.{id} AND s.region = $1
		WHERE t.version > 0 AND (s.version IS NULL OR s.version < t.version) ORDER BY t.updated_at LIMIT 200`), region)
	if err != nil {
		return err
	}
	type item struct {
		app, id string
		body    []byte
		deleted bool
		version int64
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (item, error) {
		var x item
		err := r.Scan(&x.app, &x.id, &x.body, &x.deleted, &x.version)
		return x, err
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, x := range list {
		st, raw, err := t.push(ctx, x.app, x.id, region, x.body, x.deleted, true, x.version, "")
		if err != nil {
			errs = append(errs, err)
		} else if st/100 != 2 && !(x.deleted && st == http.StatusNotFound) {
			errs = append(errs, fmt.Errorf("%s %s/%s: %d %s", t.kind.noun, x.app, x.id, st, raw))
		} else {
			t.log.Info("caught up", "kind", t.kind.noun, "region", region, "app", x.app, "id", x.id, "version", x.version)
		}
	}
	return errors.Join(errs...)
}

// get reads the item from a region that holds its latest version.
func (t *configSync) get(c *gin.Context, s *Server) {
	healthy := t.healthyRegions()
	var synced []string
	rows, err := t.db.Query(c.Request.Context(), t.kind.sql(`SELECT s.region FROM {s} s JOIN {t} t USING (app_id, {id})
		WHERE s.app_id = $1 AND s.{id} = $2 AND s.version >= t.version`), appOf(c), c.Param("id"))
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
