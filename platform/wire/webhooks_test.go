package wire

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestWebhookEndpointValidate(t *testing.T) {
	tests := []struct {
		name, body, code, field string
	}{
		{"minimal", `{"url": "https://example.com/h"}`, "", ""},
		{"full", `{"url": "https://example.com/h", "description": "ops", "event_types": ["notification.delivered", "notification.failed"]}`, "", ""},
		{"no url", `{"description": "x"}`, CodeMissingField, "url"},
		{"unknown field", `{"url": "https://example.com/h", "secret": "x"}`, CodeUnknownField, "secret"},
		{"unknown type", `{"url": "https://example.com/h", "event_types": ["notification.opened"]}`, CodeInvalidField, "event_types[0]"},
		{"repeated type", `{"url": "https://example.com/h", "event_types": ["notification.read", "notification.read"]}`, CodeInvalidField, "event_types[1]"},
		{"credentials", `{"url": "https://u:p@example.com/h"}`, CodeInvalidField, "url"},
		{"not a url", `{"url": "example.com"}`, CodeInvalidField, "url"},
		{"null", `{"url": null}`, CodeInvalidField, "url"},
		{"long description", `{"url": "https://example.com/h", "description": "` + strings.Repeat("x", 257) + `"}`, CodeInvalidField, "description"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w WebhookEndpoint
			e := Decode([]byte(tt.body), &w)
			if e == nil {
				e = w.Validate()
			}
			switch {
			case tt.code == "" && e != nil:
				t.Fatalf("refused: %v", e)
			case tt.code != "" && (e == nil || e.Code != tt.code || e.Field != tt.field):
				t.Fatalf("got %v, want %s (%s)", e, tt.code, tt.field)
			}
		})
	}
}

func TestWebhookReplayValidate(t *testing.T) {
	r := WebhookReplay{EventIDs: []string{"msg_1", "bad id"}}
	if e := r.Validate(); e == nil || e.Field != "event_ids[1]" {
		t.Fatalf("got %v", e)
	}
	r.EventIDs = make([]string, MaxWebhookReplayIDs+1)
	if e := r.Validate(); e == nil || e.Field != "event_ids" {
		t.Fatalf("got %v", e)
	}
}

// FuzzWebhookEndpoint: whatever the body, decoding and validating never panic, and an endpoint
// accepted with https or loopback http is an absolute URL of that scheme with a host, no
// credentials and no fragment.
func FuzzWebhookEndpoint(f *testing.F) {
	for _, s := range []string{
		`{"url": "https://example.com/h"}`, `{"url": "http://127.0.0.1:8447/hooks/eu", "event_types": ["notification.read"]}`,
		`{"url": "https://[::1]/"}`, `{"url": "https://a@b/"}`, `{"url": "http://localhost./x"}`, `{"url": "https://example.com/%zz"}`,
		`{"url": "HTTPS://EXAMPLE.COM/"}`, `{"url": "http://0x7f.1/"}`, `{"url": "http://127.1/"}`,
	} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, loopback bool) {
		var w WebhookEndpoint
		if Decode(body, &w) != nil || w.Validate() != nil || CheckWebhookURL(w.URL, loopback) != nil {
			return
		}
		u, err := url.Parse(w.URL)
		if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" || strings.ContainsAny(w.URL, " \t\r\n#") {
			t.Fatalf("accepted %q", w.URL)
		}
		if u.Scheme != "https" && !(loopback && u.Scheme == "http") {
			t.Fatalf("accepted scheme %q (loopback %v): %q", u.Scheme, loopback, w.URL)
		}
		if len(w.URL) > MaxWebhookURLBytes {
			t.Fatalf("accepted a %d-byte url", len(w.URL))
		}
	})
}

// TestWebhookRotateValidate reads rotation bodies as the gateway and the regions do: the
// overlap in whole seconds, 0 to 7 days, left out for the default; anything else refused naming
// the field. What is accepted encodes (as the gateway forwards it) to a body read the same way.
func TestWebhookRotateValidate(t *testing.T) {
	const field = "expire_previous_in_seconds"
	tests := []struct {
		name, body  string
		keep        time.Duration
		code, field string
	}{
		{"empty object: the default", `{}`, 24 * time.Hour, "", ""},
		{"zero: at once", `{"expire_previous_in_seconds": 0}`, 0, "", ""},
		{"a minute", `{"expire_previous_in_seconds": 60}`, time.Minute, "", ""},
		{"the maximum", `{"expire_previous_in_seconds": 604800}`, 7 * 24 * time.Hour, "", ""},
		{"over the maximum", `{"expire_previous_in_seconds": 604801}`, 0, CodeInvalidField, field},
		{"negative", `{"expire_previous_in_seconds": -1}`, 0, CodeInvalidField, field},
		{"huge", `{"expire_previous_in_seconds": 1e30}`, 0, CodeInvalidField, field},
		{"past int64", `{"expire_previous_in_seconds": 9223372036854775808}`, 0, CodeInvalidField, field},
		{"fraction", `{"expire_previous_in_seconds": 0.5}`, 0, CodeInvalidField, field},
		{"null", `{"expire_previous_in_seconds": null}`, 0, CodeInvalidField, field},
		{"string", `{"expire_previous_in_seconds": "3600"}`, 0, CodeInvalidField, field},
		{"object", `{"expire_previous_in_seconds": {"seconds": 1}}`, 0, CodeInvalidField, field},
		{"a duration string", `{"expire_previous_in_seconds": "24h"}`, 0, CodeInvalidField, field},
		{"another name", `{"expire_previous_in": 60}`, 0, CodeUnknownField, "expire_previous_in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r WebhookRotate
			e := Decode([]byte(tt.body), &r)
			if e == nil {
				e = r.Validate()
			}
			if tt.code != "" {
				if e == nil || e.Code != tt.code || e.Field != tt.field {
					t.Fatalf("got %v, want %s (%s)", e, tt.code, tt.field)
				}
				if tt.code == CodeInvalidField && !strings.Contains(e.Message, "integer") && !strings.Contains(e.Message, "null") {
					t.Fatalf("the message %q does not say what is wanted", e.Message)
				}
				return
			}
			if e != nil {
				t.Fatalf("refused: %v", e)
			}
			if got := r.KeepPrevious(); got != tt.keep {
				t.Fatalf("keeps the previous secret %s, want %s", got, tt.keep)
			}
			var again WebhookRotate
			if e := Decode(Encode(&r), &again); e != nil || again.KeepPrevious() != tt.keep {
				t.Fatalf("forwarded as %s, read back as %v (%v)", Encode(&r), again.KeepPrevious(), e)
			}
		})
	}
}
