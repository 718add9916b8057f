package analytics

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/herald-notify/herald/analytics/wire"
	"github.com/herald-notify/herald/platform/health"
)

// GET /v1/categories gives a region's exporter the categories ingest accepts, so it can fold
// any other into "other" itself; without a region's token it is a 401.
func TestCategoriesEndpointListsWhatIngestAcceptsToRegionsOnly(t *testing.T) {
	cfg := validConfig()
	cfg.Categories.Apps["blog"] = nil
	tokens, err := cfg.regionTokens()
	if err != nil {
		t.Fatal(err)
	}
	r := newAPI(cfg, credentials{regions: tokens, operator: testOperatorToken}, nil, slog.New(slog.DiscardHandler)).router(health.New(nil))
	for _, tc := range []struct {
		name   string
		auth   string
		status int
		want   *wire.Categories
	}{
		{"a region's token", "Bearer 0123456789abcdef-eu", 200,
			&wire.Categories{Global: []string{"security"}, Apps: map[string][]string{"shop": {"order"}, "blog": {}}}},
		{"another region's token", "Bearer 0123456789abcdef-us", 200,
			&wire.Categories{Global: []string{"security"}, Apps: map[string][]string{"shop": {"order"}, "blog": {}}}},
		{"no token", "", 401, nil},
		{"a wrong token", "Bearer 0123456789abcdef-xx", 401, nil},
		{"not a bearer token", "Basic MDEyMzQ1Njc4OWFiY2RlZi1ldQ==", 401, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, "/v1/categories", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			r.ServeHTTP(w, req)
			if w.Code != tc.status {
				t.Fatalf("%d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.want == nil {
				if w.Header().Get("WWW-Authenticate") == "" {
					t.Error("a 401 without WWW-Authenticate")
				}
				return
			}
			var got wire.Categories
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, *tc.want) {
				t.Errorf("got %+v, want %+v", got, *tc.want)
			}
			// The exporter's rule on the answer is central's rule on a cell.
			for _, c := range []struct{ app, category string }{
				{"shop", "order"}, {"shop", "security"}, {"blog", "order"}, {"blog", "other"}, {"news", "promo"},
			} {
				if got.Allows(c.app, c.category) != cfg.Categories.Allowed(c.app, c.category) {
					t.Errorf("%s/%s: the exporter and ingest disagree", c.app, c.category)
				}
			}
		})
	}
}
