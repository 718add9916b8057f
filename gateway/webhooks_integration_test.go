//go:build integration

package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/sim"
)

// fastWebhooks gives every region a retry schedule of seconds: the 24 h horizon is config.
func fastWebhooks(_ int, c *region.Config) {
	c.Webhooks.AllowLoopbackHTTP = true
	c.Webhooks.InitialInterval, c.Webhooks.MaxInterval, c.Webhooks.Jitter = 100*time.Millisecond, 400*time.Millisecond, 0
	c.Webhooks.PollInterval = 50 * time.Millisecond
	c.Webhooks.Horizon = 20 * time.Second
	c.Webhooks.Breaker.ConsecutiveFailures, c.Webhooks.Breaker.OpenFor = 3, 300*time.Millisecond
	c.Webhooks.Timeout = time.Second
	c.Webhooks.EndpointCacheTTL = 0
}

// hookEndpoint registers an endpoint of the app in jurisdiction j pointing at the simulator's
// receiver under name, and gives the receiver its secret.
func (w *world) hookEndpoint(s *sim.Sim, j, name string, body map[string]any) string {
	w.t.Helper()
	if body == nil {
		body = map[string]any{}
	}
	body["url"] = s.Info().Webhook.URL + "/hooks/" + name
	out := w.must(http.StatusCreated, "POST", "/v1/jurisdictions/"+j+"/webhooks/endpoints", body)
	secret, _ := out["secret"].(string)
	id, _ := out["id"].(string)
	if !strings.HasPrefix(secret, "whsec_") || id == "" || out["jurisdiction"] != j {
		w.t.Fatalf("endpoint %v", out)
	}
	req, _ := http.NewRequest(http.MethodPut, s.Info().Admin+"/sim/webhook/secrets/"+name, strings.NewReader(`{"secret": "`+secret+`"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		w.t.Fatalf("giving the receiver its secret: %v %v", err, resp)
	}
	resp.Body.Close()
	return id
}

// hook is one message the receiver got.
type hook struct {
	id, typ, channel, user, notification, reason string
	status                                       int
	verified                                     bool
}

func hooks(t *testing.T, s *sim.Sim, name string) []hook {
	t.Helper()
	var out []hook
	for _, r := range regiontest.SimRecords(t, s, "webhook", name) {
		var p struct {
			Type string
			Data struct {
				NotificationID string `json:"notification_id"`
				UserID         string `json:"user_id"`
				Channel        string
				Reason         string
			}
		}
		_ = json.Unmarshal(r.Payload, &p)
		out = append(out, hook{id: r.Headers["webhook-id"], typ: p.Type, channel: p.Data.Channel, user: p.Data.UserID,
			notification: p.Data.NotificationID, reason: p.Data.Reason, status: r.Status, verified: r.Headers["verified"] == "true"})
	}
	return out
}

// delivered is the messages the receiver accepted (204, signature verified), as "type/channel"
// per notification, failing the test on a webhook-id accepted twice.
func delivered(t *testing.T, hs []hook, notification string) []string {
	t.Helper()
	seen := map[string]bool{}
	var out []string
	for _, h := range hs {
		if h.status != http.StatusNoContent {
			continue
		}
		if !h.verified {
			t.Fatalf("accepted without a verified signature: %+v", h)
		}
		if seen[h.id] {
			t.Fatalf("webhook-id %s delivered twice", h.id)
		}
		seen[h.id] = true
		if h.notification == notification {
			out = append(out, h.typ+"/"+h.channel)
		}
	}
	sort.Strings(out)
	return out
}

func setHookFaults(t *testing.T, s *sim.Sim, faults string) {
	t.Helper()
	method := http.MethodPut
	if faults == "" {
		method = http.MethodDelete
	}
	req, _ := http.NewRequest(method, s.Info().Admin+"/sim/webhook/faults", bytes.NewBufferString(faults))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode/100 != 2 {
		t.Fatalf("setting faults %q: %v %v", faults, err, resp)
	}
	resp.Body.Close()
}

// TestWebhooksReachOnlyTheJurisdictionsEndpointSignedAndOnceAfterAnOutage: through the gateway,
// an EU endpoint receives the events of an EU user's send, each signed (the simulator verifies
// with the Standard Webhooks library); the app's US endpoint receives none of them, and the EU
// endpoint none of a US user's; an endpoint that fails for a while (the simulator's outage)
// then recovers receives every event once it is back, none twice by webhook-id.
func TestWebhooksReachOnlyTheJurisdictionsEndpointSignedAndOnceAfterAnOutage(t *testing.T) {
	w := newWorld(t, fastWebhooks)
	s, _ := regiontest.StartSim(t, 1)
	suffix := testenv.Suffix()
	euHook, usHook := "eu-"+suffix, "us-"+suffix
	euID := w.hookEndpoint(s, "EU", euHook, nil)
	w.hookEndpoint(s, "US", usHook, nil)

	// Listed per jurisdiction; another app sees none of them.
	list := w.must(http.StatusOK, "GET", "/v1/jurisdictions/EU/webhooks/endpoints", nil)
	if eps, _ := list["endpoints"].([]any); len(eps) != 1 || eps[0].(map[string]any)["id"] != euID || eps[0].(map[string]any)["secret"] != nil {
		t.Fatalf("EU endpoints: %v", list)
	}
	if code, out, _ := w.call(w.otherKey, "GET", "/v1/jurisdictions/EU/webhooks/endpoints/"+euID, nil); code != http.StatusNotFound {
		t.Fatalf("another app read the endpoint: %d %v", code, out)
	}
	if code, out, _ := w.call(w.key, "GET", "/v1/jurisdictions/XX/webhooks/endpoints", nil); code != http.StatusNotFound || errorCode(out) != "unknown_jurisdiction" {
		t.Fatalf("unknown jurisdiction: %d %v", code, out)
	}
	if code, out, _ := w.call(w.key, "POST", "/v1/jurisdictions/EU/webhooks/endpoints", map[string]any{"url": "http://example.com/hook"}); code != http.StatusBadRequest || errorCode(out) != "invalid_field" {
		t.Fatalf("plain http to a public host: %d %v", code, out)
	}

	ada, bob := "ada-"+suffix, "bob-"+suffix
	w.must(http.StatusCreated, "PUT", "/v1/users/"+ada, map[string]any{"country": "DE"})
	w.must(http.StatusCreated, "PUT", "/v1/users/"+bob, map[string]any{"country": "US"})
	send := func(user string) string {
		out := w.must(http.StatusAccepted, "POST", "/v1/notifications", map[string]any{
			"type": "transactional", "category": "otp", "title": "Code", "body": "123456",
			"recipients": []string{user}, "channels": []string{"in_app", "email"},
		})
		id, _ := out["notification_id"].(string)
		return id
	}
	// in_app delivered at once, email suppressed (no address), then read.
	want := []string{"notification.accepted/all", "notification.delivered/in_app", "notification.read/in_app", "notification.suppressed/email"}
	readAll := func(user string) {
		poll.Until(t, 30*time.Second, func() error {
			code, out, _ := w.call(w.key, "POST", "/v1/notifications/read-all", map[string]any{"user_id": user})
			if code != http.StatusOK || out["marked"] != float64(1) {
				return fmt.Errorf("read-all: %d %v", code, out)
			}
			return nil
		})
	}

	n1 := send(ada)
	readAll(ada)
	nBob := send(bob)
	readAll(bob)
	poll.Until(t, 30*time.Second, func() error {
		if got := delivered(t, hooks(t, s, euHook), n1); !slices.Equal(got, want) {
			return fmt.Errorf("EU endpoint got %v of %s, want %v", got, n1, want)
		}
		if got := delivered(t, hooks(t, s, usHook), nBob); !slices.Equal(got, want) {
			return fmt.Errorf("US endpoint got %v of %s, want %v", got, nBob, want)
		}
		return nil
	})
	for _, h := range hooks(t, s, euHook) {
		if h.user != ada || h.notification != n1 {
			t.Fatalf("the EU endpoint got an event of another user or send: %+v", h)
		}
		if h.typ == "notification.suppressed" && h.reason != "no_address" {
			t.Fatalf("suppressed without its reason: %+v", h)
		}
	}
	for _, h := range hooks(t, s, usHook) {
		if h.user == ada || h.notification == n1 {
			t.Fatalf("the US endpoint got an EU user's event: %+v", h)
		}
	}

	// The EU endpoint fails for a while (an outage: every call 503), then recovers.
	setHookFaults(t, s, `{"outage_seconds": 3}`)
	outageEnds := time.Now().Add(3 * time.Second)
	n2 := send(ada)
	readAll(ada)
	poll.Until(t, 20*time.Second, func() error {
		failed := 0
		for _, h := range hooks(t, s, euHook) {
			if h.notification == n2 && h.status == http.StatusServiceUnavailable {
				failed++
			}
		}
		if failed < 3 {
			return fmt.Errorf("%d failed attempts so far", failed)
		}
		return nil
	})
	if got := delivered(t, hooks(t, s, euHook), n2); len(got) != 0 && time.Now().Before(outageEnds) {
		t.Fatalf("delivered during the outage: %v", got)
	}
	poll.Until(t, 30*time.Second, func() error {
		if got := delivered(t, hooks(t, s, euHook), n2); !slices.Equal(got, want) {
			return fmt.Errorf("after the outage the EU endpoint got %v of %s, want %v", got, n2, want)
		}
		return nil
	})
	// The pending deliveries, naming their users, are only in each user's jurisdiction's stores.
	pgEU, _ := stores(t, w.eu1)
	pgUS, _ := stores(t, w.us1)
	for _, c := range []struct {
		pg interface {
			QueryRow(context.Context, string, ...any) pgx.Row
		}
		in, notIn, db string
	}{{pgEU, ada, bob, "EU"}, {pgUS, bob, ada, "US"}} {
		var in, out int
		if err := c.pg.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE user_id = $1), count(*) FILTER (WHERE user_id = $2) FROM webhook_deliveries`, c.in, c.notIn).Scan(&in, &out); err != nil {
			t.Fatal(err)
		}
		if in == 0 || out != 0 {
			t.Fatalf("%s database: %d deliveries of its user, %d of the other jurisdiction's", c.db, in, out)
		}
	}
	if rep := w.scan(); !rep.OK() {
		t.Fatalf("residency scan: %+v", rep.Misplaced)
	}
	// Nothing more arrives later (no duplicate in flight: no delivery is pending in either
	// jurisdiction, and a delivery is posted before it is marked), and the US endpoint never
	// saw ada.
	poll.Until(t, 30*time.Second, func() error {
		for _, pg := range []interface {
			QueryRow(context.Context, string, ...any) pgx.Row
		}{pgEU, pgUS} {
			var pending int
			if err := pg.QueryRow(context.Background(), `SELECT count(*) FROM webhook_deliveries WHERE status = 'pending' AND user_id IN ($1, $2)`, ada, bob).Scan(&pending); err != nil {
				return err
			}
			if pending > 0 {
				return fmt.Errorf("%d deliveries pending", pending)
			}
		}
		return nil
	})
	delivered(t, hooks(t, s, euHook), n2)
	for _, h := range hooks(t, s, usHook) {
		if h.user == ada {
			t.Fatalf("the US endpoint got an EU user's event: %+v", h)
		}
	}

	// Dead letters and replay: while the endpoint fails, disabling it makes its pending
	// deliveries dead letters; listed, refused replay while disabled, replayed once enabled.
	setHookFaults(t, s, `{"outage_seconds": 120}`)
	n3 := send(ada)
	readAll(ada)
	poll.Until(t, 20*time.Second, func() error {
		types := map[string]bool{}
		for _, h := range hooks(t, s, euHook) {
			if h.notification == n3 && h.status == http.StatusServiceUnavailable {
				types[h.typ+"/"+h.channel] = true
			}
		}
		if len(types) != len(want) {
			return fmt.Errorf("failed attempts for %v", types)
		}
		return nil
	})
	base := "/v1/jurisdictions/EU/webhooks/endpoints/" + euID
	if out := w.must(http.StatusOK, "POST", base+"/disable", nil); out["disabled"] != true {
		t.Fatalf("disable: %v", out)
	}
	dl := w.must(http.StatusOK, "GET", base+"/dead-letters", nil)
	dead, _ := dl["dead_letters"].([]any)
	if len(dead) != len(want) {
		t.Fatalf("dead letters: %v", dl)
	}
	for _, d := range dead {
		if d := d.(map[string]any); d["last_error"] != "endpoint disabled" || d["last_status"] != float64(503) || d["region"] != w.eu1.Cfg.Name {
			t.Fatalf("dead letter %v", d)
		}
	}
	if code, out, _ := w.call(w.key, "POST", base+"/replay", nil); code != http.StatusConflict || errorCode(out) != "endpoint_disabled" {
		t.Fatalf("replay while disabled: %d %v", code, out)
	}
	setHookFaults(t, s, "")
	w.must(http.StatusOK, "POST", base+"/enable", nil)
	if out := w.must(http.StatusAccepted, "POST", base+"/replay", nil); out["replayed"] != float64(len(want)) {
		t.Fatalf("replay: %v", out)
	}
	poll.Until(t, 30*time.Second, func() error {
		if got := delivered(t, hooks(t, s, euHook), n3); !slices.Equal(got, want) {
			return fmt.Errorf("after the replay the EU endpoint got %v of %s, want %v", got, n3, want)
		}
		return nil
	})
	if dl := w.must(http.StatusOK, "GET", base+"/dead-letters", nil); len(dl["dead_letters"].([]any)) != 0 {
		t.Fatalf("dead letters left: %v", dl)
	}
	// A rotation keeps the replaced secret valid (24 h by default): the receiver, still holding
	// the first secret, verifies what follows (both signatures are on it).
	if code, out, _ := w.call(w.key, "POST", base+"/rotate-secret", map[string]any{"expire_previous_in_seconds": -1}); code != http.StatusBadRequest || errorCode(out) != "invalid_field" {
		t.Fatalf("rotate with a negative overlap: %d %v", code, out)
	}
	rot := w.must(http.StatusOK, "POST", base+"/rotate-secret", nil)
	if sec, _ := rot["secret"].(string); !strings.HasPrefix(sec, "whsec_") || rot["previous_secret_valid"] != true || rot["previous_secret_expires_at"] == nil {
		t.Fatalf("rotate: %v", rot)
	}
	if got := w.must(http.StatusOK, "GET", base, nil); got["previous_secret_valid"] != true || got["previous_secret_expires_at"] != rot["previous_secret_expires_at"] {
		t.Fatalf("the endpoint after a rotation: %v", got)
	}
	n4 := send(ada)
	poll.Until(t, 20*time.Second, func() error {
		for _, h := range hooks(t, s, euHook) {
			if h.notification == n4 && h.status == http.StatusNoContent && h.verified {
				return nil
			}
		}
		return fmt.Errorf("no message of %s verified with the previous secret yet", n4)
	})
	// Rotated again with no overlap: the first secret is neither current nor previous, and the
	// receiver holding it refuses what follows.
	rot = w.must(http.StatusOK, "POST", base+"/rotate-secret", map[string]any{"expire_previous_in_seconds": 0})
	if rot["previous_secret_valid"] != false || rot["previous_secret_expires_at"] != nil {
		t.Fatalf("rotate without overlap: %v", rot)
	}
	n5 := send(ada)
	poll.Until(t, 20*time.Second, func() error {
		for _, h := range hooks(t, s, euHook) {
			if h.notification == n5 && h.status == http.StatusUnauthorized {
				return nil
			}
		}
		return fmt.Errorf("no refused message of %s yet", n5)
	})
}
