package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/residency"
)

// TestRotateSecretBodyIsReadBeforeRouting: the gateway refuses a bad overlap itself, with the
// regions' code and field, and lets through what a region accepts (here to the next step, which
// finds no policy loaded: nothing was forwarded).
func TestRotateSecretBodyIsReadBeforeRouting(t *testing.T) {
	gin.SetMode(gin.TestMode)
	s := &Server{Policy: residency.NewHolder(nil)}
	r := gin.New()
	r.POST(webhooksPrefix+"/endpoints/:endpoint_id/rotate-secret", s.byJurisdiction)
	const path = "/v1/jurisdictions/EU/webhooks/endpoints/ep_1/rotate-secret"
	tests := []struct {
		name, body  string
		status      int
		code, field string
	}{
		{"no body", ``, http.StatusServiceUnavailable, "no_policy", ""},
		{"empty object", `{}`, http.StatusServiceUnavailable, "no_policy", ""},
		{"zero", `{"expire_previous_in_seconds": 0}`, http.StatusServiceUnavailable, "no_policy", ""},
		{"the maximum", `{"expire_previous_in_seconds": 604800}`, http.StatusServiceUnavailable, "no_policy", ""},
		{"over the maximum", `{"expire_previous_in_seconds": 604801}`, http.StatusBadRequest, "invalid_field", "expire_previous_in_seconds"},
		{"negative", `{"expire_previous_in_seconds": -60}`, http.StatusBadRequest, "invalid_field", "expire_previous_in_seconds"},
		{"fraction", `{"expire_previous_in_seconds": 1.5}`, http.StatusBadRequest, "invalid_field", "expire_previous_in_seconds"},
		{"null", `{"expire_previous_in_seconds": null}`, http.StatusBadRequest, "invalid_field", "expire_previous_in_seconds"},
		{"string", `{"expire_previous_in_seconds": "0"}`, http.StatusBadRequest, "invalid_field", "expire_previous_in_seconds"},
		{"huge", `{"expire_previous_in_seconds": 18446744073709551616}`, http.StatusBadRequest, "invalid_field", "expire_previous_in_seconds"},
		{"unknown field", `{"secret": "whsec_bWluZQ=="}`, http.StatusBadRequest, "unknown_field", "secret"},
		{"twice", `{"expire_previous_in_seconds": 0, "expire_previous_in_seconds": 0}`, http.StatusBadRequest, "duplicate_field", "expire_previous_in_seconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(tt.body)))
			var b struct{ Error struct{ Code, Field string } }
			_ = json.Unmarshal(rec.Body.Bytes(), &b)
			if rec.Code != tt.status || b.Error.Code != tt.code || b.Error.Field != tt.field {
				t.Fatalf("%d %s, want %d %s (%s)", rec.Code, rec.Body, tt.status, tt.code, tt.field)
			}
		})
	}
}
