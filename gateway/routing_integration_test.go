//go:build integration

package gateway_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/platform/testenv"
)

// register puts users with their countries and checks the home region the gateway chose.
func (w *world) register(users map[string]string) map[string]string {
	w.t.Helper()
	homes := map[string]string{}
	for u, country := range users {
		out := w.must(http.StatusCreated, "PUT", "/v1/users/"+u, map[string]any{"country": country, "email": u + "@example.com"})
		homes[u], _ = out["home_region"].(string)
	}
	return homes
}

func TestUsersLiveOnlyInTheirHomeRegionAndMixedSendsAreSplit(t *testing.T) {
	w := newWorld(t)
	de, fr, us := "de-"+w.app, "fr-"+w.app, "us-"+w.app
	homes := w.register(map[string]string{de: "DE", fr: "FR", us: "US"})
	if homes[de] != w.eu1.Cfg.Name || homes[fr] != w.eu1.Cfg.Name || homes[us] != w.us1.Cfg.Name {
		t.Fatalf("home regions %v", homes)
	}
	// Registering again is an update (200), and the answer names where the user lives.
	out := w.must(http.StatusOK, "PUT", "/v1/users/"+de, map[string]any{"country": "DE", "locale": "de-DE"})
	if out["jurisdiction"] != "EU" || out["home_region"] != w.eu1.Cfg.Name || out["locale"] != "de-DE" {
		t.Fatalf("re-register: %v", out)
	}
	// Another jurisdiction for the same user is a conflict, not a silent move.
	if code, out, _ := w.call(w.key, "PUT", "/v1/users/"+de, map[string]any{"country": "US"}); code != http.StatusConflict || errorCode(out) != "jurisdiction_conflict" {
		t.Fatalf("moving a user: %d %v", code, out)
	}
	got := w.must(http.StatusOK, "GET", "/v1/users/"+fr, nil)
	if got["country"] != "FR" || got["email"] != fr+"@example.com" {
		t.Fatalf("GET user: %v", got)
	}

	for _, u := range []string{de, fr, us} {
		w.must(http.StatusCreated, "POST", "/v1/users/"+u+"/devices", map[string]any{"platform": "ios", "token": fmt.Sprintf("%064x", len(u)*7919+int(u[0])), "device_id": "d-" + u})
		w.must(http.StatusOK, "PUT", "/v1/users/"+u+"/preferences", map[string]any{"timezone": "Europe/Berlin", "hard_stop": false})
	}
	send := w.must(http.StatusAccepted, "POST", "/v1/notifications", map[string]any{
		"type": "transactional", "category": "otp", "title": "Code", "body": "123456",
		"recipients": []string{de, us, fr}, "channels": []string{"in_app"},
	})
	parts, _ := send["parts"].([]any)
	if len(parts) != 2 {
		t.Fatalf("a send to EU and US users must be split in two parts: %v", send)
	}
	byRegion := map[string]float64{}
	for _, p := range parts {
		m := p.(map[string]any)
		byRegion[m["region"].(string)] = m["recipients"].(float64)
	}
	if byRegion[w.eu1.Cfg.Name] != 2 || byRegion[w.us1.Cfg.Name] != 1 {
		t.Fatalf("parts by region: %v", byRegion)
	}
	for _, u := range []string{de, fr, us} {
		poll.Until(t, 30*time.Second, func() error {
			_, out, _ := w.call(w.key, "GET", "/v1/users/"+u+"/notifications", nil)
			if items, _ := out["items"].([]any); len(items) != 1 {
				return fmt.Errorf("%s inbox: %v", u, out)
			}
			return nil
		})
	}
	// The status of the whole send lists both parts; a part's own id answers that part.
	st := w.must(http.StatusOK, "GET", "/v1/notifications/"+send["notification_id"].(string)+"/status", nil)
	if sp, _ := st["parts"].([]any); len(sp) != 2 {
		t.Fatalf("status of the whole send: %v", st)
	}
	partID := parts[0].(map[string]any)["notification_id"].(string)
	w.must(http.StatusOK, "GET", "/v1/notifications/"+partID+"/status", nil)

	// Store by store: each user's rows exist in the home region only.
	eu := usersIn(t, w.eu1, w.app, de, fr, us)
	usr := usersIn(t, w.us1, w.app, de, fr, us)
	eu2 := usersIn(t, w.eu2, w.app, de, fr, us)
	for _, u := range []string{de, fr} {
		if len(eu[u]) != 4 {
			t.Errorf("%s in its home region: %v, want users, devices, preferences and the inbox", u, eu[u])
		}
		// The jurisdiction's other region shares the stores (so it serves a failover with
		// everything), and no region of another jurisdiction holds anything.
		if len(usr[u]) > 0 || !slices.Equal(eu2[u], eu[u]) {
			t.Errorf("%s outside its home region: us %v, eu2 %v (want eu2 to see what eu1 holds, %v)", u, usr[u], eu2[u], eu[u])
		}
	}
	if len(usr[us]) != 4 || len(eu[us]) > 0 || len(eu2[us]) > 0 {
		t.Errorf("%s: home %v, eu %v, eu2 %v", us, usr[us], eu[us], eu2[us])
	}
	// Kafka: each region's topics carry only its own users.
	if got := kafkaMentions(t, w.us1, de, fr); len(got) > 0 {
		t.Errorf("EU users %v in the US region's Kafka topics", got)
	}
	if got := kafkaMentions(t, w.eu1, us); len(got) > 0 {
		t.Errorf("US user %v in an EU region's Kafka topics", got)
	}
	if got := kafkaMentions(t, w.eu1, de, fr); len(got) != 2 {
		t.Errorf("the EU region's topics should carry its users, found %v", got)
	}

	// The residency scan agrees: nothing outside its jurisdiction; then a row planted in the
	// US region's Postgres for an EU user makes it fail, naming the store.
	if rep := w.scan(); !rep.OK() {
		t.Fatalf("residency scan after routed traffic: %+v", rep.Misplaced)
	}
	usPG, _ := stores(t, w.us1)
	if _, err := usPG.Exec(t.Context(), `INSERT INTO users (app_id, user_id, email) VALUES ($1, $2, 'x@example.com')`, w.app, de); err != nil {
		t.Fatal(err)
	}
	rep := w.scan()
	if rep.OK() || len(rep.Misplaced) != 1 || rep.Misplaced[0].Store != "postgres:users" || rep.Misplaced[0].User != de || rep.Misplaced[0].Region != w.us1.Cfg.Name {
		t.Fatalf("planted row: %+v", rep.Misplaced)
	}

	// An unknown user is a 404 naming the user, never a guess.
	code, out2, _ := w.call(w.key, "POST", "/v1/notifications", map[string]any{"type": "transactional", "category": "otp", "title": "x", "body": "y", "recipients": []string{de, "nobody"}})
	if code != http.StatusNotFound || errorCode(out2) != "unknown_user" || out2["error"].(map[string]any)["field"] != "recipients[1]" {
		t.Fatalf("unknown recipient: %d %v", code, out2)
	}
	if code, out, _ := w.call(w.key, "GET", "/v1/users/nobody/notifications", nil); code != http.StatusNotFound || !strings.Contains(fmt.Sprint(out), "nobody") {
		t.Fatalf("unknown user: %d %v", code, out)
	}
}

func TestFailoverStaysInsideTheJurisdiction(t *testing.T) {
	w := newWorld(t)
	de, us := "de-"+w.app, "us-"+w.app
	w.register(map[string]string{de: "DE", us: "US"})

	// eu1 goes away (it deregisters from discovery as it stops): EU users fail over to eu2.
	w.eu1.Stop()
	poll.Until(t, 15*time.Second, func() error {
		code, out, _ := w.call(w.key, "GET", "/v1/users/"+de+"/notifications/unread-count", nil)
		if code != http.StatusOK {
			return fmt.Errorf("%d %v", code, out)
		}
		return nil
	})
	out := w.must(http.StatusAccepted, "POST", "/v1/notifications", map[string]any{
		"type": "transactional", "category": "otp", "title": "Code", "body": "1", "recipients": []string{de}, "channels": []string{"in_app"}})
	if p := out["parts"].([]any)[0].(map[string]any); p["region"] != w.eu2.Cfg.Name {
		t.Fatalf("failover part went to %v, want %s", p["region"], w.eu2.Cfg.Name)
	}
	// US users are unaffected.
	w.must(http.StatusOK, "GET", "/v1/users/"+us+"/notifications/unread-count", nil)

	// Both EU regions down: 503 with Retry-After, and nothing reaches the US region.
	w.eu2.Stop()
	poll.Until(t, 15*time.Second, func() error {
		code, out, h := w.call(w.key, "POST", "/v1/notifications", map[string]any{
			"type": "transactional", "category": "otp", "title": "Code", "body": "2", "recipients": []string{de}})
		if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || errorCode(out) != "region_unavailable" {
			return fmt.Errorf("%d %v", code, out)
		}
		return nil
	})
	if code, _, _ := w.call(w.key, "PUT", "/v1/users/"+de+"/preferences", map[string]any{"hard_stop": true}); code != http.StatusServiceUnavailable {
		t.Fatalf("preferences with no EU region: %d", code)
	}
	if found := usersIn(t, w.us1, w.app, de); len(found[de]) > 0 {
		t.Fatalf("EU user's data reached the US region: %v", found)
	}
	if got := kafkaMentions(t, w.us1, de); len(got) > 0 {
		t.Fatal("EU user in the US region's Kafka topics")
	}
	w.must(http.StatusOK, "GET", "/v1/users/"+us+"/notifications/unread-count", nil)

	// eu1 back: EU users go home again.
	w.eu1.Start()
	poll.Until(t, 15*time.Second, func() error {
		code, out, _ := w.call(w.key, "GET", "/v1/users/"+de, nil)
		if code != http.StatusOK || out["served_by"] != w.eu1.Cfg.Name {
			return fmt.Errorf("%d %v", code, out)
		}
		return nil
	})
	// The decisions taken while the home region was down reached its audit once it was back.
	pg, _ := stores(t, w.eu1)
	poll.Until(t, 15*time.Second, func() error {
		rows, err := pg.Query(t.Context(), `SELECT DISTINCT reason FROM audit_log WHERE app_id = $1 ORDER BY reason`, w.app)
		if err != nil {
			return err
		}
		reasons, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		want := []string{"failover-from-" + w.eu1.Cfg.Name, "home", "refused"}
		if fmt.Sprint(reasons) != fmt.Sprint(want) {
			return fmt.Errorf("audit reasons %v, want %v", reasons, want)
		}
		return nil
	})
}

func TestPolicyChangesApplyLiveAndInvalidOnesAreRefused(t *testing.T) {
	w := newWorld(t)
	// NO is not in the EU of version 1.
	if code, out, _ := w.call(w.key, "PUT", "/v1/users/no-1", map[string]any{"country": "NO"}); code != http.StatusBadRequest || errorCode(out) != "unsupported_country" {
		t.Fatalf("NO before the change: %d %v", code, out)
	}
	w.putPolicy(2, ", NO")
	poll.Until(t, 10*time.Second, func() error {
		if code, out, _ := w.call(w.key, "PUT", "/v1/users/no-1", map[string]any{"country": "NO"}); code != http.StatusCreated {
			return fmt.Errorf("%d %v", code, out)
		}
		return nil
	})
	// Version 3 puts a US country in the EU too: invalid, refused whole, logged.
	w.putPolicy(3, ", NO, US")
	poll.Until(t, 10*time.Second, func() error {
		if !strings.Contains(w.log.String(), "outcome=invalid") {
			return fmt.Errorf("no refusal logged yet")
		}
		return nil
	})
	if v := w.must(http.StatusOK, "GET", "/v1/regions", nil)["policy_version"]; v != float64(2) {
		t.Fatalf("policy in force: %v, want 2", v)
	}
	// A no-transit jurisdiction served elsewhere is redirected, registration included.
	code, out, h := w.call(w.key, "PUT", "/v1/users/in-1", map[string]any{"country": "IN"})
	if code != http.StatusTemporaryRedirect || h.Get("Location") != "http://in-gateway.invalid/v1/users/in-1" {
		t.Fatalf("IN user: %d %v %v", code, out, h)
	}
}

func TestKeysAndRateLimits(t *testing.T) {
	w := newWorld(t)
	if code, out, _ := w.call("", "GET", "/v1/regions", nil); code != http.StatusUnauthorized || errorCode(out) != "unauthenticated" {
		t.Fatalf("no key: %d %v", code, out)
	}
	if code, out, _ := w.call("hk_nope_nope", "GET", "/v1/regions", nil); code != http.StatusUnauthorized {
		t.Fatalf("bad key: %d %v", code, out)
	}
	key, k, err := w.keys.Create(t.Context(), w.app, "revoke-me", nil)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := w.call(key, "GET", "/v1/regions", nil); code != http.StatusOK {
		t.Fatalf("new key: %d", code)
	}
	if err := w.keys.Revoke(t.Context(), k.ID); err != nil {
		t.Fatal(err)
	}
	// A revocation applies within the key cache's TTL (2 s).
	poll.Until(t, 5*time.Second, func() error {
		if code, out, _ := w.call(key, "GET", "/v1/regions", nil); code != http.StatusUnauthorized || errorCode(out) != "invalid_api_key" {
			return fmt.Errorf("revoked key: %d %v", code, out)
		}
		return nil
	})

	// 1,000 requests a minute pass; the 1,001st is refused with Retry-After.
	limited, _, err := w.keys.Create(t.Context(), w.app, "limited", nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < 1000; i++ {
		if code, out, _ := w.call(limited, "GET", "/v1/regions", nil); code != http.StatusOK {
			t.Fatalf("request %d: %d %v", i+1, code, out)
		}
	}
	if time.Since(start) > 50*time.Second {
		t.Fatalf("1,000 requests took %v, over 50 s: the 1,001st would fall in the next minute and prove nothing", time.Since(start))
	}
	code, out, h := w.call(limited, "GET", "/v1/regions", nil)
	if code != http.StatusTooManyRequests || errorCode(out) != "rate_limited" || h.Get("Retry-After") == "" {
		t.Fatalf("1,001st request: %d %v %v", code, out, h)
	}
	if h.Get("X-Request-Id") == "" {
		t.Fatal("no request id on the answer")
	}
	// Other keys are not affected.
	w.must(http.StatusOK, "GET", "/v1/regions", nil)
}

func TestAnAppNeverReachesAnotherAppsUsers(t *testing.T) {
	w := newWorld(t)
	u := "u-" + w.app
	w.register(map[string]string{u: "DE"})
	send := w.must(http.StatusAccepted, "POST", "/v1/notifications", map[string]any{
		"type": "transactional", "category": "otp", "title": "x", "body": "y", "recipients": []string{u}, "channels": []string{"in_app"}})
	w.must(http.StatusCreated, "PUT", "/v1/templates/t1", map[string]any{"type": "transactional", "category": "otp", "content": map[string]any{"in_app": map[string]any{"title": "Hi", "body": "there"}}})

	cases := []struct {
		method, path string
		body         any
		want         int
	}{
		{"GET", "/v1/users/" + u, nil, http.StatusNotFound},
		{"GET", "/v1/users/" + u + "/notifications", nil, http.StatusNotFound},
		{"GET", "/v1/users/" + u + "/devices", nil, http.StatusNotFound},
		{"PUT", "/v1/users/" + u + "/preferences", map[string]any{"hard_stop": true}, http.StatusNotFound},
		{"DELETE", "/v1/users/" + u, nil, http.StatusNotFound},
		{"POST", "/v1/notifications", map[string]any{"type": "transactional", "category": "otp", "title": "x", "body": "y", "recipients": []string{u}}, http.StatusNotFound},
		{"POST", "/v1/notifications/read-all", map[string]any{"user_id": u}, http.StatusNotFound},
		{"GET", "/v1/notifications/" + send["notification_id"].(string) + "/status", nil, http.StatusNotFound},
		{"GET", "/v1/templates/t1", nil, http.StatusNotFound},
	}
	for _, c := range cases {
		if code, out, _ := w.call(w.otherKey, c.method, c.path, c.body); code != c.want {
			t.Errorf("other app %s %s: %d %v, want %d", c.method, c.path, code, out, c.want)
		}
	}
	// The owner still sees everything.
	w.must(http.StatusOK, "GET", "/v1/users/"+u, nil)
	w.must(http.StatusOK, "GET", "/v1/templates/t1", nil)
}

func TestTemplatesReachEveryRegionIncludingOneThatWasDown(t *testing.T) {
	w := newWorld(t)
	w.us1.Stop()
	poll.Until(t, 10*time.Second, func() error {
		for _, st := range w.must(http.StatusOK, "GET", "/v1/regions", nil)["regions"].([]any) {
			m := st.(map[string]any)
			if m["region"] == w.us1.Cfg.Name && m["healthy"] == true {
				return fmt.Errorf("us1 still healthy")
			}
		}
		return nil
	})
	w.must(http.StatusCreated, "PUT", "/v1/templates/welcome", map[string]any{"type": "social", "category": "welcome", "content": map[string]any{"in_app": map[string]any{"title": "Hi {{.name}}", "body": "Welcome"}}})
	for _, r := range []string{w.eu1.Base, w.eu2.Base} {
		if code := regionGet(t, r, w.app, "/v1/templates/welcome"); code != http.StatusOK {
			t.Fatalf("template in %s: %d", r, code)
		}
	}
	w.us1.Start()
	poll.Until(t, 20*time.Second, func() error {
		if code := regionGet(t, w.us1.Base, w.app, "/v1/templates/welcome"); code != http.StatusOK {
			return fmt.Errorf("us1 has no template yet (%d)", code)
		}
		return nil
	})
	// A bad template is refused once, and stored nowhere.
	if code, _, _ := w.call(w.key, "PUT", "/v1/templates/bad", map[string]any{"type": "nope"}); code != http.StatusBadRequest {
		t.Fatalf("bad template: %d", code)
	}
	for _, r := range []string{w.eu1.Base, w.eu2.Base, w.us1.Base} {
		if code := regionGet(t, r, w.app, "/v1/templates/bad"); code != http.StatusNotFound {
			t.Fatalf("bad template in %s: %d", r, code)
		}
	}
	w.must(http.StatusNoContent, "DELETE", "/v1/templates/welcome", nil)
	for _, r := range []string{w.eu1.Base, w.eu2.Base, w.us1.Base} {
		if code := regionGet(t, r, w.app, "/v1/templates/welcome"); code != http.StatusNotFound {
			t.Fatalf("deleted template still in %s: %d", r, code)
		}
	}
}

func regionGet(t *testing.T, base, app, path string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", base+path, nil)
	req.Header.Set("X-Herald-App", app)
	req.Header.Set("Authorization", "Bearer region-secret")
	resp, err := testenv.RegionClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestTopicSendsGoToEveryRegionWithSubscribers(t *testing.T) {
	w := newWorld(t)
	de, us := "de-"+w.app, "us-"+w.app
	w.register(map[string]string{de: "DE", us: "US"})
	for _, u := range []string{de, us} {
		if code, out, _ := w.call(w.key, "PUT", "/v1/topics/news/subscribers/"+u, nil); code/100 != 2 {
			t.Fatalf("subscribe %s: %d %v", u, code, out)
		}
	}
	info := w.must(http.StatusOK, "GET", "/v1/topics/news", nil)
	if info["subscribers"] != float64(2) {
		t.Fatalf("topic info: %v", info)
	}
	send := w.must(http.StatusAccepted, "POST", "/v1/notifications", map[string]any{
		"type": "social", "category": "news", "title": "Hello", "body": "all", "topic": "news", "channels": []string{"in_app"}})
	var regions []string
	for _, p := range send["parts"].([]any) {
		regions = append(regions, p.(map[string]any)["region"].(string))
	}
	if fmt.Sprint(regions) != fmt.Sprint([]string{w.eu1.Cfg.Name, w.us1.Cfg.Name}) {
		t.Fatalf("topic send parts %v: want the two regions with subscribers, not %s", regions, w.eu2.Cfg.Name)
	}
	for _, u := range []string{de, us} {
		poll.Until(t, 30*time.Second, func() error {
			_, out, _ := w.call(w.key, "GET", "/v1/users/"+u+"/notifications", nil)
			if items, _ := out["items"].([]any); len(items) != 1 {
				return fmt.Errorf("%s inbox: %v", u, out)
			}
			return nil
		})
	}
	// The status of the whole topic send answers for both parts.
	st := w.must(http.StatusOK, "GET", "/v1/notifications/"+send["notification_id"].(string)+"/status", nil)
	if len(st["parts"].([]any)) != 2 {
		t.Fatalf("status: %v", st)
	}
}
