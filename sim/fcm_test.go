package sim

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"
)

const fcmToken = "dGVzdC10b2tlbg:APA91bH-sim_0123456789abcdefghijklmnopqrstuvwxyz"

// fcmClient is how Herald's dispatcher will use the Firebase Admin SDK against the simulator:
// the service-account JSON the simulator wrote (its token_uri points at the simulator, so the
// OAuth2 exchange lands there) and option.WithEndpoint for the messages API.
func fcmClient(t testing.TB, s *Sim, credOpt func([]byte) option.ClientOption) *messaging.Client {
	t.Helper()
	sa, err := os.ReadFile(s.Info().FCM.CredentialsFile)
	if err != nil {
		t.Fatal(err)
	}
	if credOpt == nil {
		credOpt = option.WithCredentialsJSON //nolint:staticcheck // the brief's option; WithAuthCredentialsJSON is tested too
	}
	ctx := context.Background()
	app, err := firebase.NewApp(ctx, nil, credOpt(sa), option.WithEndpoint(s.Info().FCM.Endpoint))
	if err != nil {
		t.Fatal(err)
	}
	c, err := app.Messaging(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFCMAcceptsASendFromTheFirebaseAdminSDK(t *testing.T) {
	s := startSim(t, nil)
	for _, tc := range []struct {
		name string
		opt  func([]byte) option.ClientOption
	}{
		{"WithCredentialsJSON (oauth2/google)", nil},
		{"WithAuthCredentialsJSON (cloud.google.com/go/auth)", func(b []byte) option.ClientOption {
			return option.WithAuthCredentialsJSON(option.ServiceAccount, b)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			admin(t, s, "DELETE", "/sim/fcm/messages", nil, nil)
			c := fcmClient(t, s, tc.opt)
			name, err := c.Send(context.Background(), &messaging.Message{
				Token:        fcmToken,
				Notification: &messaging.Notification{Title: "Hi", Body: "Your order shipped"},
				Data:         map[string]string{"order": "42"},
			})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(name, "projects/herald-local/messages/0:") {
				t.Fatalf("name %q", name)
			}
			recs := records(t, s, "fcm", fcmToken)
			if len(recs) != 1 || recs[0].ID != name || recs[0].Status != 200 {
				t.Fatalf("records %+v", recs)
			}
			var body struct {
				Message struct {
					Data         map[string]string     `json:"data"`
					Notification struct{ Body string } `json:"notification"`
				} `json:"message"`
			}
			if err := json.Unmarshal(recs[0].Payload, &body); err != nil || body.Message.Data["order"] != "42" ||
				body.Message.Notification.Body != "Your order shipped" {
				t.Fatalf("payload %s (%v)", recs[0].Payload, err)
			}
			if !strings.HasPrefix(recs[0].Headers["x-firebase-client"], "fire-admin-go/") {
				t.Fatalf("headers %v", recs[0].Headers)
			}
		})
	}
}

func TestFCMTopicsAndDryRuns(t *testing.T) {
	s := startSim(t, nil)
	c := fcmClient(t, s, nil)
	ctx := context.Background()
	if _, err := c.Send(ctx, &messaging.Message{Topic: "news", Data: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	if recs := records(t, s, "fcm", "/topics/news"); len(recs) != 1 {
		t.Fatalf("topic records %+v", recs)
	}
	name, err := c.SendDryRun(ctx, &messaging.Message{Token: fcmToken})
	if err != nil || name != "projects/herald-local/messages/fake_message_id" {
		t.Fatalf("dry run: %q %v", name, err)
	}
	if recs := records(t, s, "fcm", fcmToken); len(recs) != 1 || recs[0].Headers["validate_only"] != "true" {
		t.Fatalf("dry-run records %+v", recs)
	}
}

func TestFCMFaultsMapToTheAdminSDKsErrorChecks(t *testing.T) {
	s := startSim(t, nil)
	c := fcmClient(t, s, nil)
	tests := []struct {
		name   string
		faults Faults
		check  func(error) bool
		status int
	}{
		{"unregistered token", Faults{Unregistered: []string{fcmToken}}, messaging.IsUnregistered, 404},
		{"invalid token", Faults{Invalid: []string{fcmToken}}, messaging.IsInvalidArgument, 400},
		{"quota exceeded", Faults{RateLimitRate: 1}, messaging.IsQuotaExceeded, 429},
		{"internal error", Faults{ErrorRate: 1, ErrorStatuses: []int{500}}, messaging.IsInternal, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setFaults(t, s, "fcm", tt.faults)
			admin(t, s, "DELETE", "/sim/fcm/messages", nil, nil)
			_, err := c.Send(context.Background(), &messaging.Message{Token: fcmToken})
			if err == nil || !tt.check(err) {
				t.Fatalf("error %v does not pass the SDK's check", err)
			}
			if recs := records(t, s, "fcm", fcmToken); len(recs) != 1 || recs[0].Status != tt.status {
				t.Fatalf("records %+v", recs)
			}
		})
	}
}

func TestFCMUnavailableIsRetriedByTheSDKThenReported(t *testing.T) {
	t.Parallel() // the SDK backs off 1+2+4 s between its retries of 503
	s := startSim(t, func(c *Config) { c.FCM.Faults = Faults{ErrorRate: 1, ErrorStatuses: []int{503}} })
	_, err := fcmClient(t, s, nil).Send(context.Background(), &messaging.Message{Token: fcmToken})
	if !messaging.IsUnavailable(err) {
		t.Fatalf("error %v is not UNAVAILABLE", err)
	}
	if recs := records(t, s, "fcm", fcmToken); len(recs) != 5 {
		t.Fatalf("want the first try and 4 retries recorded, got %d", len(recs))
	}
}

func TestFCMOutageEndsAndTheSDKsRetrySucceeds(t *testing.T) {
	t.Parallel()
	s := startSim(t, nil)
	c := fcmClient(t, s, nil)
	// A first send fetches the client's OAuth token and opens its connection, so the outage
	// (which starts when it is set) meets the send itself, however slow the machine.
	if _, err := c.Send(context.Background(), &messaging.Message{Token: fcmToken}); err != nil {
		t.Fatal(err)
	}
	admin(t, s, "DELETE", "/sim/fcm/messages", nil, nil)
	setFaults(t, s, "fcm", Faults{OutageSeconds: 2}) // the SDK retries 503 after 1, 2, 4 s
	name, err := c.Send(context.Background(), &messaging.Message{Token: fcmToken})
	if err != nil || name == "" {
		t.Fatalf("%q %v", name, err)
	}
	recs := records(t, s, "fcm", fcmToken)
	if len(recs) < 2 || recs[0].Status != 503 || recs[len(recs)-1].Status != 200 {
		t.Fatalf("want 503s then 200: %+v", recs)
	}
}

func TestFCMRefusesCredentialsItDidNotIssue(t *testing.T) {
	s := startSim(t, nil)
	// The same service account with another private key: the assertion's signature fails.
	raw, _ := os.ReadFile(s.Info().FCM.CredentialsFile)
	var sa serviceAccount
	_ = json.Unmarshal(raw, &sa)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(other)
	sa.PrivateKey = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	forged, _ := json.Marshal(sa)
	// golang.org/x/oauth2/google's JWT config is the token fetch the Admin SDK does.
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		json    []byte
		wantErr bool
	}{{"issued key", raw, false}, {"other key", forged, true}} {
		conf, err := google.JWTConfigFromJSON(tc.json, "https://www.googleapis.com/auth/firebase.messaging")
		if err != nil {
			t.Fatal(err)
		}
		tok, err := conf.TokenSource(ctx).Token()
		if tc.wantErr != (err != nil) || (err != nil && !strings.Contains(err.Error(), "invalid_grant")) {
			t.Fatalf("%s: token %v, error %v", tc.name, tok, err)
		}
		if err == nil && (!strings.HasPrefix(tok.AccessToken, "ya29.") || time.Until(tok.Expiry) < 50*time.Minute) {
			t.Fatalf("%s: token %+v", tc.name, tok)
		}
	}

	tests := []struct {
		name, authz, path string
		wantStatus        int
		wantGoogleStatus  string
	}{
		{"no bearer", "", "/v1/projects/herald-local/messages:send", 401, "UNAUTHENTICATED"},
		{"unknown access token", "Bearer ya29.nope", "/v1/projects/herald-local/messages:send", 401, "UNAUTHENTICATED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", strings.TrimSuffix(s.Info().FCM.Endpoint, "/v1")+tt.path, strings.NewReader(`{"message":{"token":"x"}}`))
			if tt.authz != "" {
				req.Header.Set("Authorization", tt.authz)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body googleErrorBody
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tt.wantStatus || body.Error.Status != tt.wantGoogleStatus || body.Error.Code != tt.wantStatus {
				t.Fatalf("got %d %+v", resp.StatusCode, body)
			}
		})
	}
}

func TestFCMTokenEndpointChecksTheGrant(t *testing.T) {
	s := startSim(t, nil)
	tests := []struct {
		name      string
		form      url.Values
		wantError string
	}{
		{"wrong grant type", url.Values{"grant_type": {"client_credentials"}}, "unsupported_grant_type"},
		{"assertion not a JWT", url.Values{"grant_type": {jwtBearerGrant}, "assertion": {"nope"}}, "invalid_grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.PostForm(s.Info().FCM.TokenURI, tt.form)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body map[string]string
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != 400 || body["error"] != tt.wantError {
				t.Fatalf("got %d %v", resp.StatusCode, body)
			}
		})
	}
}

func TestFCMProjectMustMatchTheServiceAccount(t *testing.T) {
	s := startSim(t, nil)
	raw, _ := os.ReadFile(s.Info().FCM.CredentialsFile)
	ctx := context.Background()
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: "someone-else"},
		option.WithAuthCredentialsJSON(option.ServiceAccount, raw), option.WithEndpoint(s.Info().FCM.Endpoint))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := app.Messaging(ctx)
	_, err = c.Send(ctx, &messaging.Message{Token: fcmToken})
	if err == nil || !strings.Contains(err.Error(), "Permission 'cloudmessaging.messages.create' denied") {
		t.Fatalf("got %v", err)
	}
}

func TestFCMValidatesTheMessageLikeFCM(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantTo  string
		wantErr bool
	}{
		{"token", `{"message":{"token":"abc:DEF-1_2"}}`, "abc:DEF-1_2", false},
		{"topic with prefix", `{"message":{"topic":"/topics/news"}}`, "/topics/news", false},
		{"condition", `{"message":{"condition":"'a' in topics"}}`, "'a' in topics", false},
		{"no target", `{"message":{}}`, "", true},
		{"two targets", `{"message":{"token":"a","topic":"b"}}`, "", true},
		{"no message", `{}`, "", true},
		{"not JSON", `{`, "", true},
		{"non-string data value", `{"message":{"token":"a","data":{"n":1}}}`, "", true},
		{"reserved data key", `{"message":{"token":"a","data":{"google.x":"1"}}}`, "", true},
		{"data over 4KB", `{"message":{"token":"a","data":{"k":"` + strings.Repeat("x", 4100) + `"}}}`, "", true},
		{"bad token characters", `{"message":{"token":"a b"}}`, "", true},
		{"bad topic", `{"message":{"topic":"a b"}}`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			to, _, f := checkFCMMessage([]byte(tt.body))
			if (f != nil) != tt.wantErr || to != tt.wantTo {
				t.Fatalf("to %q fault %+v", to, f)
			}
			if f != nil && (f.code != 400 || f.errorCode != "INVALID_ARGUMENT") {
				t.Fatalf("fault %+v", f)
			}
		})
	}
}

func TestFCMAccessTokensExpire(t *testing.T) {
	s := startSim(t, nil)
	acct := s.fcm.account("firebase-adminsdk-sim@herald-local.iam.gserviceaccount.com")
	if acct == nil {
		t.Fatal("the configured service account is not known")
	}
	s.fcm.tokens.Store("ya29.old", fcmAccessToken{exp: time.Now().Add(-time.Second).Unix(), account: acct})
	if s.fcm.authorized("Bearer ya29.old", time.Now()) != nil {
		t.Fatal("an expired access token was accepted")
	}
}
