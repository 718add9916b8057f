package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/region/webhooks"
)

// fakeHooks is an in-memory WebhookStore that records what the handlers asked of it.
type fakeHooks struct {
	created  []webhooks.Spec
	kept     []time.Duration // each rotation's overlap
	replayed []string
	region   string
	disabled bool
}

func (f *fakeHooks) Create(_ context.Context, app, j string, spec webhooks.Spec) (webhooks.Endpoint, string, error) {
	f.created = append(f.created, spec)
	return webhooks.Endpoint{ID: "ep_1", Jurisdiction: j, URL: spec.URL, EventTypes: spec.EventTypes, CreatedAt: time.Now()}, "whsec_c2VjcmV0", nil
}
func (f *fakeHooks) List(context.Context, string, string) ([]webhooks.Endpoint, error) {
	return []webhooks.Endpoint{}, nil
}
func (f *fakeHooks) Get(_ context.Context, _, _, id string) (webhooks.Endpoint, error) {
	if id != "ep_1" {
		return webhooks.Endpoint{}, webhooks.ErrNotFound
	}
	return webhooks.Endpoint{ID: id}, nil
}
func (f *fakeHooks) Rotate(ctx context.Context, app, j, id string, keep time.Duration) (webhooks.Endpoint, string, error) {
	e, err := f.Get(ctx, app, j, id)
	if err != nil {
		return e, "", err
	}
	f.kept = append(f.kept, keep)
	if keep > 0 {
		until := time.Date(2026, 12, 8, 6, 0, 0, 0, time.UTC)
		e.PreviousSecretValid, e.PreviousSecretExpiresAt = true, &until
	}
	return e, "whsec_bmV3", nil
}
func (f *fakeHooks) SetDisabled(ctx context.Context, app, j, id string, d bool) (webhooks.Endpoint, error) {
	e, err := f.Get(ctx, app, j, id)
	f.disabled = d
	e.Disabled = d
	return e, err
}
func (f *fakeHooks) DeadLetters(ctx context.Context, app, j, id string, _ int) ([]webhooks.DeadLetter, error) {
	_, err := f.Get(ctx, app, j, id)
	return []webhooks.DeadLetter{}, err
}
func (f *fakeHooks) Replay(ctx context.Context, app, j, id, region string, ids []string) (int64, error) {
	if _, err := f.Get(ctx, app, j, id); err != nil {
		return 0, err
	}
	if f.disabled {
		return 0, webhooks.ErrDisabled
	}
	f.region, f.replayed = region, ids
	return int64(len(ids)), nil
}

func TestWebhookRoutes(t *testing.T) {
	hooks := &fakeHooks{}
	s := &Server{Region: "eu-west-1", Jurisdiction: "EU", Webhooks: hooks, Logger: slog.New(slog.DiscardHandler)}
	engine := testEngine(s)
	app := map[string]string{AppHeader: "app1"}
	tests := []struct {
		name, method, path, body string
		status                   int
		code, field, contains    string
	}{
		{"create", "POST", "/v1/webhooks/endpoints", `{"url": "https://example.com/h", "event_types": ["notification.read"]}`, 201, "", "", `"secret":"whsec_c2VjcmV0"`},
		{"create http refused", "POST", "/v1/webhooks/endpoints", `{"url": "http://127.0.0.1:8447/hooks/a"}`, 400, CodeInvalidField, "url", ""},
		{"create unknown field", "POST", "/v1/webhooks/endpoints", `{"url": "https://example.com/h", "secret": "mine"}`, 400, CodeUnknownField, "secret", ""},
		{"create without url", "POST", "/v1/webhooks/endpoints", `{}`, 400, CodeMissingField, "url", ""},
		{"list", "GET", "/v1/webhooks/endpoints", ``, 200, "", "", `"jurisdiction":"EU"`},
		{"get unknown", "GET", "/v1/webhooks/endpoints/ep_2", ``, 404, CodeNotFound, "", ""},
		{"rotate", "POST", "/v1/webhooks/endpoints/ep_1/rotate-secret", ``, 200, "", "", `"secret":"whsec_bmV3"`},
		{"rotate with a body", "POST", "/v1/webhooks/endpoints/ep_1/rotate-secret", `{"secret": "x"}`, 400, CodeUnknownField, "secret", ""},
		{"dead letters bad limit", "GET", "/v1/webhooks/endpoints/ep_1/dead-letters?limit=0", ``, 400, CodeInvalidField, "limit", ""},
		{"dead letters", "GET", "/v1/webhooks/endpoints/ep_1/dead-letters?limit=10", ``, 200, "", "", `"dead_letters":[]`},
		{"replay ids", "POST", "/v1/webhooks/endpoints/ep_1/replay", `{"event_ids": ["msg_1", "msg_2"]}`, 202, "", "", `"replayed":2`},
		{"replay bad id", "POST", "/v1/webhooks/endpoints/ep_1/replay", `{"event_ids": ["a b"]}`, 400, CodeInvalidField, "event_ids[0]", ""},
		{"disable", "POST", "/v1/webhooks/endpoints/ep_1/disable", `{}`, 200, "", "", `"disabled":true`},
		{"replay disabled", "POST", "/v1/webhooks/endpoints/ep_1/replay", ``, 409, CodeEndpointDisabled, "endpoint_id", ""},
		{"enable", "POST", "/v1/webhooks/endpoints/ep_1/enable", ``, 200, "", "", `"disabled":false`},
		{"replay all", "POST", "/v1/webhooks/endpoints/ep_1/replay", ``, 202, "", "", `"replayed":0`},
	}
	doc := loadOpenAPI(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(engine, tt.method, tt.path, tt.body, app)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if tt.code != "" {
				var b struct{ Error struct{ Code, Field string } }
				_ = json.Unmarshal(rec.Body.Bytes(), &b)
				if b.Error.Code != tt.code || b.Error.Field != tt.field {
					t.Fatalf("error %+v, want %s (%s)", b.Error, tt.code, tt.field)
				}
				route := tt.path
				if i := strings.Index(route, "?"); i >= 0 {
					route = route[:i]
				}
				route = strings.Replace(strings.Replace(route, "ep_1", ":endpoint_id", 1), "ep_2", ":endpoint_id", 1)
				checkDocumentedError(t, doc, tt.name, tt.method, route, rec, tt.status, tt.code)
			}
			if !strings.Contains(rec.Body.String(), tt.contains) {
				t.Fatalf("body %s lacks %s", rec.Body, tt.contains)
			}
		})
	}
	if hooks.region != "eu-west-1" || hooks.replayed != nil {
		t.Fatalf("the last replay: region %q ids %v (want this region, all)", hooks.region, hooks.replayed)
	}
	if len(hooks.created) != 1 || hooks.created[0].EventTypes[0] != "notification.read" {
		t.Fatalf("created %+v", hooks.created)
	}
	// The local stack's rule: http to a loopback host.
	s.WebhooksAllowLoopbackHTTP = true
	if rec := serve(engine, "POST", "/v1/webhooks/endpoints", `{"url": "http://127.0.0.1:8447/hooks/a"}`, app); rec.Code != http.StatusCreated {
		t.Fatalf("loopback http: %d %s", rec.Code, rec.Body)
	}
}

// TestRotateWebhookSecretOverlap checks the rotation body: the overlap the previous secret is
// kept for (default 24 h, 0-7 days), and every other value refused with 400 naming the field,
// before the store is asked.
func TestRotateWebhookSecretOverlap(t *testing.T) {
	const route = "/v1/webhooks/endpoints/:endpoint_id/rotate-secret"
	const path = "/v1/webhooks/endpoints/ep_1/rotate-secret"
	const field = "expire_previous_in_seconds"
	day := 24 * time.Hour
	tests := []struct {
		name, body string
		keep       time.Duration // when accepted
		code       string        // when refused
		field      string
	}{
		{"no body", ``, day, "", ""},
		{"empty object", `{}`, day, "", ""},
		{"whitespace only", "  \n", 0, CodeMalformedJSON, ""},
		{"zero: expire at once", `{"expire_previous_in_seconds": 0}`, 0, "", ""},
		{"minus zero", `{"expire_previous_in_seconds": -0}`, 0, "", ""},
		{"one second", `{"expire_previous_in_seconds": 1}`, time.Second, "", ""},
		{"an hour", `{"expire_previous_in_seconds": 3600}`, time.Hour, "", ""},
		{"the maximum, 7 days", `{"expire_previous_in_seconds": 604800}`, 7 * day, "", ""},
		{"over the maximum", `{"expire_previous_in_seconds": 604801}`, 0, CodeInvalidField, field},
		{"negative", `{"expire_previous_in_seconds": -1}`, 0, CodeInvalidField, field},
		{"very negative", `{"expire_previous_in_seconds": -9223372036854775808}`, 0, CodeInvalidField, field},
		{"huge", `{"expire_previous_in_seconds": 99999999999999999999}`, 0, CodeInvalidField, field},
		{"max int64 (would overflow a duration)", `{"expire_previous_in_seconds": 9223372036854775807}`, 0, CodeInvalidField, field},
		{"exponent", `{"expire_previous_in_seconds": 1e3}`, 0, CodeInvalidField, field},
		{"fraction", `{"expire_previous_in_seconds": 1.5}`, 0, CodeInvalidField, field},
		{"integral fraction", `{"expire_previous_in_seconds": 60.0}`, 0, CodeInvalidField, field},
		{"null", `{"expire_previous_in_seconds": null}`, 0, CodeInvalidField, field},
		{"string", `{"expire_previous_in_seconds": "60"}`, 0, CodeInvalidField, field},
		{"boolean", `{"expire_previous_in_seconds": true}`, 0, CodeInvalidField, field},
		{"list", `{"expire_previous_in_seconds": [60]}`, 0, CodeInvalidField, field},
		{"twice", `{"expire_previous_in_seconds": 0, "expire_previous_in_seconds": 86400}`, 0, CodeDuplicateField, field},
		{"case folded", `{"Expire_Previous_In_Seconds": 0}`, 0, CodeUnknownField, "Expire_Previous_In_Seconds"},
		{"a secret of the caller's", `{"secret": "whsec_bWluZQ=="}`, 0, CodeUnknownField, "secret"},
		{"not an object", `60`, 0, CodeMalformedJSON, ""},
		{"trailing data", `{} {"expire_previous_in_seconds": 0}`, 0, CodeMalformedJSON, ""},
		{"too large", `{"expire_previous_in_seconds": 1` + strings.Repeat(" ", smallBodyBytes) + `}`, 0, CodePayloadTooLarge, ""},
	}
	doc := loadOpenAPI(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hooks := &fakeHooks{}
			engine := testEngine(&Server{Region: "eu-west-1", Jurisdiction: "EU", Webhooks: hooks, Logger: slog.New(slog.DiscardHandler)})
			rec := serve(engine, "POST", path, tt.body, map[string]string{AppHeader: "app1"})
			if tt.code != "" {
				var b struct{ Error struct{ Code, Field string } }
				_ = json.Unmarshal(rec.Body.Bytes(), &b)
				if rec.Code != http.StatusBadRequest || b.Error.Code != tt.code || b.Error.Field != tt.field {
					t.Fatalf("%d %s, want 400 %s (%s)", rec.Code, rec.Body, tt.code, tt.field)
				}
				checkDocumentedError(t, doc, tt.name, "POST", route, rec, http.StatusBadRequest, tt.code)
				if len(hooks.kept) != 0 {
					t.Fatalf("a refused body rotated the secret (%v)", hooks.kept)
				}
				return
			}
			if rec.Code != http.StatusOK {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			if len(hooks.kept) != 1 || hooks.kept[0] != tt.keep {
				t.Fatalf("rotated with overlaps %v, want %v", hooks.kept, tt.keep)
			}
			var out map[string]any
			_ = json.Unmarshal(rec.Body.Bytes(), &out)
			if out["secret"] != "whsec_bmV3" || out["previous_secret_valid"] != (tt.keep > 0) || (out["previous_secret_expires_at"] != nil) != (tt.keep > 0) {
				t.Fatalf("answer %s", rec.Body)
			}
		})
	}
}
