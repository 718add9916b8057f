package api

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/credentials"
)

// fakeCreds is an in-memory CredentialStore keyed by app and kind.
type fakeCreds struct {
	stored  map[string]wire.Credential
	version int64
}

func (f *fakeCreds) Put(_ context.Context, app, j string, c wire.Credential) (credentials.View, bool, error) {
	_, had := f.stored[app+"/"+c.Kind]
	f.stored[app+"/"+c.Kind] = c
	f.version++
	return credentials.View{Kind: c.Kind, Jurisdiction: j, Version: f.version, Settings: c.Settings(), Fingerprint: c.Fingerprint(), CreatedAt: time.Now(), UpdatedAt: time.Now()}, !had, nil
}
func (f *fakeCreds) Get(_ context.Context, app, j, kind string) (credentials.View, error) {
	c, ok := f.stored[app+"/"+kind]
	if !ok {
		return credentials.View{}, credentials.ErrNotFound
	}
	return credentials.View{Kind: kind, Jurisdiction: j, Version: f.version, Settings: c.Settings(), Fingerprint: c.Fingerprint()}, nil
}
func (f *fakeCreds) List(_ context.Context, app, j string) ([]credentials.View, error) {
	out := []credentials.View{}
	for _, k := range wire.CredentialKinds {
		if v, err := f.Get(context.Background(), app, j, k); err == nil {
			out = append(out, v)
		}
	}
	return out, nil
}
func (f *fakeCreds) Delete(_ context.Context, app, _, kind string) error {
	if _, ok := f.stored[app+"/"+kind]; !ok {
		return credentials.ErrNotFound
	}
	delete(f.stored, app+"/"+kind)
	return nil
}

func TestCredentialRoutesStoreRotateShowAndDeleteWithoutEverAnsweringASecret(t *testing.T) {
	store := &fakeCreds{stored: map[string]wire.Credential{}}
	check := func(c wire.Credential) *wire.Error {
		if c.Kind == wire.CredentialFCM && c.FCM.ServiceAccount.TokenURI != "https://oauth2.googleapis.com/token" {
			return &wire.Error{Code: wire.CodeInvalidField, Field: "service_account.token_uri", Message: "not called"}
		}
		return nil
	}
	s := &Server{Region: "eu-west-1", Jurisdiction: "EU", Credentials: store, CheckCredential: check, Logger: slog.New(slog.DiscardHandler)}
	engine := testEngine(s)
	app := map[string]string{AppHeader: "app1"}
	token := strings.Repeat("7e", 16)
	twilio := `{"account_sid":"AC` + strings.Repeat("0a", 16) + `","auth_token":"` + token + `","from":"+15005550006"}`
	sa := `{"service_account":{"type":"service_account","project_id":"acme-push-1","private_key_id":"k1","private_key":"x","client_email":"a@acme-push-1.iam.gserviceaccount.com","token_uri":"https://evil.example/token"}}`
	tests := []struct {
		name, method, path, body string
		status                   int
		code, field, contains    string
	}{
		{"store", "PUT", "/v1/credentials/twilio", twilio, 201, "", "", `"account_sid":"AC0a0a`},
		{"rotate", "PUT", "/v1/credentials/twilio", strings.Replace(twilio, token, strings.Repeat("8f", 16), 1), 200, "", "", `"version":2`},
		{"get", "GET", "/v1/credentials/twilio", ``, 200, "", "", `"fingerprint":"sha256:`},
		{"list", "GET", "/v1/credentials", ``, 200, "", "", `"jurisdiction":"EU"`},
		{"unknown kind", "PUT", "/v1/credentials/mailgun", `{}`, 400, CodeInvalidField, "kind", ""},
		{"kind in upper case", "GET", "/v1/credentials/TWILIO", ``, 400, CodeInvalidField, "kind", ""},
		{"bad sid", "PUT", "/v1/credentials/twilio", strings.Replace(twilio, "AC0a", "AC0A", 1), 400, CodeInvalidField, "account_sid", ""},
		{"unknown member", "PUT", "/v1/credentials/twilio", strings.Replace(twilio, `}`, `,"sid":"x"}`, 1), 400, CodeUnknownField, "sid", ""},
		{"empty body", "PUT", "/v1/credentials/twilio", ``, 400, CodeMalformedJSON, "", ""},
		{"huge body", "PUT", "/v1/credentials/twilio", `{"from":"` + strings.Repeat("1", 20<<10) + `"}`, 400, CodePayloadTooLarge, "", ""},
		{"invalid key refused before the region's rule", "PUT", "/v1/credentials/fcm", sa, 400, CodeInvalidField, "service_account.private_key", ""},
		{"get missing", "GET", "/v1/credentials/apns", ``, 404, CodeNotFound, "", ""},
		{"delete with a body", "DELETE", "/v1/credentials/twilio", `{"x":1}`, 400, CodeUnknownField, "x", ""},
		{"delete", "DELETE", "/v1/credentials/twilio", ``, 204, "", "", ""},
		{"delete again", "DELETE", "/v1/credentials/twilio", ``, 404, CodeNotFound, "", ""},
	}
	doc := loadOpenAPI(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(engine, tt.method, tt.path, tt.body, app)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if strings.Contains(rec.Body.String(), token) || strings.Contains(rec.Body.String(), strings.Repeat("8f", 16)) {
				t.Fatalf("the answer shows the auth token: %s", rec.Body)
			}
			if tt.code != "" {
				var b struct{ Error struct{ Code, Field string } }
				_ = json.Unmarshal(rec.Body.Bytes(), &b)
				if b.Error.Code != tt.code || b.Error.Field != tt.field {
					t.Fatalf("error %+v, want %s (%s)", b.Error, tt.code, tt.field)
				}
				route := "/v1/credentials/:kind"
				if tt.path == "/v1/credentials" {
					route = tt.path
				}
				checkDocumentedError(t, doc, tt.name, tt.method, route, rec, tt.status, tt.code)
			}
			if !strings.Contains(rec.Body.String(), tt.contains) {
				t.Fatalf("body %s lacks %s", rec.Body, tt.contains)
			}
		})
	}
	// A well-formed service account naming a token endpoint the region does not call: 422.
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	pemKey, _ := json.Marshal(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	rec := serve(engine, "PUT", "/v1/credentials/fcm", strings.Replace(sa, `"x"`, string(pemKey), 1), app)
	var b struct{ Error struct{ Code, Field string } }
	_ = json.Unmarshal(rec.Body.Bytes(), &b)
	if rec.Code != 422 || b.Error.Code != CodeCredentialRefused || b.Error.Field != "service_account.token_uri" {
		t.Fatalf("a token endpoint the region does not call: %d %s", rec.Code, rec.Body)
	}
	checkDocumentedError(t, doc, "token_uri", "PUT", "/v1/credentials/:kind", rec, 422, CodeCredentialRefused)
	if _, ok := store.stored["app1/fcm"]; ok {
		t.Fatal("the refused credential was stored")
	}
	// Another app sees nothing of app1's.
	store.stored["app1/twilio"] = wire.Credential{Kind: wire.CredentialTwilio, Twilio: &wire.TwilioCredential{AccountSID: "AC" + strings.Repeat("0a", 16), AuthToken: token, From: "+15005550006"}}
	if rec := serve(engine, "GET", "/v1/credentials/twilio", ``, map[string]string{AppHeader: "app2"}); rec.Code != 404 {
		t.Fatalf("app2 read app1's credential: %d %s", rec.Code, rec.Body)
	}
}
