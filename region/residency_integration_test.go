//go:build integration

package region_test

import (
	"bufio"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/notify"
)

// residencyRefusals reads herald_region_residency_refusals_total for the region from its own
// /metrics, summed over routes.
func (r *running) residencyRefusals() float64 {
	r.t.Helper()
	resp, err := testenv.RegionClient(r.t).Get(r.base + "/metrics")
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "herald_region_residency_refusals_total{") && strings.Contains(line, `region="`+r.cfg.Name+`"`) {
			v, _ := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
			sum += v
		}
	}
	return sum
}

func (r *running) count(query string, args ...any) int {
	r.t.Helper()
	var n int
	if err := r.pg.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		r.t.Fatal(err)
	}
	return n
}

// TestRegionRefusesCountsAndAuditsAnyoneNotResidentInItsJurisdiction sends to an EU region,
// directly (no gateway), everything a hostile caller could: the bypass bodies that once put a
// US user's notification into EU stores, and every write about a user the region does not
// hold as a resident of its jurisdiction. Each is refused, counted and audited, and nothing of
// the user is stored anywhere in the region.
func TestRegionRefusesCountsAndAuditsAnyoneNotResidentInItsJurisdiction(t *testing.T) {
	r := startRegion(t)
	const us = "us-user-1"
	r.admit(r.app, "eu-user-1")
	before := r.residencyRefusals()
	send := func(body string) (int, map[string]any) {
		return r.rawCall("POST", "/v1/notifications", body, r.app)
	}

	// The two bypass shapes: refused as bodies, before any residency question.
	for _, tc := range []struct{ body, code string }{
		{`{"type":"transactional","category":"otp","body":"1","recipients":["` + us + `"],"topic":""}`, "conflicting_fields"},
		{`{"type":"transactional","category":"otp","body":"1","topic":"news","Recipients":["` + us + `"]}`, "unknown_field"},
		{`{"type":"transactional","category":"otp","body":"1","recipients":["eu-user-1"],"recipientS":["` + us + `"]}`, "unknown_field"},
		{`{"type":"transactional","category":"otp","body":"1","recipients":["eu-user-1"],"recipients":["` + us + `"]}`, "duplicate_field"},
	} {
		code, out := send(tc.body)
		if e, _ := out["error"].(map[string]any); code != 400 || e["code"] != tc.code {
			t.Errorf("%s: %d %v, want 400 %s", tc.body, code, out, tc.code)
		}
	}

	// Well-formed requests about a user who is not a resident here.
	refusals := []struct {
		method, path, body, field string
	}{
		{"POST", "/v1/notifications", `{"type":"transactional","category":"otp","body":"1","recipients":["` + us + `"]}`, "recipients[0]"},
		{"POST", "/v1/notifications", `{"type":"transactional","category":"otp","body":"1","recipients":["eu-user-1","` + us + `"]}`, "recipients[1]"},
		{"POST", "/v1/notifications", `{"type":"social","category":"c","body":"later","recipients":["` + us + `"],"send_at":"` + time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339) + `"}`, "recipients[0]"},
		{"PUT", "/v1/users/" + us, `{"jurisdiction":"US","email":"bob@example.com","phone":"+12025550123"}`, "jurisdiction"},
		{"POST", "/v1/users/" + us + "/devices", `{"platform":"ios","token":"` + strings.Repeat("ab", 32) + `","device_id":"d1"}`, "user_id"},
		{"PUT", "/v1/users/" + us + "/preferences", `{"hard_stop":false}`, "user_id"},
		{"PUT", "/v1/topics/news/subscribers/" + us, ``, "user_id"},
		{"POST", "/v1/notifications/read-all", `{"user_id":"` + us + `"}`, "user_id"},
	}
	for _, tc := range refusals {
		code, out := r.rawCall(tc.method, tc.path, tc.body, r.app)
		e, _ := out["error"].(map[string]any)
		if code != 403 || e["code"] != "not_resident" || e["field"] != tc.field {
			t.Errorf("%s %s %s: %d %v, want 403 not_resident on %s", tc.method, tc.path, tc.body, code, out, tc.field)
		}
	}
	if got := r.residencyRefusals() - before; got != float64(len(refusals)) {
		t.Errorf("herald_region_residency_refusals_total rose by %v, want %d", got, len(refusals))
	}
	if n := r.count(`SELECT count(*) FROM audit_log WHERE app_id = $1 AND reason = 'refused-not-resident' AND region = $2`, r.app, r.cfg.Name); n != len(refusals) {
		t.Errorf("%d refusals in the audit chain, want %d", n, len(refusals))
	}

	// Nothing of the user anywhere: Postgres, Kafka (no event accepted at all), Cassandra.
	for _, table := range []string{"users", "devices", "preferences", "topic_subscriptions"} {
		if n := r.count(`SELECT count(*) FROM `+table+` WHERE user_id = $1`, us); n != 0 {
			t.Errorf("%s holds %d rows of %s", table, n, us)
		}
	}
	for _, tier := range notify.Tiers {
		if n := r.topicCount(notify.IngressTopic(r.cfg.Name, tier)); n != 0 {
			t.Errorf("%s has %d events", notify.IngressTopic(r.cfg.Name, tier), n)
		}
	}
	var inbox int
	if err := r.cass.Query(`SELECT count(*) FROM notification_log WHERE app_id = ? AND user_id = ? ALLOW FILTERING`, r.app, us).Scan(&inbox); err != nil {
		t.Fatal(err)
	}
	if inbox != 0 {
		t.Errorf("the inbox holds %d items of %s", inbox, us)
	}

	// A resident of the region's own jurisdiction is served as before.
	code, out := send(`{"type":"transactional","category":"otp","body":"1","recipients":["eu-user-1"]}`)
	if code != 202 {
		t.Fatalf("send to a resident: %d %v", code, out)
	}
	code, out = r.rawCall("PUT", "/v1/users/eu-user-2", `{"jurisdiction":"EU","email":"ada@example.com"}`, r.app)
	if code != 201 {
		t.Fatalf("registering a resident: %d %v", code, out)
	}
	// An update that omits a field keeps it.
	code, out = r.rawCall("PUT", "/v1/users/eu-user-2", `{"jurisdiction":"EU","phone":"+4915112345678"}`, r.app)
	if code != 200 || out["email"] != "ada@example.com" || out["phone"] != "+4915112345678" {
		t.Fatalf("partial update: %d %v", code, out)
	}
	code, out = r.rawCall("PUT", "/v1/users/eu-user-2", `{"jurisdiction":"EU","email":""}`, r.app)
	if code != 200 || out["email"] != "" || out["phone"] != "+4915112345678" {
		t.Fatalf("removing the email: %d %v", code, out)
	}
}
