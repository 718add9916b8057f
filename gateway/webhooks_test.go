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

// TestCredentialBodiesAreReadBeforeRouting: the gateway refuses a credential it cannot use
// itself, naming the field, before any region is asked, and lets a good one through to routing
// (here the next step finds no policy loaded: nothing was forwarded).
func TestCredentialBodiesAreReadBeforeRouting(t *testing.T) {
	gin.SetMode(gin.TestMode)
	s := &Server{Policy: residency.NewHolder(nil)}
	r := gin.New()
	r.PUT(credentialsPrefix+"/:kind", s.byJurisdiction)
	r.GET(credentialsPrefix+"/:kind", s.byJurisdiction)
	r.DELETE(credentialsPrefix+"/:kind", s.byJurisdiction)
	twilio := `{"account_sid":"AC` + strings.Repeat("0a", 16) + `","auth_token":"` + strings.Repeat("7e", 16) + `","from":"+15005550006"}`
	tests := []struct {
		name, method, kind, body string
		status                   int
		code, field              string
	}{
		{"good", http.MethodPut, "twilio", twilio, http.StatusServiceUnavailable, "no_policy", ""},
		{"unknown kind", http.MethodPut, "nexmo", twilio, http.StatusBadRequest, "invalid_field", "kind"},
		{"kind in upper case", http.MethodGet, "TWILIO", ``, http.StatusBadRequest, "invalid_field", "kind"},
		{"kind with a NUL", http.MethodDelete, "twilio%00", ``, http.StatusBadRequest, "invalid_field", "kind"},
		{"bad field", http.MethodPut, "twilio", strings.Replace(twilio, "+1500", "1500", 1), http.StatusBadRequest, "invalid_field", "from"},
		{"a field in another case", http.MethodPut, "twilio", strings.Replace(twilio, "account_sid", "Account_Sid", 1), http.StatusBadRequest, "unknown_field", "Account_Sid"},
		{"an APNs body sent as twilio", http.MethodPut, "twilio", `{"team_id":"ABCDE12345"}`, http.StatusBadRequest, "unknown_field", "team_id"},
		{"empty", http.MethodPut, "apns", ``, http.StatusBadRequest, "malformed_json", ""},
		{"null", http.MethodPut, "smtp", `null`, http.StatusBadRequest, "malformed_json", ""},
		{"a body on get", http.MethodGet, "twilio", `{"a":1}`, http.StatusBadRequest, "unknown_field", "a"},
		{"delete", http.MethodDelete, "fcm", ``, http.StatusServiceUnavailable, "no_policy", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, httptest.NewRequest(tt.method, "/v1/jurisdictions/EU/credentials/"+tt.kind, strings.NewReader(tt.body)))
			var b struct{ Error struct{ Code, Field string } }
			_ = json.Unmarshal(rec.Body.Bytes(), &b)
			if rec.Code != tt.status || b.Error.Code != tt.code || b.Error.Field != tt.field {
				t.Fatalf("%d %s, want %d %s (%s)", rec.Code, rec.Body, tt.status, tt.code, tt.field)
			}
		})
	}
}
