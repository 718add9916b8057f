//go:build integration

package region_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/cassandra"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/redis"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/regiontest"

	"github.com/gocql/gocql"
	"github.com/jackc/pgx/v5/pgxpool"
)

// running is a region started in-process for a test, on its own stores (regiontest.Start,
// the one in-process harness the gateway's tests use too), with the test's view of it.
type running struct {
	t    *testing.T
	cfg  region.Config // what start runs: a test may change it between stop and start
	base string
	app  string
	rt   *regiontest.Running
	pg   *pgxpool.Pool
	cass *gocql.Session
}

// startRegion migrates a test-private region and runs it with every role until the test ends.
func startRegion(t *testing.T, mutate ...func(*region.Config)) *running {
	t.Helper()
	c := testRegion(t)
	for _, m := range mutate {
		m(&c)
	}
	rt := regiontest.Start(t, c)
	r := &running{t: t, cfg: c, base: rt.Base, app: "app-" + testenv.Suffix(), rt: rt}
	ctx := testenv.Context(t, 5*time.Minute)
	pg, err := postgres.Connect(ctx, c.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	sess, err := cassandra.Connect(ctx, c.Cassandra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sess.Close)
	r.pg, r.cass = pg, sess
	return r
}

// start runs the region (with r.cfg as it is now) and waits until it is ready.
func (r *running) start() {
	r.t.Helper()
	r.rt.Cfg = r.cfg
	r.rt.Start()
}

// stop stops the region gracefully; stopping twice is a no-op.
func (r *running) stop() { r.rt.Stop() }

// restart stops the region and starts it again.
func (r *running) restart() {
	r.stop()
	r.start()
}

// call sends a JSON request as app and decodes the JSON answer. The harness plays the gateway's
// part in residency: every user the request names (recipients, a path's user, a body's
// user_id) is registered first as a resident of the region's jurisdiction, as the gateway's
// PUT /v1/users does, and a PUT /v1/users body without a jurisdiction gets the region's. Tests
// of the region's own residency check use rawCall.
func (r *running) call(method, path string, body any, app string) (int, map[string]any) {
	r.t.Helper()
	if app != "" {
		r.admitNamed(method, path, body, app)
	}
	return r.rawCall(method, path, body, app)
}

var (
	userPathRE  = regexp.MustCompile(`^/v1/users/([^/]+)/(devices|preferences)$`)
	subscribeRE = regexp.MustCompile(`^/v1/topics/[^/]+/subscribers/([^/]+)$`)
	putUserRE   = regexp.MustCompile(`^/v1/users/[^/]+$`)
)

// admitNamed registers the users a request names (see call).
func (r *running) admitNamed(method, path string, body any, app string) {
	r.t.Helper()
	var fields map[string]any
	switch b := body.(type) {
	case string:
		_ = json.Unmarshal([]byte(b), &fields)
	case nil:
	default:
		raw, _ := json.Marshal(b)
		_ = json.Unmarshal(raw, &fields)
		if m, ok := body.(map[string]any); ok && method == http.MethodPut && putUserRE.MatchString(path) {
			if _, set := m["jurisdiction"]; !set {
				m["jurisdiction"] = r.cfg.Jurisdiction
			}
		}
	}
	var users []string
	if list, ok := fields["recipients"].([]any); ok {
		for _, u := range list {
			if s, ok := u.(string); ok {
				users = append(users, s)
			}
		}
	}
	if u, ok := fields["user_id"].(string); ok {
		users = append(users, u)
	}
	for _, re := range []*regexp.Regexp{userPathRE, subscribeRE} {
		if m := re.FindStringSubmatch(path); m != nil && method != http.MethodGet && method != http.MethodDelete {
			users = append(users, m[1])
		}
	}
	users = slices.DeleteFunc(users, func(u string) bool { return !wire.ValidID(u) })
	if len(users) > 0 {
		r.admit(app, users...)
	}
}

// admit registers users of app as residents of the region's jurisdiction.
func (r *running) admit(app string, users ...string) {
	r.t.Helper()
	if _, err := r.pg.Exec(r.t.Context(), `INSERT INTO users (app_id, user_id, jurisdiction) SELECT $1, u, $3 FROM unnest($2::text[]) u
		ON CONFLICT (app_id, user_id) DO UPDATE SET jurisdiction = EXCLUDED.jurisdiction`, app, users, r.cfg.Jurisdiction); err != nil {
		r.t.Fatalf("registering residents: %v", err)
	}
}

// rawCall sends a JSON request as app and decodes the JSON answer, registering nobody.
func (r *running) rawCall(method, path string, body any, app string) (int, map[string]any) {
	r.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			r.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, r.base+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	if app != "" {
		req.Header.Set("X-Herald-App", app)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := testenv.RegionClient(r.t).Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			r.t.Fatalf("%s %s: non-JSON answer %d: %s", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, out
}

// testRedisKeys lists the region's Redis keys matching pattern (after its prefix).
func testRedisKeys(r *running, pattern string) ([]string, error) {
	rdb, err := redis.Connect(r.t.Context(), r.cfg.Redis)
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	return rdb.Keys(r.t.Context(), r.cfg.Redis.Prefix+pattern).Result()
}
