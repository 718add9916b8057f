package httpserver

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

func TestStrictAnswersWhatNoRouteTakesInJSON(t *testing.T) {
	r := Engine()
	r.Use(Strict)
	r.PUT("/v1/things/:id", func(c *gin.Context) { c.Status(http.StatusNoContent) })
	r.GET("/v1/things/:id", func(c *gin.Context) { c.Status(http.StatusNoContent) })
	huge := strings.Repeat("x", MaxHeaderBytes)
	tests := []struct {
		name, method, target, ctype, body string
		header                            map[string]string
		status                            int
		code, field                       string
	}{
		{"plain GET", "GET", "/v1/things/a?limit=1", "", "", nil, 204, "", ""},
		{"JSON body", "PUT", "/v1/things/a", "application/json", `{}`, nil, 204, "", ""},
		{"JSON body, charset utf-8", "PUT", "/v1/things/a", "application/json; charset=UTF-8", `{}`, nil, 204, "", ""},
		{"a body with no type", "PUT", "/v1/things/a", "", `{}`, nil, 415, CodeUnsupportedMediaType, "Content-Type"},
		{"a form body", "PUT", "/v1/things/a", "application/x-www-form-urlencoded", `{}`, nil, 415, CodeUnsupportedMediaType, "Content-Type"},
		{"text/plain", "PUT", "/v1/things/a", "text/plain", `{}`, nil, 415, CodeUnsupportedMediaType, "Content-Type"},
		{"JSON in another charset", "PUT", "/v1/things/a", "application/json; charset=latin1", `{}`, nil, 415, CodeUnsupportedMediaType, "Content-Type"},
		{"a look-alike type", "PUT", "/v1/things/a", "application/jsonx", `{}`, nil, 415, CodeUnsupportedMediaType, "Content-Type"},
		{"a repeated parameter", "GET", "/v1/things/a?limit=1&limit=500", "", "", nil, 400, CodeInvalidField, "limit"},
		{"a repeated empty parameter", "GET", "/v1/things/a?cursor=&cursor=x", "", "", nil, 400, CodeInvalidField, "cursor"},
		{"a query that does not parse", "GET", "/v1/things/a?limit=%zz", "", "", nil, 400, CodeInvalidField, "query"},
		{"headers over the limit", "GET", "/v1/things/a", "", "", map[string]string{"X-Big": huge}, 431, CodeHeadersTooLarge, ""},
		{"another method", "DELETE", "/v1/things/a", "", "", nil, 405, CodeMethodNotAllowed, ""},
		{"no such route", "GET", "/v1/nothing", "", "", nil, 404, CodeNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			if tt.body == "" {
				req.Body, req.ContentLength = http.NoBody, 0
			}
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			r.ServeHTTP(w, req)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if tt.code == "" {
				return
			}
			var out struct {
				Error struct{ Code, Field string } `json:"error"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Error.Code != tt.code || out.Error.Field != tt.field {
				t.Fatalf("body %s, want code %s field %q", w.Body, tt.code, tt.field)
			}
			if tt.status == 405 && w.Header().Get("Allow") != "GET, PUT" && w.Header().Get("Allow") != "PUT, GET" {
				t.Fatalf("Allow %q", w.Header().Get("Allow"))
			}
		})
	}
}

func TestStrictAllowingLetsOnlyTheNamedTypesThroughUnderTheirPrefixAndMethod(t *testing.T) {
	r := Engine()
	r.Use(StrictAllowing(FormsUnder("/hooks/"), YAMLUnder(http.MethodPut, "/v1/flows/")))
	ok := func(c *gin.Context) { c.Status(http.StatusNoContent) }
	r.POST("/hooks/:id", ok)
	r.PUT("/v1/flows/:id", ok)
	r.POST("/v1/flows/:id", ok)
	r.PUT("/v1/other/:id", ok)
	tests := []struct {
		name, method, target, ctype string
		status                      int
	}{
		{"a form under its prefix", "POST", "/hooks/a", "application/x-www-form-urlencoded", 204},
		{"YAML under its prefix and method", "PUT", "/v1/flows/a", "application/yaml", 204},
		{"text/yaml", "PUT", "/v1/flows/a", "text/yaml; charset=utf-8", 204},
		{"JSON still", "PUT", "/v1/flows/a", "application/json", 204},
		{"YAML in another charset", "PUT", "/v1/flows/a", "application/yaml; charset=utf-16", 415},
		{"YAML with another method", "POST", "/v1/flows/a", "application/yaml", 415},
		{"YAML elsewhere", "PUT", "/v1/other/a", "application/yaml", 415},
		{"a form where YAML is allowed", "PUT", "/v1/flows/a", "application/x-www-form-urlencoded", 415},
		{"YAML where forms are allowed", "POST", "/hooks/a", "application/yaml", 415},
		{"a prefix look-alike", "PUT", "/v1/flowsx/a", "application/yaml", 415},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.target, strings.NewReader("a: 1"))
			req.Header.Set("Content-Type", tt.ctype)
			w := httptest.NewRecorder()
			r.ServeHTTP(w, req)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
		})
	}
}
