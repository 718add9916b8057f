// Package apierr writes Herald's one error shape, used by every API:
// {"error": {"code": "...", "message": "...", "field": "..."}}. Codes are stable; clients
// branch on them, never on messages.
package apierr

import (
	"encoding/json"
	"net/http"
)

// Body is the JSON error envelope.
type Body struct {
	Error Detail `json:"error"`
}

// Detail is one error.
type Detail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// Write sends an error response.
func Write(w http.ResponseWriter, status int, code, message, field string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Body{Error: Detail{Code: code, Message: message, Field: field}})
}
