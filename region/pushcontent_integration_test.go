//go:build integration

package region_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/sim"
)

// pushPolicy is a residency policy naming the test's two regions; %s are the EU region, the
// EU push_content, the US region and the US push_content.
const pushPolicy = `version: %d
jurisdictions:
  EU:
    regions: [%s]
    countries: [DE]
    gateway_url: http://127.0.0.1:1
    push_content: %s
  US:
    regions: [%s]
    countries: [US]
    gateway_url: http://127.0.0.1:1
    push_content: %s
`

// pushWorld is an EU and a US region sharing one discovery (and so one residency policy) and
// one in-process APNs and FCM simulator.
type pushWorld struct {
	t      *testing.T
	disc   discovery.Backend
	key    string
	sim    *sim.Sim
	eu, us *running
}

func startPushWorld(t *testing.T, euContent, usContent string) *pushWorld {
	t.Helper()
	s, _ := regiontest.StartSim(t, 1)
	info := s.Info()
	dir := t.TempDir()
	w := &pushWorld{t: t, sim: s, key: "herald/residency/policy-" + testenv.Suffix()}
	var err error
	if w.disc, err = discovery.Open(discovery.Defaults(dir)); err != nil {
		t.Fatal(err)
	}
	withPush := func(jurisdiction string) func(*region.Config) {
		return func(c *region.Config) {
			c.Jurisdiction = jurisdiction
			c.Discovery.Path = dir
			c.PolicyKey = w.key
			c.Dispatch.Push.APNs = regiontest.SimAPNs(info)
			c.Dispatch.Push.FCM = dispatch.FCMConfig{Endpoint: info.FCM.Endpoint, CredentialsFile: info.FCM.CredentialsFile}
		}
	}
	// A region's name is known once its config exists: the EU region's mutate publishes the
	// policy before that region starts (its US region a placeholder), the US region's mutate
	// publishes version 2 naming both before the US region starts.
	var euName string
	w.eu = startRegion(t, withPush("EU"), func(c *region.Config) {
		euName = c.Name
		w.putPolicy(1, euName, euContent, "zz-placeholder-1", usContent)
	})
	w.us = startRegion(t, withPush("US"), func(c *region.Config) {
		w.putPolicy(2, euName, euContent, c.Name, usContent)
	})
	return w
}

func (w *pushWorld) putPolicy(version int, eu, euContent, us, usContent string) {
	w.t.Helper()
	doc := fmt.Sprintf(pushPolicy, version, eu, euContent, us, usContent)
	if err := w.disc.Put(context.Background(), w.key, []byte(doc)); err != nil {
		w.t.Fatal(err)
	}
}

// sendPush registers user in r's jurisdiction with an iOS and an Android device, sends them a
// push (and in-app item) with a distinctive title, body, link and metadata, and returns the notification id and
// the two device tokens.
func (w *pushWorld) sendPush(r *running, user string) (id, iosToken, androidToken string) {
	w.t.Helper()
	return w.sendPushOn(r, user, "push", "in_app")
}

// sendPushOn is sendPush on the given channels.
func (w *pushWorld) sendPushOn(r *running, user string, channels ...string) (id, iosToken, androidToken string) {
	w.t.Helper()
	iosToken = fmt.Sprintf("%064x", time.Now().UnixNano())
	androidToken = "fcm-registration-token-" + testenv.Suffix()
	for _, d := range []map[string]any{
		{"platform": "ios", "token": iosToken, "device_id": "iphone"},
		{"platform": "android", "token": androidToken, "device_id": "pixel"},
	} {
		if code, b := r.call("POST", "/v1/users/"+user+"/devices", d, r.app); code/100 != 2 {
			w.t.Fatalf("device: %d %v", code, b)
		}
	}
	code, b := r.call("POST", "/v1/notifications", map[string]any{"type": "transactional", "category": "order",
		"title": "Title-secret-" + user, "body": "Body-secret-" + user, "link": "https://shop.example/orders/secret-" + user,
		"metadata": map[string]string{"order": "secret-order-" + user}, "recipients": []string{user}, "channels": channels}, r.app)
	if code != 202 {
		w.t.Fatalf("send: %d %v", code, b)
	}
	return b["notification_id"].(string), iosToken, androidToken
}

// delivered waits for the simulator's accepted record of the push to token and returns it.
func (w *pushWorld) delivered(simName, token string) sim.Record {
	w.t.Helper()
	var rec sim.Record
	poll.Until(w.t, 30*time.Second, func() error {
		resp, err := http.Get(w.sim.Info().Admin + "/sim/" + simName + "/messages?to=" + url.QueryEscape(token))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var out struct{ Messages []sim.Record }
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return err
		}
		for _, m := range out.Messages {
			if m.Status == http.StatusOK {
				rec = m
				return nil
			}
		}
		return fmt.Errorf("%s: no accepted push to %s in %d records", simName, token, len(out.Messages))
	})
	return rec
}

// raw is everything the simulator recorded of a request: payload and headers.
func raw(rec sim.Record) string {
	b, _ := json.Marshal(rec)
	return string(b)
}

func TestMinimalPushContentKeepsTheNotificationsTextOutOfAPNsAndFCM(t *testing.T) {
	w := startPushWorld(t, "minimal", "full")
	euUser, usUser := "eu-ada-"+testenv.Suffix(), "us-bob-"+testenv.Suffix()

	id, ios, android := w.sendPush(w.eu, euUser)
	for _, rec := range []sim.Record{w.delivered("apns", ios), w.delivered("fcm", android)} {
		got := raw(rec)
		for _, personal := range []string{"Title-secret", "Body-secret", "secret-" + euUser, "secret-order", euUser, "shop.example", w.eu.app} {
			if strings.Contains(got, personal) {
				t.Errorf("EU (minimal) push record holds %q: %s", personal, got)
			}
		}
		if !strings.Contains(string(rec.Payload), id) {
			t.Errorf("EU push record lacks the notification id %s: %s", id, rec.Payload)
		}
	}
	var apns struct {
		Aps struct {
			MutableContent int `json:"mutable-content"`
		} `json:"aps"`
	}
	if err := json.Unmarshal(w.delivered("apns", ios).Payload, &apns); err != nil || apns.Aps.MutableContent != 1 {
		t.Errorf("EU APNs push without mutable-content: %s", w.delivered("apns", ios).Payload)
	}
	var fcm struct {
		Message map[string]json.RawMessage `json:"message"`
	}
	if err := json.Unmarshal(w.delivered("fcm", android).Payload, &fcm); err != nil || fcm.Message["notification"] != nil || fcm.Message["data"] == nil {
		t.Errorf("EU FCM push is not a data-only message: %s", w.delivered("fcm", android).Payload)
	}

	// What the app's extension does with the id: fetch the content from the user's home region.
	poll.Until(t, 20*time.Second, func() error {
		code, b := w.eu.call("GET", "/v1/users/"+euUser+"/notifications/"+id, nil, w.eu.app)
		if code != 200 || b["title"] != "Title-secret-"+euUser || b["body"] != "Body-secret-"+euUser {
			return fmt.Errorf("fetching the content: %d %v", code, b)
		}
		return nil
	})

	// The notification left an inbox item: the push's content is fetched from there, with no
	// copy beside it.
	var copies int
	if err := w.eu.cass.Query(`SELECT count(*) FROM push_content WHERE app_id = ? AND user_id = ?`, w.eu.app, euUser).Scan(&copies); err != nil || copies != 0 {
		t.Errorf("a push with an inbox item kept a copy of its content: %d rows, %v", copies, err)
	}

	// The same send in the US, whose push_content is full, carries the text: the searches
	// above are able to find it.
	_, ios, android = w.sendPush(w.us, usUser)
	for _, rec := range []sim.Record{w.delivered("apns", ios), w.delivered("fcm", android)} {
		if got := raw(rec); !strings.Contains(got, "Title-secret-"+usUser) || !strings.Contains(got, "Body-secret-"+usUser) {
			t.Errorf("US (full) push record lacks the content: %s", got)
		}
	}
}

func TestPushContentFollowsAPolicyChangeWithoutARestart(t *testing.T) {
	w := startPushWorld(t, "full", "full")
	user := "eu-eve-" + testenv.Suffix()
	_, ios, _ := w.sendPush(w.eu, user)
	if got := raw(w.delivered("apns", ios)); !strings.Contains(got, "Body-secret-"+user) {
		t.Fatalf("full push lacks the content: %s", got)
	}
	w.putPolicy(3, w.eu.cfg.Name, "minimal", w.us.cfg.Name, "full")
	// The change reaches the dispatcher within the file backend's poll; every push sent after
	// it is content-free. Poll with fresh sends until one goes out minimal, then check a last one.
	poll.Until(t, 30*time.Second, func() error {
		_, ios, _ := w.sendPush(w.eu, user)
		if got := raw(w.delivered("apns", ios)); strings.Contains(got, "Body-secret") {
			return fmt.Errorf("still full: %s", got)
		}
		return nil
	})
	_, ios, android := w.sendPush(w.eu, user)
	for _, rec := range []sim.Record{w.delivered("apns", ios), w.delivered("fcm", android)} {
		if got := raw(rec); strings.Contains(got, "secret") {
			t.Errorf("push after the change to minimal holds content: %s", got)
		}
	}
}

// A push-only send leaves no inbox item, so under minimal the dispatcher keeps the push's
// content in the region before it sends the push: the moment the push reaches the device the
// app can fetch it. It is not an inbox item (the inbox list does not show it), a full
// jurisdiction stores nothing, and an erasure deletes it.
func TestMinimalPushOnlySendLeavesItsContentToFetchBeforeThePushArrives(t *testing.T) {
	w := startPushWorld(t, "minimal", "full")
	euUser, usUser := "eu-ida-"+testenv.Suffix(), "us-ian-"+testenv.Suffix()

	id, ios, android := w.sendPushOn(w.eu, euUser, "push")
	for _, rec := range []sim.Record{w.delivered("apns", ios), w.delivered("fcm", android)} {
		if got := raw(rec); strings.Contains(got, "secret") {
			t.Errorf("EU (minimal) push-only record holds content: %s", got)
		}
	}
	var copies int
	if err := w.eu.cass.Query(`SELECT count(*) FROM push_content WHERE app_id = ? AND user_id = ?`, w.eu.app, euUser).Scan(&copies); err != nil || copies != 1 {
		t.Fatalf("push content rows of a push-only send: %d, %v", copies, err)
	}
	// No polling: the content was stored before the push went out.
	code, b := w.eu.call("GET", "/v1/users/"+euUser+"/notifications/"+id, nil, w.eu.app)
	if code != 200 || b["title"] != "Title-secret-"+euUser || b["body"] != "Body-secret-"+euUser ||
		b["notification_id"] != id || b["type"] != "transactional" || b["category"] != "order" {
		t.Fatalf("fetching a push-only notification's content: %d %v", code, b)
	}
	if md, _ := b["metadata"].(map[string]any); md["order"] != "secret-order-"+euUser {
		t.Errorf("fetched metadata: %v", b["metadata"])
	}
	// Another user of the app, and another app, cannot fetch it.
	if code, b := w.eu.call("GET", "/v1/users/eu-other-"+testenv.Suffix()+"/notifications/"+id, nil, w.eu.app); code != 404 {
		t.Errorf("another user fetched it: %d %v", code, b)
	}
	if code, b := w.eu.call("GET", "/v1/users/"+euUser+"/notifications/"+id, nil, "other-"+w.eu.app); code != 404 {
		t.Errorf("another app fetched it: %d %v", code, b)
	}
	// It is the push's content, not an inbox item.
	code, b = w.eu.call("GET", "/v1/users/"+euUser+"/notifications", nil, w.eu.app)
	if items, _ := b["items"].([]any); code != 200 || len(items) != 0 {
		t.Errorf("the inbox lists a push-only notification: %d %v", code, b)
	}

	// Full: the push carries the content, nothing is kept beside it.
	usID, ios, _ := w.sendPushOn(w.us, usUser, "push")
	if got := raw(w.delivered("apns", ios)); !strings.Contains(got, "Body-secret-"+usUser) {
		t.Fatalf("US (full) push lacks the content: %s", got)
	}
	var n int
	if err := w.us.cass.Query(`SELECT count(*) FROM push_content WHERE app_id = ? AND user_id = ?`, w.us.app, usUser).Scan(&n); err != nil || n != 0 {
		t.Errorf("a full jurisdiction kept push content: %d rows, %v", n, err)
	}
	if code, _ := w.us.call("GET", "/v1/users/"+usUser+"/notifications/"+usID, nil, w.us.app); code != 404 {
		t.Errorf("US push-only notification fetched: %d", code)
	}

	// Erasure deletes it.
	if code, b := w.eu.call("DELETE", "/v1/users/"+euUser, nil, w.eu.app); code/100 != 2 {
		t.Fatalf("erasure: %d %v", code, b)
	}
	poll.Until(t, 60*time.Second, func() error {
		if err := w.eu.cass.Query(`SELECT count(*) FROM push_content WHERE app_id = ? AND user_id = ?`, w.eu.app, euUser).Scan(&n); err != nil {
			return err
		}
		if n != 0 {
			return fmt.Errorf("%d push content rows after the erasure", n)
		}
		return nil
	})
}
