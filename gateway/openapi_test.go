package gateway

import (
	"context"
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
