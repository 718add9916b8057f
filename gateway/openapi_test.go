package gateway

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/platform/health"
)

const gatewayOpenAPI = "../docs/openapi-gateway.yaml"

func TestOpenAPIDocumentIsValidAndListsExactlyTheGatewayRoutes(t *testing.T) {
	loader := openapi3.NewLoader()
	loader.IsExternalRefsAllowed = true
	doc, err := loader.LoadFromFile(gatewayOpenAPI)
	if err != nil {
		t.Fatalf("loading %s: %v", gatewayOpenAPI, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("%s is not valid OpenAPI: %v", gatewayOpenAPI, err)
	}
	s := &Server{Health: health.New(nil)}
	engine := s.Handler().(*gin.Engine)
	param := regexp.MustCompile(`:([A-Za-z0-9_]+)`)
	var mounted, documented []string
	for _, r := range engine.Routes() {
		if !strings.HasPrefix(r.Path, "/v1/") {
			continue
		}
		mounted = append(mounted, r.Method+" "+param.ReplaceAllString(r.Path, "{$1}"))
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	slices.Sort(mounted)
	slices.Sort(documented)
	for _, m := range mounted {
		if !slices.Contains(documented, m) {
			t.Errorf("route %s is mounted but not in %s", m, gatewayOpenAPI)
		}
	}
	for _, d := range documented {
		if !slices.Contains(mounted, d) {
			t.Errorf("%s documents %s, which the gateway does not serve", gatewayOpenAPI, d)
		}
	}
}

// TestOpenAPIErrorCodesAreEveryCodeTheAPIAnswers keeps the ErrorCode enum equal to the codes in
// the code: the gateway's own (every abort, unavailable and error body here), the request
// hygiene and body reading shared with the regions, and the regions' codes it relays.
func TestOpenAPIErrorCodesAreEveryCodeTheAPIAnswers(t *testing.T) {
	loader := openapi3.NewLoader()
	loader.IsExternalRefsAllowed = true
	doc, err := loader.LoadFromFile(gatewayOpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, v := range doc.Components.Schemas["ErrorCode"].Value.Enum {
		documented = append(documented, v.(string))
	}
	inCode := map[string]bool{}
	scan := func(glob string, res ...*regexp.Regexp) {
		files, _ := filepath.Glob(glob)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, re := range res {
				for _, m := range re.FindAllSubmatch(src, -1) {
					inCode[string(m[1])] = true
				}
			}
		}
	}
	scan("*.go", regexp.MustCompile(`(?:(?:abort|refuseSendGrid)\(c, [^,]+, |unavailable\(c, )"([a-z_]+)"`), regexp.MustCompile(`"code": "([a-z_]+)"`), regexp.MustCompile(`code = "([a-z_]+)"`))
	constant := regexp.MustCompile(`Code[A-Za-z]+ += "([a-z_]+)"`)
	scan("../platform/wire/*.go", constant)
	scan("../platform/httpserver/*.go", constant)
	scan("../region/api/errors.go", constant)
	delete(inCode, "missing_app")     // the gateway always sets X-Herald-App
	delete(inCode, "invalid_timeout") // and X-Herald-Timeout-Ms, from its own deadline
	want := slices.Sorted(maps.Keys(inCode))
	slices.Sort(documented)
	if !slices.Equal(documented, want) {
		t.Fatalf("ErrorCode enum in %s:\n  %v\ncodes in the code:\n  %v", gatewayOpenAPI, documented, want)
	}
}
