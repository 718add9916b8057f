//go:build integration

package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/sim"
)

// simAccount creates an account at a simulator through its admin API (POST path) and returns
// what it answered.
func simAccount(t *testing.T, s *sim.Sim, path string, body any) map[string]any {
	t.Helper()
	var rd io.Reader = http.NoBody
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	resp, err := http.Post(s.Info().Admin+path, "application/json", rd)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s: %d %s", path, resp.StatusCode, raw)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// simRecordTo is the one record a provider simulator holds for to whose payload carries title.
func simRecordTo(t *testing.T, s *sim.Sim, provider, to, title string) (sim.Record, error) {
	var found []sim.Record
	for _, r := range regiontest.SimRecords(t, s, provider, to) {
		if r.Status < 300 && strings.Contains(string(r.Payload), title) {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		return sim.Record{}, fmt.Errorf("%d %s records to %s with %q", len(found), provider, to, title)
	}
	return found[0], nil
}

// Each app's sends go through its own provider accounts, stored per jurisdiction through the
// gateway: app A's pushes are signed with its APNs key and go to its Firebase project, its
// email logs in as its SMTP account and comes from its address, its texts go through its Twilio
// account (whose signed status callbacks move them to delivered); app B, which stored none, and
// A's US user (A stored no US credentials) go through the regions' own accounts. A rotation
// takes effect within the refresh, a delete falls back to the region's account, nothing the
// API answers shows a secret, and a service account naming a token endpoint the region does
// not call is refused.
func TestEachAppSendsThroughItsOwnProviderAccountsAndNeverAnothers(t *testing.T) {
	s, sc := regiontest.StartSim(t, 1)
	info := s.Info()
	w := newWorld(t, func(i int, rc *region.Config) {
		rc.Dispatch.Push.APNs = regiontest.SimAPNs(info)
		rc.Dispatch.Push.FCM = dispatch.FCMConfig{Endpoint: info.FCM.Endpoint, CredentialsFile: info.FCM.CredentialsFile}
		rc.Dispatch.Email.SMTP = regiontest.SimSMTP(info, sc)
		rc.Dispatch.SMS.Twilio = dispatch.TwilioConfig{BaseURL: info.SMS.URL, AccountSID: sc.SMS.AccountSID, AuthToken: sc.SMS.AuthToken, From: "+15005550006"}
		rc.Dispatch.AppCredentials.Refresh = 300 * time.Millisecond
		rc.Dispatch.AppCredentials.FCMTokenURIs = []string{info.FCM.TokenURI}
	})

	// App A's accounts, made at the providers (the simulators).
	apnsKey := simAccount(t, s, "/sim/apns/keys", map[string]any{"team_id": "ACMETEAM01"})
	project := "acme-" + strings.ToLower(regiontest.Letters())[:8]
	serviceAccount := simAccount(t, s, "/sim/fcm/projects", map[string]any{"project_id": project})
	smtpAcct := simAccount(t, s, "/sim/smtp/accounts", nil)
	twilioA := simAccount(t, s, "/sim/twilio/accounts", nil)
	twilioA2 := simAccount(t, s, "/sim/twilio/accounts", nil)
	secrets := []string{apnsKey["key"].(string), serviceAccount["private_key"].(string), smtpAcct["password"].(string),
		twilioA["auth_token"].(string), twilioA2["auth_token"].(string)}

	base := "/v1/jurisdictions/EU/credentials/"
	noSecret := func(out map[string]any) map[string]any {
		t.Helper()
		raw, _ := json.Marshal(out)
		for _, sec := range secrets {
			if strings.Contains(string(raw), strings.TrimSpace(sec)) || strings.Contains(string(raw), "PRIVATE KEY") {
				t.Fatalf("an answer shows a secret: %s", raw)
			}
		}
		return out
	}
	noSecret(w.must(http.StatusCreated, "PUT", base+"apns", map[string]any{"team_id": apnsKey["team_id"], "key_id": apnsKey["key_id"],
		"topic": "com.acme.app", "private_key": apnsKey["key"]}))
	noSecret(w.must(http.StatusCreated, "PUT", base+"fcm", map[string]any{"service_account": serviceAccount}))
	noSecret(w.must(http.StatusCreated, "PUT", base+"smtp", map[string]any{"from": "Acme <no-reply@acme.example>",
		"username": smtpAcct["username"], "password": smtpAcct["password"]}))
	first := noSecret(w.must(http.StatusCreated, "PUT", base+"twilio", map[string]any{"account_sid": twilioA["account_sid"],
		"auth_token": twilioA["auth_token"], "from": "+15005550010"}))
	list := noSecret(w.must(http.StatusOK, "GET", "/v1/jurisdictions/EU/credentials", nil))
	if cs, _ := list["credentials"].([]any); len(cs) != 4 {
		t.Fatalf("A's EU credentials: %v", list)
	}
	if cs, _ := w.must(http.StatusOK, "GET", "/v1/jurisdictions/US/credentials", nil)["credentials"].([]any); len(cs) != 0 {
		t.Fatalf("A's EU credentials listed in the US: %v", cs)
	}
	if code, out, _ := w.call(w.otherKey, "GET", base+"twilio", nil); code != http.StatusNotFound {
		t.Fatalf("app B read app A's credential: %d %v", code, out)
	}
	// A service account whose token endpoint the region does not call.
	google := map[string]any{}
	for k, v := range serviceAccount {
		google[k] = v
	}
	google["token_uri"] = "https://oauth2.googleapis.com/token"
	if code, out, _ := w.call(w.key, "PUT", base+"fcm", map[string]any{"service_account": google}); code != http.StatusUnprocessableEntity ||
		out["error"].(map[string]any)["code"] != "credential_refused" {
		t.Fatalf("a token endpoint the region does not call: %d %v", code, out)
	}

	// Users: A's ada (EU) and dan (US), B's eve (EU); each with an iPhone, an Android phone,
	// an address and a number.
	type person struct {
		id, key, country, ios, android, mail, phone string
	}
	people := []person{{id: "ada-" + w.app, key: w.key, country: "DE"}, {id: "dan-" + w.app, key: w.key, country: "US"},
		{id: "eve-" + w.app, key: w.otherKey, country: "FR"}}
	for i := range people {
		p := &people[i]
		p.ios, p.android = fmt.Sprintf("%064x", 1000+i+len(w.app)*7919), fmt.Sprintf("fcm-token-%d-%s", i, w.app)
		p.mail, p.phone = p.id+"@example.org", fmt.Sprintf("+491511234%04d", i)
		if code, out, _ := w.call(p.key, "PUT", "/v1/users/"+p.id, map[string]any{"country": p.country, "email": p.mail, "phone": p.phone}); code != http.StatusCreated {
			t.Fatalf("register %s: %d %v", p.id, code, out)
		}
		for dev, tok := range map[string]string{"ios": p.ios, "android": p.android} {
			if code, out, _ := w.call(p.key, "POST", "/v1/users/"+p.id+"/devices", map[string]any{"platform": dev, "token": tok, "device_id": dev}); code != http.StatusCreated {
				t.Fatalf("device of %s: %d %v", p.id, code, out)
			}
		}
	}
	send := func(p person, title string) string {
		t.Helper()
		code, out, _ := w.call(p.key, "POST", "/v1/notifications", map[string]any{"type": "transactional", "category": "account",
			"title": title, "body": title, "recipients": []string{p.id}, "channels": []string{"push", "email", "sms"}})
		if code != http.StatusAccepted {
			t.Fatalf("send to %s: %d %v", p.id, code, out)
		}
		return out["notification_id"].(string)
	}
	// accounts is which account each provider simulator saw for p's copies of title.
	accounts := func(p person, title string) (map[string]string, error) {
		got := map[string]string{}
		for _, c := range []struct{ provider, to, header string }{{"apns", p.ios, "sim-key-id"}, {"fcm", p.android, "sim-project-id"},
			{"smtp", p.mail, "sim-auth-user"}, {"sms", p.phone, "sim-account-sid"}} {
			r, err := simRecordTo(t, s, c.provider, c.to, title)
			if err != nil {
				return nil, err
			}
			got[c.provider] = r.Headers[c.header]
			if c.provider == "smtp" {
				got["from"] = r.Headers["from"]
			}
			if c.provider == "apns" {
				got["topic"] = r.Headers["apns-topic"]
			}
		}
		return got, nil
	}
	region := map[string]string{"apns": info.APNs.KeyID, "topic": "com.herald.test", "fcm": info.FCM.ProjectID, "smtp": sc.SMTP.Username,
		"from": "Herald <noreply@herald.local>", "sms": sc.SMS.AccountSID}
	appA := map[string]string{"apns": apnsKey["key_id"].(string), "topic": "com.acme.app", "fcm": project, "smtp": smtpAcct["username"].(string),
		"from": "Acme <no-reply@acme.example>", "sms": twilioA["account_sid"].(string)}
	expect := func(p person, title string, want map[string]string) {
		t.Helper()
		poll.Until(t, 45*time.Second, func() error {
			got, err := accounts(p, title)
			if err != nil {
				return err
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("%s's %q went through %v, want %v", p.id, title, got, want)
			}
			return nil
		})
	}
	ids := map[string]string{}
	for _, p := range people {
		ids[p.id] = send(p, "hello "+p.id)
	}
	defer func() {
		if t.Failed() {
			t.Logf("gateway log: %s", w.log.String())
		}
	}()
	expect(people[0], "hello "+people[0].id, appA)   // A's EU user: A's accounts
	expect(people[1], "hello "+people[1].id, region) // A's US user: A stored no US credentials
	expect(people[2], "hello "+people[2].id, region) // B's user: B stored none
	// Twilio's status callback for A's text is signed with A's auth token, and verified with it.
	poll.Until(t, 30*time.Second, func() error {
		if st, _, _, rc := channelState(w, ids[people[0].id], people[0].id, "sms"); st != "delivered" || !strings.Contains(strings.Join(rc, ","), "delivered") {
			return fmt.Errorf("ada's text: %s, receipts %v", st, rc)
		}
		return nil
	})

	// Rotate A's Twilio account; delete its APNs key.
	rotated := noSecret(w.must(http.StatusOK, "PUT", base+"twilio", map[string]any{"account_sid": twilioA2["account_sid"],
		"auth_token": twilioA2["auth_token"], "from": "+15005550010"}))
	if rotated["version"].(float64) <= first["version"].(float64) {
		t.Fatalf("rotation kept version %v (was %v)", rotated["version"], first["version"])
	}
	w.must(http.StatusNoContent, "DELETE", base+"apns", nil)
	if code, _, _ := w.call(w.key, "GET", base+"apns", nil); code != http.StatusNotFound {
		t.Fatalf("a deleted credential answers %d", code)
	}
	want := map[string]string{}
	for k, v := range appA {
		want[k] = v
	}
	want["apns"], want["topic"], want["sms"] = region["apns"], region["topic"], twilioA2["account_sid"].(string)
	// The regions read again within their 300 ms refresh: a send made before that may still go
	// through what they had read, so each round sends anew and waits for that send's copies.
	var again string
	poll.Until(t, 45*time.Second, func() error {
		title := fmt.Sprintf("again %s %d", people[0].id, time.Now().UnixNano())
		again = send(people[0], title)
		var got map[string]string
		var err error
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if got, err = accounts(people[0], title); err == nil {
				break
			}
		}
		if err != nil {
			return err
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("after the rotation and the delete, went through %v, want %v", got, want)
		}
		return nil
	})
	poll.Until(t, 30*time.Second, func() error {
		if st, _, _, rc := channelState(w, again, people[0].id, "sms"); st != "delivered" || !strings.Contains(strings.Join(rc, ","), "delivered") {
			return fmt.Errorf("ada's text after the rotation: %s, receipts %v", st, rc)
		}
		return nil
	})
}
