//go:build integration

package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestNoBodyReadsDifferentlyAtTheGatewayAndARegion sends, through the gateway and then straight
// to an EU region with the internal token, the request shapes that once walked a US user's
// notification into EU stores, and their relatives (case and Unicode folding of keys, repeated
// keys, empty and null targets, NUL). Each is refused with a 400 naming the field, or, at the
// region, a 403 for a user who is not its resident; afterwards no EU store holds anything of
// the US user, and the residency scan is clean.
func TestNoBodyReadsDifferentlyAtTheGatewayAndARegion(t *testing.T) {
	w := newWorld(t)
	de, us := "de-"+w.app, "us-"+w.app
	w.register(map[string]string{de: "DE", us: "US"})
	later := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	bodies := []struct{ name, method, path, body, code, field string }{
		{"empty topic beside recipients", "POST", "/v1/notifications", `{"type":"transactional","category":"otp","body":"1","recipients":["` + us + `"],"topic":""}`, "conflicting_fields", "topic"},
		{"recipients in another case", "POST", "/v1/notifications", `{"type":"transactional","category":"otp","body":"1","topic":"news","Recipients":["` + us + `"]}`, "unknown_field", "Recipients"},
		{"recipients twice, second in capitals", "POST", "/v1/notifications", `{"type":"transactional","category":"otp","body":"1","recipients":["` + de + `"],"RECIPIENTS":["` + us + `"]}`, "unknown_field", "RECIPIENTS"},
		{"recipients with a Kelvin sign", "POST", "/v1/notifications", "{\"type\":\"transactional\",\"category\":\"otp\",\"body\":\"1\",\"recipients\":[\"" + de + "\"],\"recipients\u212a\":[\"" + us + "\"]}", "unknown_field", "recipients\u212a"},
		{"recipients twice", "POST", "/v1/notifications", `{"type":"transactional","category":"otp","body":"1","recipients":["` + de + `"],"recipients":["` + us + `"]}`, "duplicate_field", "recipients"},
		{"null topic", "POST", "/v1/notifications", `{"type":"transactional","category":"otp","body":"1","recipients":["` + us + `"],"topic":null}`, "invalid_field", "topic"},
		{"empty user id", "POST", "/v1/notifications", `{"type":"transactional","category":"otp","body":"1","recipients":[""]}`, "invalid_field", "recipients[0]"},
		{"NUL in a scheduled body", "POST", "/v1/notifications", `{"type":"social","category":"c","body":"a\u0000b","recipients":["` + de + `"],"send_at":"` + later + `"}`, "invalid_field", "body"},
		{"user_id twice in a read", "POST", "/v1/notifications/read-all", `{"user_id":"` + de + `","user_id":"` + us + `"}`, "duplicate_field", "user_id"},
		{"user_id in another case", "POST", "/v1/notifications/read-all", `{"user_id":"` + de + `","User_id":"` + us + `"}`, "unknown_field", "User_id"},
		{"country in another case", "PUT", "/v1/users/" + de, `{"Country":"US"}`, "unknown_field", "Country"},
		{"NUL in an email", "PUT", "/v1/users/" + de, `{"email":"a\u0000@example.com"}`, "invalid_field", "email"},
		{"NUL in a template", "PUT", "/v1/templates/t1", `{"type":"social","category":"c","content":{"in_app":{"body":"x\u0000"}}}`, "invalid_field", "content.in_app.body"},
		{"unknown device field", "POST", "/v1/users/" + de + "/devices", `{"platform":"ios","token":"` + strings.Repeat("ab", 32) + `","device_id":"d","Device_id":"e"}`, "unknown_field", "Device_id"},
		{"null preferences", "PUT", "/v1/users/" + de + "/preferences", `{"quiet_hours":null}`, "invalid_field", "quiet_hours"},
		{"a body where none is taken", "PUT", "/v1/topics/news/subscribers/" + de, `{"user_id":"` + us + `"}`, "unknown_field", "user_id"},
	}
	for _, b := range bodies {
		code, out, _ := w.call(w.key, b.method, b.path, b.body)
		e, _ := out["error"].(map[string]any)
		if code != http.StatusBadRequest || e["code"] != b.code || e["field"] != b.field {
			t.Errorf("gateway, %s: %d %v, want 400 %s on %q", b.name, code, out, b.code, b.field)
		}
	}

	// Straight to an EU region, as whoever holds the gateway's certificate and the internal
	// token: the same bodies are refused alike, and a well-formed send naming the US user is
	// refused as not resident.
	direct := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, w.eu1.Base+path, strings.NewReader(body))
		req.Header.Set("X-Herald-App", w.app)
		req.Header.Set("Authorization", "Bearer region-secret")
		req.Header.Set("Content-Type", "application/json")
		resp, err := w.eu1.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	for _, b := range bodies {
		if b.path == "/v1/users/"+de || strings.Contains(b.path, "/subscribers/") {
			continue // the gateway's own shapes (country) and routes the region reads differently
		}
		if code, raw := direct(b.method, b.path, b.body); code != http.StatusBadRequest || !strings.Contains(raw, `"code":"`+b.code+`"`) {
			t.Errorf("region, %s: %d %s, want 400 %s", b.name, code, raw, b.code)
		}
	}
	for _, b := range []struct{ method, path, body string }{
		{"POST", "/v1/notifications", `{"type":"transactional","category":"otp","body":"1","recipients":["` + us + `"]}`},
		{"POST", "/v1/notifications", `{"type":"transactional","category":"otp","body":"1","recipients":["` + de + `","` + us + `"]}`},
		{"PUT", "/v1/users/" + us, `{"jurisdiction":"US","email":"us@example.com"}`},
		{"PUT", "/v1/users/" + us, `{"jurisdiction":"EU","email":"us@example.com"}`},
	} {
		code, raw := direct(b.method, b.path, b.body)
		if b.body == `{"jurisdiction":"EU","email":"us@example.com"}` {
			// A region cannot know a caller lied about the jurisdiction it names; the gateway
			// never does, and the hop is the internal token's to guard. Undo it for the scan.
			if code/100 != 2 {
				t.Errorf("region, registration naming its own jurisdiction: %d %s", code, raw)
			}
			pg, _ := stores(t, w.eu1)
			if _, err := pg.Exec(t.Context(), `DELETE FROM users WHERE app_id = $1 AND user_id = $2`, w.app, us); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if code != http.StatusForbidden || !strings.Contains(raw, `"code":"not_resident"`) {
			t.Errorf("region, %s %s %s: %d %s, want 403 not_resident", b.method, b.path, b.body, code, raw)
		}
	}

	for _, r := range []struct {
		name string
		got  map[string][]string
	}{{"eu1", usersIn(t, w.eu1, w.app, us)}, {"eu2", usersIn(t, w.eu2, w.app, us)}} {
		if len(r.got[us]) > 0 {
			t.Errorf("the US user is in %s: %v", r.name, r.got[us])
		}
	}
	for _, r := range []string{"eu1", "eu2"} {
		reg := w.eu1
		if r == "eu2" {
			reg = w.eu2
		}
		if got := kafkaMentions(t, reg, us); len(got) > 0 {
			t.Errorf("the US user is in %s's Kafka topics", r)
		}
	}
	if rep := w.scan(); !rep.OK() {
		t.Fatalf("residency scan: %+v", rep.Misplaced)
	}
}

// TestGatewayRefusesAmbiguousRequestsAroundTheBody checks the request hygiene around bodies,
// end to end: a repeated query parameter, a body that is not JSON, a cursor the API did not
// produce, a method the path does not serve, and that an update keeps what it leaves out.
func TestGatewayRefusesAmbiguousRequestsAroundTheBody(t *testing.T) {
	w := newWorld(t)
	de := "de-" + w.app
	w.register(map[string]string{de: "DE"})
	raw := func(method, path, ctype, body string) (int, map[string]any, http.Header) {
		req, _ := http.NewRequest(method, w.gw+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+w.key)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out := map[string]any{}
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &out); err != nil && len(b) > 0 {
			t.Fatalf("%s %s: not JSON (%d): %s", method, path, resp.StatusCode, b)
		}
		return resp.StatusCode, out, resp.Header
	}
	cases := []struct {
		name, method, path, ctype, body string
		status                          int
		code, field                     string
	}{
		{"a repeated limit", "GET", "/v1/users/" + de + "/notifications?limit=1&limit=500", "", "", 400, "invalid_field", "limit"},
		{"an empty cursor", "GET", "/v1/users/" + de + "/notifications?cursor=", "", "", 400, "invalid_field", "cursor"},
		{"a cursor never issued", "GET", "/v1/users/" + de + "/notifications?cursor=bm90LWEtY3Vyc29y", "", "", 400, "invalid_field", "cursor"},
		{"a form body", "PUT", "/v1/users/" + de, "application/x-www-form-urlencoded", `{"country":"DE"}`, 415, "unsupported_media_type", "Content-Type"},
		{"a body without a type", "POST", "/v1/notifications", "", `{"type":"social"}`, 415, "unsupported_media_type", "Content-Type"},
		{"a method the path does not serve", "DELETE", "/v1/regions", "", "", 405, "method_not_allowed", ""},
		{"a user id of two dots", "GET", "/v1/users/%2E%2E/preferences", "", "", 400, "invalid_field", "user_id"},
	}
	for _, c := range cases {
		code, out, h := raw(c.method, c.path, c.ctype, c.body)
		e, _ := out["error"].(map[string]any)
		if code != c.status || e["code"] != c.code || c.field != "" && e["field"] != c.field {
			t.Errorf("%s: %d %v, want %d %s on %q", c.name, code, out, c.status, c.code, c.field)
		}
		if c.status == 405 && h.Get("Allow") != "GET" {
			t.Errorf("%s: Allow %q, want GET", c.name, h.Get("Allow"))
		}
	}
	// The README's own example: registering the country again keeps the email.
	w.must(http.StatusOK, "PUT", "/v1/users/"+de, map[string]any{"country": "DE"})
	if got := w.must(http.StatusOK, "GET", "/v1/users/"+de, nil); got["email"] != de+"@example.com" {
		t.Fatalf("an update with only a country wiped the email: %v", got)
	}
	w.must(http.StatusOK, "PUT", "/v1/users/"+de, map[string]any{"email": ""})
	if got := w.must(http.StatusOK, "GET", "/v1/users/"+de, nil); got["email"] != nil && got["email"] != "" {
		t.Fatalf("an empty email did not remove it: %v", got)
	}
}
