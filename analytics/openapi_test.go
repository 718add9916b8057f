package analytics

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/gin-gonic/gin"
	"github.com/herald-notify/herald/analytics/wire"

	"github.com/herald-notify/herald/platform/health"
)

// These tests keep docs/openapi-analytics.yaml honest: valid, the routes the server mounts,
// the error catalogue, the wire types' fields, and an example the server accepts.

const openapiPath = "../docs/openapi-analytics.yaml"

func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromFile(openapiPath)
	if err != nil {
		t.Fatalf("loading %s: %v", openapiPath, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("%s is not valid OpenAPI: %v", openapiPath, err)
	}
	return doc
}

func TestOpenAPIDocumentsEveryV1RouteAndNoOther(t *testing.T) {
	doc := loadOpenAPI(t)
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	a := newAPI(validConfig(t), credentials{operator: testOperatorToken}, nil, slog.New(slog.DiscardHandler))
	// Both listeners: the operators' (whose ingest routes only refuse) and the regions'.
	var mounted []string
	for _, routes := range []gin.RoutesInfo{a.router(health.New(nil)).Routes(), a.ingestRouter(health.New(nil)).Routes()} {
		for _, r := range routes {
			if strings.HasPrefix(r.Path, "/v1/") {
				mounted = append(mounted, r.Method+" "+r.Path)
			}
		}
	}
	sort.Strings(documented)
	sort.Strings(mounted)
	mounted = slices.Compact(mounted)
	if !slices.Equal(documented, mounted) {
		t.Errorf("documented %v\nmounted    %v", documented, mounted)
	}
}

func TestOpenAPIListsExactlyTheErrorCatalogue(t *testing.T) {
	doc := loadOpenAPI(t)
	var listed []string
	for _, v := range doc.Components.Schemas["ErrorCode"].Value.Enum {
		listed = append(listed, v.(string))
	}
	sort.Strings(listed)
	if want := sortedKeys(errorCodes); !slices.Equal(listed, want) {
		t.Errorf("ErrorCode enum %v\ncatalogue      %v", listed, want)
	}
}

func TestOpenAPIBatchSchemasHaveTheWireTypesFields(t *testing.T) {
	doc := loadOpenAPI(t)
	for schema, typ := range map[string]reflect.Type{
		"Batch": reflect.TypeOf(wire.Batch{}), "Cell": reflect.TypeOf(wire.Cell{}), "Histogram": reflect.TypeOf(wire.Histogram{}),
		"Categories": reflect.TypeOf(wire.Categories{}),
	} {
		var props []string
		for name := range doc.Components.Schemas[schema].Value.Properties {
			props = append(props, name)
		}
		sort.Strings(props)
		if got := jsonFields(typ); !slices.Equal(props, got) {
			t.Errorf("%s: documented %v, wire has %v", schema, props, got)
		}
	}
	stages := doc.Components.Schemas["Stage"].Value.Enum
	if len(stages) != len(wire.Stages) {
		t.Errorf("Stage enum has %d values, wire %d", len(stages), len(wire.Stages))
	}
}

func jsonFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func TestOpenAPIIngestExampleIsAcceptedByTheServer(t *testing.T) {
	doc := loadOpenAPI(t)
	ex := doc.Paths.Value("/v1/aggregates").Post.RequestBody.Value.Content["application/json"].Example
	raw, err := json.Marshal(ex)
	if err != nil {
		t.Fatal(err)
	}
	b, err := DecodeBatch(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("decoding the example: %v", err)
	}
	r := rules{k: 10, categories: CategoriesConfig{Global: []string{"security"}}, now: func() time.Time { return testNow }}
	if fe := r.check(b, "eu-west-1"); fe != nil {
		t.Fatalf("the example is refused: %v", fe)
	}
}

func TestDashboardIsServedFromTheBinaryWithoutListingsUnderAStrictCSP(t *testing.T) {
	a := newAPI(validConfig(t), credentials{operator: testOperatorToken}, nil, slog.New(slog.DiscardHandler))
	r := a.router(health.New(nil))
	tests := []struct {
		path   string
		status int
		inBody string
	}{
		{"/", 302, ""},
		{"/dashboard/", 200, "<title>Herald analytics</title>"},
		{"/dashboard/login.html", 200, "Operator token"},
		{"/dashboard/vendor/chart.umd.min.js", 200, "Chart.js v4"},
		{"/dashboard/vendor/", 404, ""},
		{"/dashboard/../analytics.go", 404, ""},
		{"/v1/nothing", 404, `"code":"not_found"`},
		{"/favicon.ico", 204, ""},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		req := httptest.NewRequest("GET", tt.path, nil)
		req.Header.Set("Authorization", "Bearer "+testOperatorToken)
		r.ServeHTTP(w, req)
		if w.Code != tt.status {
			t.Errorf("%s: %d, want %d", tt.path, w.Code, tt.status)
		}
		if !strings.Contains(w.Body.String(), tt.inBody) {
			t.Errorf("%s: body lacks %q", tt.path, tt.inBody)
		}
		if strings.HasPrefix(tt.path, "/dashboard/") && w.Code == 200 && !strings.Contains(w.Header().Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("%s: no CSP", tt.path)
		}
	}
}
