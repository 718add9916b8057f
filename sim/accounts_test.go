package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/smtp"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"
)

// create calls one of the admin API's account routes, wants 201 and decodes the account.
func create[T any](t testing.TB, s *Sim, path string, body any) T {
	t.Helper()
	out, err := tryCreate[T](s, path, body)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tryCreate is create for other goroutines than the test's.
func tryCreate[T any](s *Sim, path string, body any) (T, error) {
	var out T
	b, _ := json.Marshal(body)
	resp, err := http.Post(s.Info().Admin+path, "application/json", strings.NewReader(string(b)))
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 201 {
		return out, fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, raw)
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return out, fmt.Errorf("POST %s: %w", path, err)
	}
	return out, nil
}

// apnsKeyToken is the apns2 provider token for a key the admin API made, loaded from its
// .p8 text as a client loads Apple's download.
func apnsKeyToken(t testing.TB, a apnsKeyAccount) *token.Token {
	t.Helper()
	key, err := token.AuthKeyFromBytes([]byte(a.Key))
	if err != nil {
		t.Fatalf("apns2 cannot load the key: %v", err)
	}
	return &token.Token{AuthKey: key, KeyID: a.KeyID, TeamID: a.TeamID}
}

// configuredAPNsToken is the provider token of the configured key.
func configuredAPNsToken(t testing.TB, s *Sim) *token.Token {
	t.Helper()
	key, err := token.AuthKeyFromFile(s.Info().APNs.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &token.Token{AuthKey: key, KeyID: s.Info().APNs.KeyID, TeamID: s.Info().APNs.TeamID}
}

// lastRecord is the newest record of a simulator for to.
func lastRecord(t testing.TB, s *Sim, name, to string) Record {
	t.Helper()
	recs := records(t, s, name, to)
	if len(recs) == 0 {
		t.Fatalf("no %s record for %q", name, to)
	}
	return recs[len(recs)-1]
}

// wantHeaders fails unless rec's headers hold want; an empty value wants the key absent.
func wantHeaders(t testing.TB, rec Record, want map[string]string) {
	t.Helper()
	for k, v := range want {
		got, ok := rec.Headers[k]
		if v == "" && ok || v != "" && got != v {
			t.Errorf("record header %s = %q (present %v), want %q; record %+v", k, got, ok, v, rec)
		}
	}
}

func TestAdminAPNsKeysSignTokensApns2SendsAndRecordsNameTheirKey(t *testing.T) {
	s := startSim(t, nil)
	sameTeam := create[apnsKeyAccount](t, s, "/sim/apns/keys", nil)
	otherTeam := create[apnsKeyAccount](t, s, "/sim/apns/keys", map[string]string{"team_id": "TEAMB00002"})
	if sameTeam.TeamID != s.Info().APNs.TeamID || otherTeam.TeamID != "TEAMB00002" {
		t.Fatalf("team ids %q %q", sameTeam.TeamID, otherTeam.TeamID)
	}
	for _, a := range []apnsKeyAccount{sameTeam, otherTeam} {
		if !appleIDRE.MatchString(a.KeyID) || a.KeyID == s.Info().APNs.KeyID || !strings.HasPrefix(a.Key, "-----BEGIN PRIVATE KEY-----\n") {
			t.Fatalf("key %+v", a)
		}
	}
	if sameTeam.KeyID == otherTeam.KeyID {
		t.Fatalf("two keys share the id %s", sameTeam.KeyID)
	}
	// Each account pushes to its own device token, side by side on one simulator.
	tests := []struct {
		name        string
		tok         *token.Token
		device      string
		team, keyID string
	}{
		{"configured key", configuredAPNsToken(t, s), strings.Repeat("a1", 32), s.Info().APNs.TeamID, s.Info().APNs.KeyID},
		{"made key, configured team", apnsKeyToken(t, sameTeam), strings.Repeat("b2", 32), sameTeam.TeamID, sameTeam.KeyID},
		{"made key, its own team", apnsKeyToken(t, otherTeam), strings.Repeat("c3", 32), otherTeam.TeamID, otherTeam.KeyID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := alert(tt.device)
			res, err := apnsClient(t, s, tt.tok).Push(n)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != 200 || !res.Sent() {
				t.Fatalf("got %d %q", res.StatusCode, res.Reason)
			}
			rec := lastRecord(t, s, "apns", tt.device)
			wantHeaders(t, rec, map[string]string{"sim-team-id": tt.team, "sim-key-id": tt.keyID, "apns-topic": "com.herald.demo"})
		})
	}
	// A refusal after authentication still names the account.
	setFaults(t, s, "apns", Faults{Invalid: []string{strings.Repeat("d4", 32)}})
	res, err := apnsClient(t, s, apnsKeyToken(t, otherTeam)).Push(alert(strings.Repeat("d4", 32)))
	if err != nil || res.StatusCode != 400 {
		t.Fatalf("got %+v %v", res, err)
	}
	wantHeaders(t, lastRecord(t, s, "apns", strings.Repeat("d4", 32)), map[string]string{"sim-team-id": otherTeam.TeamID, "sim-key-id": otherTeam.KeyID})
}

func TestAPNsRefusesOneAccountsKeyUnderAnotherAccountsIdentity(t *testing.T) {
	s := startSim(t, nil)
	a := create[apnsKeyAccount](t, s, "/sim/apns/keys", map[string]string{"team_id": "TEAMA00001"})
	b := create[apnsKeyAccount](t, s, "/sim/apns/keys", map[string]string{"team_id": "TEAMB00002"})
	keyA, keyB := apnsKeyToken(t, a).AuthKey, apnsKeyToken(t, b).AuthKey
	conf := configuredAPNsToken(t, s)
	tests := []struct {
		name string
		tok  *token.Token
	}{
		{"A's key id with B's team", &token.Token{AuthKey: keyA, KeyID: a.KeyID, TeamID: b.TeamID}},
		{"A's key id and team signed by B's key", &token.Token{AuthKey: keyB, KeyID: a.KeyID, TeamID: a.TeamID}},
		{"A's key id with the configured team", &token.Token{AuthKey: keyA, KeyID: a.KeyID, TeamID: conf.TeamID}},
		{"the configured key id signed by A's key", &token.Token{AuthKey: keyA, KeyID: conf.KeyID, TeamID: conf.TeamID}},
		{"A's key id signed by the configured key", &token.Token{AuthKey: conf.AuthKey, KeyID: a.KeyID, TeamID: a.TeamID}},
		{"an unknown key id", &token.Token{AuthKey: keyA, KeyID: "NOSUCHKEY1", TeamID: a.TeamID}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			device := fmt.Sprintf("%064x", i+1)
			res, err := apnsClient(t, s, tt.tok).Push(alert(device))
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != 403 || res.Reason != apns2.ReasonInvalidProviderToken {
				t.Fatalf("got %d %q, want 403 InvalidProviderToken", res.StatusCode, res.Reason)
			}
			// Nothing authenticated, so the record names no account.
			rec := lastRecord(t, s, "apns", device)
			wantHeaders(t, rec, map[string]string{"sim-team-id": "", "sim-key-id": ""})
			if rec.Status != 403 || rec.Error != apns2.ReasonInvalidProviderToken {
				t.Fatalf("record %+v", rec)
			}
		})
	}
}

// fcmAppClient is the Admin SDK's messaging client for a service-account JSON; projectID ""
// takes the JSON's.
func fcmAppClient(t testing.TB, s *Sim, sa []byte, projectID string) *messaging.Client {
	t.Helper()
	var conf *firebase.Config
	if projectID != "" {
		conf = &firebase.Config{ProjectID: projectID}
	}
	ctx := context.Background()
	app, err := firebase.NewApp(ctx, conf, option.WithAuthCredentialsJSON(option.ServiceAccount, sa), option.WithEndpoint(s.Info().FCM.Endpoint))
	if err != nil {
		t.Fatal(err)
	}
	c, err := app.Messaging(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func createFCMProject(t testing.TB, s *Sim, projectID string) (serviceAccount, []byte) {
	t.Helper()
	var raw json.RawMessage
	if code := admin(t, s, "POST", "/sim/fcm/projects", map[string]string{"project_id": projectID}, &raw); code != 201 {
		t.Fatalf("POST /sim/fcm/projects: %d %s", code, raw)
	}
	var sa serviceAccount
	if err := json.Unmarshal(raw, &sa); err != nil {
		t.Fatal(err)
	}
	return sa, raw
}

func TestAdminFCMProjectsSendThroughTheAdminSDKAndRecordsNameTheirAccount(t *testing.T) {
	s := startSim(t, nil)
	saA, rawA := createFCMProject(t, s, "app-alpha-1")
	saB, rawB := createFCMProject(t, s, "app-bravo-2")
	for _, sa := range []serviceAccount{saA, saB} {
		if sa.Type != "service_account" || sa.TokenURI != s.Info().FCM.TokenURI || sa.PrivateKeyID == "" ||
			!strings.HasSuffix(sa.ClientEmail, "@"+sa.ProjectID+".iam.gserviceaccount.com") || !strings.Contains(sa.PrivateKey, "PRIVATE KEY") {
			t.Fatalf("service account %+v", sa)
		}
		if _, err := serviceAccountKey(sa); err != nil {
			t.Fatal(err)
		}
	}
	conf, err := os.ReadFile(s.Info().FCM.CredentialsFile)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, project, email string
		json                 []byte
	}{
		{"configured project", "herald-local", "firebase-adminsdk-sim@herald-local.iam.gserviceaccount.com", conf},
		{"made project A", saA.ProjectID, saA.ClientEmail, rawA},
		{"made project B", saB.ProjectID, saB.ClientEmail, rawB},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			to := fmt.Sprintf("device-%d:APA91b", i)
			name, err := fcmAppClient(t, s, tt.json, "").Send(context.Background(), &messaging.Message{Token: to,
				Notification: &messaging.Notification{Title: "Hi"}})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(name, "projects/"+tt.project+"/messages/0:") {
				t.Fatalf("name %q", name)
			}
			rec := lastRecord(t, s, "fcm", to)
			if rec.ID != name || rec.Status != 200 {
				t.Fatalf("record %+v", rec)
			}
			wantHeaders(t, rec, map[string]string{"sim-project-id": tt.project, "sim-client-email": tt.email})
		})
	}
}

// fcmAccessToken fetches an access token for a service-account JSON the way the Admin SDK does.
func fetchFCMAccessToken(t testing.TB, sa []byte) string {
	t.Helper()
	conf, err := google.JWTConfigFromJSON(sa, "https://www.googleapis.com/auth/firebase.messaging")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := conf.TokenSource(context.Background()).Token()
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

// fcmSendRaw posts one message to project's messages:send with the bearer token.
func fcmSendRaw(t testing.TB, s *Sim, bearer, project, to string) (int, googleErrorBody) {
	t.Helper()
	req, _ := http.NewRequest("POST", s.Info().FCM.Endpoint+"/projects/"+project+"/messages:send",
		strings.NewReader(`{"message":{"token":"`+to+`"}}`))
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body googleErrorBody
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func TestFCMTokenOfOneProjectIsRefusedByAnother(t *testing.T) {
	s := startSim(t, nil)
	saA, rawA := createFCMProject(t, s, "app-alpha-1")
	saB, rawB := createFCMProject(t, s, "app-bravo-2")
	conf, _ := os.ReadFile(s.Info().FCM.CredentialsFile)
	tokA, tokB, tokConf := fetchFCMAccessToken(t, rawA), fetchFCMAccessToken(t, rawB), fetchFCMAccessToken(t, conf)
	tests := []struct {
		name, bearer, project string
		wantStatus            int
		wantGoogleStatus      string
	}{
		{"A to A", tokA, saA.ProjectID, 200, ""},
		{"A to B", tokA, saB.ProjectID, 403, "PERMISSION_DENIED"},
		{"B to A", tokB, saA.ProjectID, 403, "PERMISSION_DENIED"},
		{"A to the configured project", tokA, "herald-local", 403, "PERMISSION_DENIED"},
		{"configured to A", tokConf, saA.ProjectID, 403, "PERMISSION_DENIED"},
		{"A to a project nobody made", tokA, "no-such-project", 403, "PERMISSION_DENIED"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			to := fmt.Sprintf("device-%d:APA91b", i)
			code, body := fcmSendRaw(t, s, tt.bearer, tt.project, to)
			if code != tt.wantStatus || body.Error.Status != tt.wantGoogleStatus {
				t.Fatalf("got %d %+v, want %d %s", code, body, tt.wantStatus, tt.wantGoogleStatus)
			}
			if code == 403 {
				if body.Error.Code != 403 || !strings.Contains(body.Error.Message, "projects/"+tt.project) {
					t.Fatalf("error %+v", body)
				}
				if recs := records(t, s, "fcm", to); len(recs) != 0 {
					t.Fatalf("a refused project recorded %+v", recs)
				}
			}
		})
	}
	t.Run("through the Admin SDK", func(t *testing.T) {
		_, err := fcmAppClient(t, s, rawA, saB.ProjectID).Send(context.Background(), &messaging.Message{Token: "x:APA91b"})
		if !errorutils.IsPermissionDenied(err) {
			t.Fatalf("got %v, want PERMISSION_DENIED", err)
		}
	})
	t.Run("assertion signed by A's key in B's name", func(t *testing.T) {
		var forged serviceAccount
		_ = json.Unmarshal(rawA, &forged)
		forged.ClientEmail = saB.ClientEmail
		raw, _ := json.Marshal(forged)
		conf, err := google.JWTConfigFromJSON(raw, "https://www.googleapis.com/auth/firebase.messaging")
		if err != nil {
			t.Fatal(err)
		}
		if tok, err := conf.TokenSource(context.Background()).Token(); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
			t.Fatalf("token %v, error %v", tok, err)
		}
	})
}

func smtpLogin(t testing.TB, s *Sim, user, pass, to string) (string, error) {
	t.Helper()
	return sendMail(t, s, smtp.PlainAuth("", user, pass, "127.0.0.1"), true, []string{to}, mailBody("Hi "+user, "body"))
}

func TestAdminSMTPAccountsLogInWithPlainAuthAndRecordsNameTheUser(t *testing.T) {
	s := startSim(t, nil)
	named := create[smtpAccount](t, s, "/sim/smtp/accounts", map[string]string{"username": "app-a@example.com"})
	generated := create[smtpAccount](t, s, "/sim/smtp/accounts", nil)
	if named.Username != "app-a@example.com" || generated.Username == "" || named.Password == "" || generated.Password == "" ||
		named.Password == generated.Password {
		t.Fatalf("accounts %+v %+v", named, generated)
	}
	tests := []struct {
		name, user, pass, to string
		wantStep             string
		wantCode             int
	}{
		{"configured user", "herald", "herald-sim", "c@example.com", "", 0},
		{"named account", named.Username, named.Password, "a@example.com", "", 0},
		{"generated account", generated.Username, generated.Password, "g@example.com", "", 0},
		{"wrong password", named.Username, "nope", "x@example.com", "auth", 535},
		{"A's user with B's password", named.Username, generated.Password, "x@example.com", "auth", 535},
		{"configured user with A's password", "herald", named.Password, "x@example.com", "auth", 535},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			step, err := smtpLogin(t, s, tt.user, tt.pass, tt.to)
			if step != tt.wantStep || smtpCode(err) != tt.wantCode {
				t.Fatalf("failed at %q with %v", step, err)
			}
			if tt.wantCode != 0 {
				return
			}
			rec := lastRecord(t, s, "smtp", tt.to)
			if rec.Status != 250 {
				t.Fatalf("record %+v", rec)
			}
			wantHeaders(t, rec, map[string]string{"sim-auth-user": tt.user, "subject": "Hi " + tt.user})
		})
	}
	t.Run("a refused recipient names the user", func(t *testing.T) {
		setFaults(t, s, "smtp", Faults{Unregistered: []string{"gone@example.com"}})
		if step, err := smtpLogin(t, s, named.Username, named.Password, "gone@example.com"); step != "rcpt" || smtpCode(err) != 550 {
			t.Fatalf("failed at %q with %v", step, err)
		}
		wantHeaders(t, lastRecord(t, s, "smtp", "gone@example.com"), map[string]string{"sim-auth-user": named.Username, "mail_from": "noreply@herald.local"})
	})
}

func TestAdminTwilioAccountsSendAndRecordsNameTheirAccount(t *testing.T) {
	s := startSim(t, nil)
	a := create[twilioAccount](t, s, "/sim/twilio/accounts", nil)
	b := create[twilioAccount](t, s, "/sim/twilio/accounts", nil)
	sidRE, tokenRE := regexp.MustCompile(`^AC[0-9a-f]{32}$`), regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, acct := range []twilioAccount{a, b} {
		if !sidRE.MatchString(acct.AccountSID) || !tokenRE.MatchString(acct.AuthToken) {
			t.Fatalf("account %+v", acct)
		}
	}
	if a.AccountSID == b.AccountSID || a.AuthToken == b.AuthToken {
		t.Fatalf("accounts alike: %+v %+v", a, b)
	}
	conf := twilioAccount{AccountSID: s.Info().SMS.AccountSID, AuthToken: s.cfg.SMS.AuthToken}
	tests := []struct {
		name                 string
		pathSID, user, token string
		wantStatus           int
		wantCode             float64
	}{
		{"configured account", conf.AccountSID, conf.AccountSID, conf.AuthToken, 201, 0},
		{"account A", a.AccountSID, a.AccountSID, a.AuthToken, 201, 0},
		{"account B", b.AccountSID, b.AccountSID, b.AuthToken, 201, 0},
		{"A's SID with B's token", a.AccountSID, a.AccountSID, b.AuthToken, 401, 20003},
		{"A's SID with the configured token", a.AccountSID, a.AccountSID, conf.AuthToken, 401, 20003},
		{"an unknown SID", "AC" + strings.Repeat("e", 32), "AC" + strings.Repeat("e", 32), a.AuthToken, 401, 20003},
		{"A's credentials on B's path", b.AccountSID, a.AccountSID, a.AuthToken, 404, 20404},
		{"B's credentials on the configured path", conf.AccountSID, b.AccountSID, b.AuthToken, 404, 20404},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			to := fmt.Sprintf("+4477009001%02d", i)
			resp, body := postSMSAs(t, s, tt.pathSID, tt.user, tt.token, smsForm(to, "hi"))
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("got %d %v", resp.StatusCode, body)
			}
			if tt.wantStatus != 201 {
				if body["code"] != tt.wantCode {
					t.Fatalf("body %v", body)
				}
				if recs := records(t, s, "sms", to); len(recs) != 0 {
					t.Fatalf("refused credentials recorded %+v", recs)
				}
				return
			}
			if body["account_sid"] != tt.user || !strings.HasPrefix(body["uri"].(string), "/2010-04-01/Accounts/"+tt.user+"/Messages/SM") {
				t.Fatalf("body %v", body)
			}
			rec := lastRecord(t, s, "sms", to)
			if rec.ID != body["sid"] {
				t.Fatalf("record %+v", rec)
			}
			wantHeaders(t, rec, map[string]string{"sim-account-sid": tt.user})
		})
	}
	t.Run("a refusal after authentication names the account", func(t *testing.T) {
		resp, _ := postSMSAs(t, s, a.AccountSID, a.AccountSID, a.AuthToken, smsForm("07700900123", "hi"))
		if resp.StatusCode != 400 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		wantHeaders(t, lastRecord(t, s, "sms", "07700900123"), map[string]string{"sim-account-sid": a.AccountSID})
	})
}

// postSMSAs is postSMS with basic-auth user and path SID apart.
func postSMSAs(t testing.TB, s *Sim, pathSID, user, authToken string, form url.Values) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", s.Info().SMS.URL+"/2010-04-01/Accounts/"+pathSID+"/Messages.json", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(user, authToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decoding: %v", err)
	}
	return resp, body
}

func TestTwilioCallbacksAreSignedWithTheSendingAccountsToken(t *testing.T) {
	s := startSim(t, nil)
	a := create[twilioAccount](t, s, "/sim/twilio/accounts", nil)
	type callback struct {
		sig    string
		params url.Values
	}
	got := make(chan callback, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		got <- callback{r.Header.Get("X-Twilio-Signature"), r.PostForm}
	}))
	defer srv.Close()
	cbURL := srv.URL + "/twilio/status?app=a"
	form := smsForm(smsTo, "hi")
	form.Set("StatusCallback", cbURL)
	if resp, body := postSMS(t, s, a.AccountSID, a.AuthToken, form); resp.StatusCode != 201 {
		t.Fatalf("%d %v", resp.StatusCode, body)
	}
	for _, want := range []string{"sent", "delivered"} {
		select {
		case cb := <-got:
			if cb.params.Get("MessageStatus") != want || cb.params.Get("AccountSid") != a.AccountSID {
				t.Fatalf("callback %v, want %s of %s", cb.params, want, a.AccountSID)
			}
			if cb.sig != TwilioSignature(a.AuthToken, cbURL, cb.params) {
				t.Fatalf("%s callback does not verify with the account's token", want)
			}
			if cb.sig == TwilioSignature(s.cfg.SMS.AuthToken, cbURL, cb.params) {
				t.Fatalf("%s callback verifies with the configured account's token", want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s callback", want)
		}
	}
}

func TestAdminAccountRoutesRefuseBadBodies(t *testing.T) {
	s := startSim(t, nil)
	create[serviceAccount](t, s, "/sim/fcm/projects", map[string]string{"project_id": "taken-project"})
	create[smtpAccount](t, s, "/sim/smtp/accounts", map[string]string{"username": "taken-user"})
	tests := []struct {
		name, path, body string
		wantStatus       int
		wantCode         string
		wantField        string
	}{
		{"apns: malformed JSON", "/sim/apns/keys", `{"team_id":`, 400, "invalid_argument", ""},
		{"apns: unknown field", "/sim/apns/keys", `{"team":"ABCDEFGHIJ"}`, 400, "invalid_argument", ""},
		{"apns: two objects", "/sim/apns/keys", `{} {}`, 400, "invalid_argument", ""},
		{"apns: an array", "/sim/apns/keys", `[]`, 400, "invalid_argument", ""},
		{"apns: team id lower-case", "/sim/apns/keys", `{"team_id":"abcdefghij"}`, 400, "invalid_argument", "team_id"},
		{"apns: team id too short", "/sim/apns/keys", `{"team_id":"ABC"}`, 400, "invalid_argument", "team_id"},
		{"apns: team id not a string", "/sim/apns/keys", `{"team_id":42}`, 400, "invalid_argument", ""},
		{"fcm: no body", "/sim/fcm/projects", ``, 400, "invalid_argument", "project_id"},
		{"fcm: malformed JSON", "/sim/fcm/projects", `{"project_id"`, 400, "invalid_argument", ""},
		{"fcm: unknown field", "/sim/fcm/projects", `{"project_id":"my-app-123","region":"eu"}`, 400, "invalid_argument", ""},
		{"fcm: upper-case project", "/sim/fcm/projects", `{"project_id":"My-App-123"}`, 400, "invalid_argument", "project_id"},
		{"fcm: project too short", "/sim/fcm/projects", `{"project_id":"app"}`, 400, "invalid_argument", "project_id"},
		{"fcm: the configured project", "/sim/fcm/projects", `{"project_id":"herald-local"}`, 409, "already_exists", "project_id"},
		{"fcm: a made project", "/sim/fcm/projects", `{"project_id":"taken-project"}`, 409, "already_exists", "project_id"},
		{"smtp: malformed JSON", "/sim/smtp/accounts", `{`, 400, "invalid_argument", ""},
		{"smtp: unknown field", "/sim/smtp/accounts", `{"user":"x"}`, 400, "invalid_argument", ""},
		{"smtp: user name with a space", "/sim/smtp/accounts", `{"username":"a b"}`, 400, "invalid_argument", "username"},
		{"smtp: user name with a NUL", "/sim/smtp/accounts", `{"username":"a\u0000b"}`, 400, "invalid_argument", "username"},
		{"smtp: the configured user", "/sim/smtp/accounts", `{"username":"herald"}`, 409, "already_exists", "username"},
		{"smtp: a made user", "/sim/smtp/accounts", `{"username":"taken-user"}`, 409, "already_exists", "username"},
		{"twilio: malformed JSON", "/sim/twilio/accounts", `nope`, 400, "invalid_argument", ""},
		{"twilio: unknown field", "/sim/twilio/accounts", `{"account_sid":"AC00000000000000000000000000000002"}`, 400, "invalid_argument", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(s.Info().Admin+tt.path, "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e struct {
				Error struct{ Code, Message, Field string }
			}
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatalf("%d, body not JSON: %v", resp.StatusCode, err)
			}
			if resp.StatusCode != tt.wantStatus || e.Error.Code != tt.wantCode || e.Error.Field != tt.wantField || e.Error.Message == "" {
				t.Fatalf("got %d %+v, want %d %s field %q", resp.StatusCode, e, tt.wantStatus, tt.wantCode, tt.wantField)
			}
		})
	}
	t.Run("empty and null bodies take the defaults", func(t *testing.T) {
		for _, path := range []string{"/sim/apns/keys", "/sim/smtp/accounts", "/sim/twilio/accounts"} {
			for _, body := range []string{"", "{}", "null", " \n"} {
				resp, err := http.Post(s.Info().Admin+path, "application/json", strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 201 {
					t.Fatalf("POST %s %q: %d", path, body, resp.StatusCode)
				}
			}
		}
	})
}

func TestAdminAccountsMadeConcurrentlyAreDistinctAndAllWork(t *testing.T) {
	s := startSim(t, nil)
	// Many requests at once make the client dial connections it then never uses; the server's
	// shutdown waits up to 5 s for those, longer than the test's drain, so close them first.
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	const n = 20
	var (
		wg      sync.WaitGroup
		apnsK   [n]apnsKeyAccount
		fcmSA   [n]json.RawMessage
		smtpA   [n]smtpAccount
		twilioA [n]twilioAccount
	)
	// The configured key keeps sending while the new ones are made.
	stop := make(chan struct{})
	var busy sync.WaitGroup
	busy.Add(1)
	c := apnsClient(t, s, nil)
	go func() {
		defer busy.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if res, err := c.Push(alert(deviceToken)); err != nil || res.StatusCode != 200 {
				t.Errorf("configured key during creation: %+v %v", res, err)
				return
			}
		}
	}()
	errs := make(chan error, 4*n)
	for i := range n {
		wg.Add(4)
		go func() {
			defer wg.Done()
			var err error
			apnsK[i], err = tryCreate[apnsKeyAccount](s, "/sim/apns/keys", nil)
			errs <- err
		}()
		go func() {
			defer wg.Done()
			var err error
			fcmSA[i], err = tryCreate[json.RawMessage](s, "/sim/fcm/projects", map[string]string{"project_id": fmt.Sprintf("concurrent-%02d", i)})
			errs <- err
		}()
		go func() {
			defer wg.Done()
			var err error
			smtpA[i], err = tryCreate[smtpAccount](s, "/sim/smtp/accounts", nil)
			errs <- err
		}()
		go func() {
			defer wg.Done()
			var err error
			twilioA[i], err = tryCreate[twilioAccount](s, "/sim/twilio/accounts", nil)
			errs <- err
		}()
	}
	wg.Wait()
	close(stop)
	busy.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	var f accountsFile
	raw, err := os.ReadFile(s.Info().AccountsFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.APNsKeys) != n || len(f.ServiceAccounts) != n || len(f.SMTPAccounts) != n || len(f.TwilioAccounts) != n {
		t.Fatalf("accounts file holds %d, %d, %d, %d accounts, want %d of each",
			len(f.APNsKeys), len(f.ServiceAccounts), len(f.SMTPAccounts), len(f.TwilioAccounts), n)
	}

	seen := map[string]bool{}
	distinct := func(id string) {
		if id == "" || seen[id] {
			t.Fatalf("id %q repeated or empty", id)
		}
		seen[id] = true
	}
	for i := range n {
		distinct("apns " + apnsK[i].KeyID)
		distinct("smtp " + smtpA[i].Username)
		distinct("twilio " + twilioA[i].AccountSID)
	}
	for i := range n {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			device := fmt.Sprintf("%064x", 1000+i)
			if res, err := apnsClient(t, s, apnsKeyToken(t, apnsK[i])).Push(alert(device)); err != nil || res.StatusCode != 200 {
				t.Errorf("apns key %s: %+v %v", apnsK[i].KeyID, res, err)
			}
			project := fmt.Sprintf("concurrent-%02d", i)
			if code, body := fcmSendRaw(t, s, fetchFCMAccessToken(t, fcmSA[i]), project, "x:APA91b"); code != 200 {
				t.Errorf("fcm %s: %d %+v", project, code, body)
			}
			to := fmt.Sprintf("user%d@example.com", i)
			if step, err := smtpLogin(t, s, smtpA[i].Username, smtpA[i].Password, to); err != nil {
				t.Errorf("smtp %s: %s %v", smtpA[i].Username, step, err)
			}
			if resp, body := postSMS(t, s, twilioA[i].AccountSID, twilioA[i].AuthToken, smsForm(smsTo, "hi")); resp.StatusCode != 201 {
				t.Errorf("twilio %s: %d %v", twilioA[i].AccountSID, resp.StatusCode, body)
			}
		})
	}
}

func TestAdminAccountsSurviveARestartOnTheSameDirectory(t *testing.T) {
	dir := t.TempDir()
	mutate := func(c *Config) { c.Dir = dir }
	s1, stop1 := startSimStop(t, mutate)
	apnsKey := create[apnsKeyAccount](t, s1, "/sim/apns/keys", map[string]string{"team_id": "TEAMR00001"})
	sa, _ := createFCMProject(t, s1, "restart-app-1")
	smtpA := create[smtpAccount](t, s1, "/sim/smtp/accounts", nil)
	twilioA := create[twilioAccount](t, s1, "/sim/twilio/accounts", nil)
	stop1()

	st, err := os.Stat(filepath.Join(dir, "accounts.json"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("accounts.json mode %v, want 0600", st.Mode().Perm())
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".accounts.json.*")); len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}

	s2 := startSim(t, mutate) // new ports, same dir
	if s2.Info().AccountsFile != filepath.Join(dir, "accounts.json") {
		t.Fatalf("accounts_file %q", s2.Info().AccountsFile)
	}
	device := strings.Repeat("e5", 32)
	if res, err := apnsClient(t, s2, apnsKeyToken(t, apnsKey)).Push(alert(device)); err != nil || res.StatusCode != 200 {
		t.Fatalf("apns after restart: %+v %v", res, err)
	}
	wantHeaders(t, lastRecord(t, s2, "apns", device), map[string]string{"sim-key-id": apnsKey.KeyID, "sim-team-id": "TEAMR00001"})

	// The stack restarts on the same ports; here the port moved, so point the JSON at it.
	sa.TokenURI = s2.Info().FCM.TokenURI
	raw, _ := json.Marshal(sa)
	if _, err := fcmAppClient(t, s2, raw, "").Send(context.Background(), &messaging.Message{Token: "r:APA91b"}); err != nil {
		t.Fatalf("fcm after restart: %v", err)
	}
	wantHeaders(t, lastRecord(t, s2, "fcm", "r:APA91b"), map[string]string{"sim-project-id": sa.ProjectID, "sim-client-email": sa.ClientEmail})

	if step, err := smtpLogin(t, s2, smtpA.Username, smtpA.Password, "r@example.com"); err != nil {
		t.Fatalf("smtp after restart: %s %v", step, err)
	}
	wantHeaders(t, lastRecord(t, s2, "smtp", "r@example.com"), map[string]string{"sim-auth-user": smtpA.Username})

	if resp, body := postSMS(t, s2, twilioA.AccountSID, twilioA.AuthToken, smsForm(smsTo, "hi")); resp.StatusCode != 201 {
		t.Fatalf("twilio after restart: %d %v", resp.StatusCode, body)
	}
	wantHeaders(t, lastRecord(t, s2, "sms", smsTo), map[string]string{"sim-account-sid": twilioA.AccountSID})

	// Ids made before the restart stay taken.
	if code := admin(t, s2, "POST", "/sim/fcm/projects", map[string]string{"project_id": "restart-app-1"}, nil); code != 409 {
		t.Fatalf("project made before the restart: %d, want 409", code)
	}
	if code := admin(t, s2, "POST", "/sim/smtp/accounts", map[string]string{"username": smtpA.Username}, nil); code != 409 {
		t.Fatalf("user made before the restart: %d, want 409", code)
	}
}

func TestAccountsFileThatClashesWithTheConfigKeepsTheConfiguredAccount(t *testing.T) {
	dir := t.TempDir()
	s1, stop1 := startSimStop(t, func(c *Config) { c.Dir = dir })
	made := create[smtpAccount](t, s1, "/sim/smtp/accounts", map[string]string{"username": "app-b"})
	stop1()
	// The configuration now names the made user, with its own password.
	s2 := startSim(t, func(c *Config) { c.Dir = dir; c.SMTP.Username, c.SMTP.Password = "app-b", "configured-pw" })
	if _, err := smtpLogin(t, s2, "app-b", made.Password, "x@example.com"); smtpCode(err) != 535 {
		t.Fatalf("the made password still works: %v", err)
	}
	if step, err := smtpLogin(t, s2, "app-b", "configured-pw", "y@example.com"); err != nil {
		t.Fatalf("the configured password: %s %v", step, err)
	}
}

func TestCorruptAccountsFileStopsTheStart(t *testing.T) {
	for _, tc := range []struct{ name, content string }{
		{"not JSON", "{"},
		{"unknown key", `{"pagers": []}`},
		{"APNs key not PEM", `{"apns_keys": [{"team_id": "TEAMA00001", "key_id": "KEYA000001", "key": "nope"}]}`},
		{"service account key not PEM", `{"fcm_service_accounts": [{"project_id": "app-alpha-1", "private_key": "nope"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig(t.TempDir())
			cfg.Webhook.Listen = "127.0.0.1:0"
			cfg.Admin.Listen, cfg.APNs.Listen, cfg.FCM.Listen, cfg.SMTP.Listen, cfg.SMS.Listen =
				"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
			if err := os.WriteFile(filepath.Join(cfg.Dir, "accounts.json"), []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if s, err := New(cfg, slog.New(slog.DiscardHandler), "test"); err == nil || !strings.Contains(err.Error(), "accounts") {
				if s != nil {
					s.closeListeners()
				}
				t.Fatalf("New: %v, want an error naming the accounts file", err)
			}
		})
	}
}

func FuzzDecodeAdminBody(f *testing.F) {
	for _, seed := range []string{"", " ", "{}", "null", `{"team_id":"ABCDEFGHIJ"}`, `{"team_id":1}`, `{"x":1}`, `{} {}`, `[]`, `{`, "\x00"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var req struct {
			TeamID string `json:"team_id"`
		}
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "/sim/apns/keys", strings.NewReader(body))
		if decodeAdminBody(w, r, &req) {
			if strings.TrimSpace(body) != "" && !json.Valid([]byte(body)) {
				t.Fatalf("accepted invalid JSON %q", body)
			}
			return
		}
		var e struct {
			Error struct{ Code, Message string }
		}
		if w.Code != 400 || json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error.Code != "invalid_argument" || e.Error.Message == "" {
			t.Fatalf("refused %q with %d %s", body, w.Code, w.Body)
		}
	})
}
