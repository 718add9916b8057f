package wire

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
)

func pkcs8PEM(t testing.TB, k any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// testKeys are keys of each kind the credentials take, made once.
type testKeys struct {
	p256, p384, rsa2048, rsa1024, ed string
	rsaPKCS1                         string
}

func makeTestKeys(t testing.TB) testKeys {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	r2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	r1024, _ := rsa.GenerateKey(rand.Reader, 1024) //nolint:gosec // a test of the refusal of short keys
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	return testKeys{p256: pkcs8PEM(t, p256), p384: pkcs8PEM(t, p384), rsa2048: pkcs8PEM(t, r2048), rsa1024: pkcs8PEM(t, r1024), ed: pkcs8PEM(t, ed),
		rsaPKCS1: string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(r2048)}))}
}

func serviceAccount(k testKeys) map[string]any {
	return map[string]any{"type": "service_account", "project_id": "acme-push-1", "private_key_id": "0123abcd", "private_key": k.rsa2048,
		"client_email": "firebase-adminsdk@acme-push-1.iam.gserviceaccount.com", "client_id": "1074932682", "token_uri": "https://oauth2.googleapis.com/token",
		"auth_uri": "https://accounts.google.com/o/oauth2/auth", "universe_domain": "googleapis.com"}
}

func with(m map[string]any, k string, v any) map[string]any {
	out := map[string]any{}
	for a, b := range m {
		out[a] = b
	}
	if v == nil {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

func TestDecodeCredentialAcceptsEachKindAndRefusesWhatItCannotUse(t *testing.T) {
	k := makeTestKeys(t)
	apns := map[string]any{"team_id": "ABCDE12345", "key_id": "KEY1234567", "topic": "com.acme.app", "private_key": k.p256}
	sa := serviceAccount(k)
	smtp := map[string]any{"from": "Acme <no-reply@mail.acme.com>", "username": "acme", "password": "s3cret"}
	dkim := map[string]any{"domain": "acme.com", "selector": "s1", "private_key": k.rsa2048}
	twilio := map[string]any{"account_sid": "AC" + strings.Repeat("0a", 16), "auth_token": strings.Repeat("f1", 16), "from": "+15005550006"}
	tests := []struct {
		name, kind, body, code, field string
	}{
		{"apns", CredentialAPNs, mustJSON(t, apns), "", ""},
		{"apns voip topic", CredentialAPNs, mustJSON(t, with(apns, "topic", "com.acme.app.voip")), "", ""},
		{"apns lower-case team", CredentialAPNs, mustJSON(t, with(apns, "team_id", "abcde12345")), CodeInvalidField, "team_id"},
		{"apns Unicode team", CredentialAPNs, mustJSON(t, with(apns, "team_id", "ABCDE1234５")), CodeInvalidField, "team_id"},
		{"apns short key id", CredentialAPNs, mustJSON(t, with(apns, "key_id", "K1")), CodeInvalidField, "key_id"},
		{"apns topic without dot", CredentialAPNs, mustJSON(t, with(apns, "topic", "acme")), CodeInvalidField, "topic"},
		{"apns topic with NUL", CredentialAPNs, mustJSON(t, with(apns, "topic", "com.acme\x00.app")), CodeInvalidField, "topic"},
		{"apns P-384 key", CredentialAPNs, mustJSON(t, with(apns, "private_key", k.p384)), CodeInvalidField, "private_key"},
		{"apns RSA key", CredentialAPNs, mustJSON(t, with(apns, "private_key", k.rsa2048)), CodeInvalidField, "private_key"},
		{"apns key and trailing text", CredentialAPNs, mustJSON(t, with(apns, "private_key", k.p256+"junk")), CodeInvalidField, "private_key"},
		{"apns two keys", CredentialAPNs, mustJSON(t, with(apns, "private_key", k.p256+k.p256)), CodeInvalidField, "private_key"},
		{"apns no key", CredentialAPNs, mustJSON(t, with(apns, "private_key", nil)), CodeMissingField, "private_key"},
		{"apns null key", CredentialAPNs, `{"team_id":"ABCDE12345","key_id":"KEY1234567","topic":"com.acme.app","private_key":null}`, CodeInvalidField, "private_key"},
		{"apns unknown field", CredentialAPNs, mustJSON(t, with(apns, "environment", "sandbox")), CodeUnknownField, "environment"},
		{"apns case variant field", CredentialAPNs, mustJSON(t, with(with(apns, "team_id", nil), "Team_ID", "ABCDE12345")), CodeUnknownField, "Team_ID"},
		{"apns duplicate field", CredentialAPNs, `{"team_id":"ABCDE12345","team_id":"ABCDE12346","key_id":"KEY1234567","topic":"com.acme.app","private_key":"x"}`, CodeDuplicateField, "team_id"},
		{"fcm", CredentialFCM, mustJSON(t, map[string]any{"service_account": sa}), "", ""},
		{"fcm PKCS#1 key", CredentialFCM, mustJSON(t, map[string]any{"service_account": with(sa, "private_key", k.rsaPKCS1)}), "", ""},
		{"fcm minimal", CredentialFCM, mustJSON(t, map[string]any{"service_account": with(with(with(sa, "auth_uri", nil), "client_id", nil), "universe_domain", nil)}), "", ""},
		{"fcm not a service account", CredentialFCM, mustJSON(t, map[string]any{"service_account": with(sa, "type", "authorized_user")}), CodeInvalidField, "service_account.type"},
		{"fcm bad project", CredentialFCM, mustJSON(t, map[string]any{"service_account": with(sa, "project_id", "Acme")}), CodeInvalidField, "service_account.project_id"},
		{"fcm short RSA", CredentialFCM, mustJSON(t, map[string]any{"service_account": with(sa, "private_key", k.rsa1024)}), CodeInvalidField, "service_account.private_key"},
		{"fcm EC key", CredentialFCM, mustJSON(t, map[string]any{"service_account": with(sa, "private_key", k.p256)}), CodeInvalidField, "service_account.private_key"},
		{"fcm token uri not a URL", CredentialFCM, mustJSON(t, map[string]any{"service_account": with(sa, "token_uri", "oauth2.googleapis.com")}), CodeInvalidField, "service_account.token_uri"},
		{"fcm token uri with credentials", CredentialFCM, mustJSON(t, map[string]any{"service_account": with(sa, "token_uri", "https://a:b@oauth2.googleapis.com/token")}), CodeInvalidField, "service_account.token_uri"},
		{"fcm no token uri", CredentialFCM, mustJSON(t, map[string]any{"service_account": with(sa, "token_uri", nil)}), CodeMissingField, "service_account.token_uri"},
		{"fcm other universe", CredentialFCM, mustJSON(t, map[string]any{"service_account": with(sa, "universe_domain", "example.com")}), CodeInvalidField, "service_account.universe_domain"},
		{"fcm unknown member", CredentialFCM, mustJSON(t, map[string]any{"service_account": with(sa, "extra", "x")}), CodeUnknownField, "service_account.extra"},
		{"fcm empty", CredentialFCM, `{}`, CodeInvalidField, "service_account.type"},
		{"smtp", CredentialSMTP, mustJSON(t, smtp), "", ""},
		{"smtp with dkim", CredentialSMTP, mustJSON(t, with(smtp, "dkim", dkim)), "", ""},
		{"smtp with Ed25519 dkim", CredentialSMTP, mustJSON(t, with(smtp, "dkim", with(dkim, "private_key", k.ed))), "", ""},
		{"smtp bad from", CredentialSMTP, mustJSON(t, with(smtp, "from", "not an address")), CodeInvalidField, "from"},
		{"smtp header injection in from", CredentialSMTP, mustJSON(t, with(smtp, "from", "a@acme.com\r\nBcc: x@evil.com")), CodeInvalidField, "from"},
		{"smtp no password", CredentialSMTP, mustJSON(t, with(smtp, "password", "")), CodeMissingField, "password"},
		{"smtp control in password", CredentialSMTP, mustJSON(t, with(smtp, "password", "a\nb")), CodeInvalidField, "password"},
		{"smtp huge username", CredentialSMTP, mustJSON(t, with(smtp, "username", strings.Repeat("u", 257))), CodeInvalidField, "username"},
		{"smtp dkim of another domain", CredentialSMTP, mustJSON(t, with(smtp, "dkim", with(dkim, "domain", "evil.com"))), CodeInvalidField, "dkim.domain"},
		{"smtp dkim suffix that is not a parent", CredentialSMTP, mustJSON(t, with(smtp, "dkim", with(dkim, "domain", "cme.com"))), CodeInvalidField, "dkim.domain"},
		{"smtp dkim 1024-bit RSA", CredentialSMTP, mustJSON(t, with(smtp, "dkim", with(dkim, "private_key", k.rsa1024))), "", ""},
		{"smtp dkim EC key", CredentialSMTP, mustJSON(t, with(smtp, "dkim", with(dkim, "private_key", k.p256))), CodeInvalidField, "dkim.private_key"},
		{"smtp dkim bad selector", CredentialSMTP, mustJSON(t, with(smtp, "dkim", with(dkim, "selector", "a.b"))), CodeInvalidField, "dkim.selector"},
		{"twilio", CredentialTwilio, mustJSON(t, twilio), "", ""},
		{"twilio upper-case sid", CredentialTwilio, mustJSON(t, with(twilio, "account_sid", "AC"+strings.Repeat("0A", 16))), CodeInvalidField, "account_sid"},
		{"twilio short token", CredentialTwilio, mustJSON(t, with(twilio, "auth_token", "abc")), CodeInvalidField, "auth_token"},
		{"twilio national number", CredentialTwilio, mustJSON(t, with(twilio, "from", "5005550006")), CodeInvalidField, "from"},
		{"unknown kind", "mailgun", `{}`, CodeInvalidField, "kind"},
		{"kind in upper case", "APNS", mustJSON(t, apns), CodeInvalidField, "kind"},
		{"not an object", CredentialTwilio, `[]`, CodeMalformedJSON, ""},
		{"trailing data", CredentialTwilio, mustJSON(t, twilio) + "{}", CodeMalformedJSON, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, e := DecodeCredential(tt.kind, []byte(tt.body))
			switch {
			case tt.code == "" && e != nil:
				t.Fatalf("refused: %v", e)
			case tt.code != "" && (e == nil || e.Code != tt.code || e.Field != tt.field):
				t.Fatalf("got %v, want %s (%s)", e, tt.code, tt.field)
			case e == nil:
				// What the gateway forwards reads back as the same credential.
				again, e2 := DecodeCredential(tt.kind, Encode(c.Body()))
				if e2 != nil || again.Fingerprint() != c.Fingerprint() || mustJSON(t, again.Settings()) != mustJSON(t, c.Settings()) {
					t.Fatalf("re-encoded credential reads differently: %v", e2)
				}
			}
		})
	}
}

func TestCredentialSettingsNeverShowASecret(t *testing.T) {
	k := makeTestKeys(t)
	bodies := map[string]string{
		CredentialAPNs: mustJSON(t, map[string]any{"team_id": "ABCDE12345", "key_id": "KEY1234567", "topic": "com.acme.app", "private_key": k.p256}),
		CredentialFCM:  mustJSON(t, map[string]any{"service_account": serviceAccount(k)}),
		CredentialSMTP: mustJSON(t, map[string]any{"from": "no-reply@acme.com", "username": "acme", "password": "pw-secret-1",
			"dkim": map[string]any{"domain": "acme.com", "selector": "s1", "private_key": k.rsa2048}}),
		CredentialTwilio: mustJSON(t, map[string]any{"account_sid": "AC" + strings.Repeat("0a", 16), "auth_token": strings.Repeat("f1", 16), "from": "+15005550006"}),
	}
	for kind, body := range bodies {
		c, e := DecodeCredential(kind, []byte(body))
		if e != nil {
			t.Fatalf("%s: %v", kind, e)
		}
		shown := mustJSON(t, c.Settings()) + c.Fingerprint()
		for _, secret := range []string{"PRIVATE KEY", "pw-secret-1", strings.Repeat("f1", 16)} {
			if strings.Contains(shown, secret) {
				t.Fatalf("%s shows %q: %s", kind, secret, shown)
			}
		}
	}
	a, _ := DecodeCredential(CredentialTwilio, []byte(bodies[CredentialTwilio]))
	b, _ := DecodeCredential(CredentialTwilio, []byte(strings.Replace(bodies[CredentialTwilio], strings.Repeat("f1", 16), strings.Repeat("f2", 16), 1)))
	if a.Fingerprint() == b.Fingerprint() {
		t.Fatal("two auth tokens have one fingerprint")
	}
}

// FuzzDecodeCredential: whatever the kind and body, decoding never panics, and a credential it
// accepts validates again after Encode (what the gateway forwards is what the region reads).
func FuzzDecodeCredential(f *testing.F) {
	k := makeTestKeys(f)
	f.Add(CredentialAPNs, mustJSON(f, map[string]any{"team_id": "ABCDE12345", "key_id": "KEY1234567", "topic": "com.acme.app", "private_key": k.p256}))
	f.Add(CredentialFCM, mustJSON(f, map[string]any{"service_account": serviceAccount(k)}))
	f.Add(CredentialSMTP, `{"from":"a@b.co","username":"u","password":"p","dkim":{"domain":"b.co","selector":"s","private_key":"x"}}`)
	f.Add(CredentialTwilio, `{"account_sid":"AC0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a","auth_token":"f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1","from":"+15005550006"}`)
	f.Add("smtp", `{"from":"\u0000@b.co"}`)
	f.Fuzz(func(t *testing.T, kind, body string) {
		c, e := DecodeCredential(kind, []byte(body))
		if e != nil {
			return
		}
		if _, e := DecodeCredential(kind, Encode(c.Body())); e != nil {
			t.Fatalf("accepted %q, refused its encoding: %v", body, e)
		}
	})
}
