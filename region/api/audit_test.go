package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/herald-notify/herald/region/audit"
)

const validAuditEntry = `{"id":"019ab3f0-6c1e-7d2a-9b4f-3e2d1c0b9a87","at":"2026-11-25T04:00:00.123456789Z","app":"app-1",` +
	`"user_key":"5f0c2a9e8d7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa998877","jurisdiction":"EU","region":"eu-west-1",` +
	`"reason":"home","policy_version":3,"request_id":"req-1"}`

func TestDecodeAuditNamesTheEntryAndField(t *testing.T) {
	second := func(replace ...string) string {
		return `{"entries":[` + validAuditEntry + `,` + strings.NewReplacer(replace...).Replace(validAuditEntry) + `]}`
	}
	tests := []struct {
		name, body, code, field string
	}{
		{"valid", second(), "", ""},
		{"refusal without region", second(`"region":"eu-west-1","reason":"home"`, `"reason":"refused"`), "", ""},
		{"not an object", `[]`, CodeMalformedJSON, ""},
		{"no entries", `{}`, CodeMissingField, "entries"},
		{"empty entries", `{"entries":[]}`, CodeMissingField, "entries"},
		{"unknown top-level field", `{"entries":[` + validAuditEntry + `],"more":1}`, CodeUnknownField, "more"},
		{"entry not an object", `{"entries":[` + validAuditEntry + `,7]}`, CodeMalformedJSON, "entries[1]"},
		{"entry with a key in another case", second(`"app":`, `"App":"x","app":`), CodeUnknownField, "entries[1].App"},
		{"a region's own reason", second(`"reason":"home"`, `"reason":"refused-not-resident"`), CodeInvalidField, "entries[1].reason"},
		{"unknown entry field", second(`"app":`, `"user":"ada","app":`), CodeUnknownField, "entries[1].user"},
		{"missing id", second(`"id":"019ab3f0-6c1e-7d2a-9b4f-3e2d1c0b9a87",`, ``), CodeMissingField, "entries[1].id"},
		{"missing policy version", second(`"policy_version":3,`, ``), CodeMissingField, "entries[1].policy_version"},
		{"policy version as a string", second(`"policy_version":3`, `"policy_version":"3"`), CodeInvalidField, "entries[1].policy_version"},
		{"time not RFC 3339", second(`2026-11-25T04:00:00.123456789Z`, `25/11/2026`), CodeInvalidField, "entries[1].at"},
		{"user id instead of key", second(`"user_key":"5f0c2a9e8d7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa998877"`, `"user_key":"ada"`), CodeInvalidField, "entries[1].user_key"},
		{"refused with a region", second(`"reason":"home"`, `"reason":"refused"`), CodeInvalidField, "entries[1].region"},
		{"unknown reason", second(`"reason":"home"`, `"reason":"closest"`), CodeInvalidField, "entries[1].reason"},
		{"trailing data", `{"entries":[` + validAuditEntry + `]} {}`, CodeMalformedJSON, ""},
	}
	for _, tt := range tests {
		entries, e := DecodeAudit(strings.NewReader(tt.body))
		switch {
		case tt.code == "" && e != nil:
			t.Errorf("%s: refused: %+v", tt.name, e)
		case tt.code == "" && len(entries) != 2:
			t.Errorf("%s: %d entries", tt.name, len(entries))
		case tt.code != "" && (e == nil || e.Code != tt.code || e.Field != tt.field):
			t.Errorf("%s: got %+v, want %s on %q", tt.name, e, tt.code, tt.field)
		}
	}
	big := `{"entries":[` + strings.Repeat(validAuditEntry+",", audit.MaxBatch) + validAuditEntry + `]}`
	if _, e := DecodeAudit(strings.NewReader(big)); e == nil || e.Field != "entries" {
		t.Errorf("%d entries: got %+v, want invalid_field on entries", audit.MaxBatch+1, e)
	}
}

type recordingAppender struct{ batches [][]audit.Entry }

func (a *recordingAppender) Append(_ context.Context, es []audit.Entry) (int, error) {
	a.batches = append(a.batches, es)
	return len(es), nil
}

func TestAuditEndpointNeedsTheInternalTokenButNoApp(t *testing.T) {
	rec := &recordingAppender{}
	engine := testEngine(&Server{InternalToken: "s3cret", Audit: rec, Logger: slog.New(slog.DiscardHandler)})
	body := `{"entries":[` + validAuditEntry + `]}`
	tests := []struct {
		name    string
		headers map[string]string
		status  int
	}{
		{"no token", nil, http.StatusUnauthorized},
		{"wrong token", map[string]string{"Authorization": "Bearer s3cre"}, http.StatusUnauthorized},
		{"the token, no app header", map[string]string{"Authorization": "Bearer s3cret"}, http.StatusNoContent},
	}
	for _, tt := range tests {
		w := serve(engine, "POST", "/internal/v1/audit", body, tt.headers)
		if w.Code != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, w.Code, w.Body, tt.status)
		}
	}
	if len(rec.batches) != 1 || len(rec.batches[0]) != 1 || rec.batches[0][0].Reason != "home" {
		t.Fatalf("appended %+v, want the one authenticated batch", rec.batches)
	}
}

// TestOpenAPIAuditBatchAgreesWithDecodeAudit runs sample bodies through the AuditBatch schema
// and DecodeAudit: both must accept, or both refuse.
func TestOpenAPIAuditBatchAgreesWithDecodeAudit(t *testing.T) {
	s := schema(t, loadOpenAPI(t), "AuditBatch")
	with := func(old, new string) string {
		return `{"entries":[` + strings.Replace(validAuditEntry, old, new, 1) + `]}`
	}
	tests := []struct {
		name, body string
		valid      bool
	}{
		{"home", with("", ""), true},
		{"failover", with(`"reason":"home"`, `"reason":"failover-from-eu-west-1"`), true},
		{"refused without region", with(`"region":"eu-west-1","reason":"home"`, `"reason":"refused"`), true},
		{"redirect with empty region", with(`"region":"eu-west-1","reason":"home"`, `"region":"","reason":"redirect"`), true},
		{"policy version 0", with(`"policy_version":3`, `"policy_version":0`), true},
		{"no entries", `{"entries":[]}`, false},
		{"unknown field", with(`"app":`, `"user":"ada","app":`), false},
		{"missing request id", with(`,"request_id":"req-1"`, ``), false},
		{"request id with a space", with(`"req-1"`, `"req 1"`), false},
		{"upper-case user key", with(`"user_key":"5f0c`, `"user_key":"5F0C`), false},
		{"bad region", with(`"region":"eu-west-1"`, `"region":"europe"`), false},
		{"unknown reason", with(`"reason":"home"`, `"reason":"closest"`), false},
		{"failover from nowhere", with(`"reason":"home"`, `"reason":"failover-from-"`), false},
		{"negative policy version", with(`"policy_version":3`, `"policy_version":-1`), false},
		{"time without zone", with(`04:00:00.123456789Z`, `04:00:00`), false},
		{"id not a uuid", with(`"id":"019ab3f0-`, `"id":"x019ab3f0-`), false},
	}
	for _, tt := range tests {
		var v any
		if err := json.Unmarshal([]byte(tt.body), &v); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		schemaErr := s.VisitJSON(v, openapi3.VisitAsRequest(), openapi3.EnableFormatValidation(), openapi3.MultiErrors())
		_, decodeErr := DecodeAudit(strings.NewReader(tt.body))
		if (schemaErr == nil) != tt.valid {
			t.Errorf("%s: the schema says %v, want valid=%v", tt.name, schemaErr, tt.valid)
		}
		if (decodeErr == nil) != tt.valid {
			t.Errorf("%s: DecodeAudit says %+v, want valid=%v", tt.name, decodeErr, tt.valid)
		}
	}
}
