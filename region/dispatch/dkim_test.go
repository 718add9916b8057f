package dispatch

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/herald-notify/herald/region/notify"
)

// writeKey writes a PKCS#8 PEM key and returns its path and its DNS record.
func writeKey(t *testing.T, key any, pub any) (string, string) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dkim.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		raw, _ := x509.MarshalPKIXPublicKey(p)
		return path, "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(raw)
	case ed25519.PublicKey:
		return path, "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(p)
	}
	t.Fatalf("key %T", pub)
	return "", ""
}

func verify(t *testing.T, msg []byte, record string) (*dkim.Verification, error) {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if name == "herald._domainkey.herald.example" {
			return []string{record}, nil
		}
		return nil, fmt.Errorf("no record %s", name)
	}})
	if err != nil {
		return nil, err
	}
	if len(vs) != 1 {
		t.Fatalf("%d signatures", len(vs))
	}
	return vs[0], nil
}

// Mail is DKIM-signed with RSA or Ed25519 over the fields that say who sent what and the
// one-click unsubscribe fields; a change of any of them in transit, or one of them added,
// fails the signature.
func TestMailIsDKIMSignedOverItsSenderContentAndUnsubscribeFields(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, ek, _ := ed25519.GenerateKey(rand.Reader)
	for name, keys := range map[string][2]any{"rsa": {rk, &rk.PublicKey}, "ed25519": {ek, ek.Public()}} {
		t.Run(name, func(t *testing.T) {
			path, record := writeKey(t, keys[0], keys[1])
			s, err := newDKIMSigner(DKIMConfig{Domain: "herald.example", Selector: "herald", KeyFile: path})
			if err != nil {
				t.Fatal(err)
			}
			task := sampleTask(notify.Email)
			task.Tier = notify.Marketing
			withUnsub, _ := buildMail(task, "noreply@herald.example", "ada@example.com", "<1@herald.example>", "<https://x.example/v1/unsubscribe/t>", time.Now())
			transactional, _ := buildMail(task, "noreply@herald.example", "ada@example.com", "<2@herald.example>", "", time.Now())
			for _, msg := range [][]byte{withUnsub, transactional} {
				signed, err := s.sign(msg)
				if err != nil {
					t.Fatal(err)
				}
				v, err := verify(t, signed, record)
				if err != nil || v.Err != nil || v.Domain != "herald.example" {
					t.Fatalf("verification: %+v %v", v, err)
				}
				covered := strings.ToLower(strings.Join(v.HeaderKeys, ":"))
				for _, h := range []string{"from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post"} {
					if !strings.Contains(covered, h) {
						t.Errorf("%s is not signed: %s", h, covered)
					}
				}
				for what, tampered := range map[string][]byte{
					"subject changed": bytes.Replace(signed, []byte("Subject: "), []byte("Subject: Re: "), 1),
					"body changed":    append(bytes.Clone(signed), []byte("\r\nP.S. click here\r\n")...),
					"an unsubscribe link added above": bytes.Replace(signed, []byte("MIME-Version: 1.0\r\n"),
						[]byte("MIME-Version: 1.0\r\nList-Unsubscribe: <https://evil.example/u>\r\n"), 1),
					"an unsubscribe link added below": bytes.Replace(signed, []byte("\r\n\r\n"),
						[]byte("\r\nList-Unsubscribe: <https://evil.example/u>\r\n\r\n"), 1),
					"a second From": bytes.Replace(signed, []byte("\r\n\r\n"), []byte("\r\nFrom: ceo@herald.example\r\n\r\n"), 1),
				} {
					if v, err := verify(t, tampered, record); err == nil && v.Err == nil {
						t.Errorf("%s: the signature still verifies", what)
					}
				}
			}
		})
	}
}

func TestDKIMConfigIsCheckedAtStartNamingTheKey(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	good, _ := writeKey(t, rk, &rk.PublicKey)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	_ = os.WriteFile(garbage, []byte("not a key"), 0o600)
	for _, tc := range []struct {
		name, from string
		c          DKIMConfig
		key        string // "" valid
	}{
		{"none", "noreply@herald.example", DKIMConfig{}, ""},
		{"aligned", "Herald <noreply@herald.example>", DKIMConfig{Domain: "herald.example", Selector: "herald", KeyFile: good}, ""},
		{"subdomain of the signer", "noreply@mail.herald.example", DKIMConfig{Domain: "herald.example", Selector: "s1", KeyFile: good}, ""},
		{"not aligned", "noreply@other.example", DKIMConfig{Domain: "herald.example", Selector: "herald", KeyFile: good}, "domain"},
		{"suffix but not a subdomain", "noreply@evilherald.example", DKIMConfig{Domain: "herald.example", Selector: "herald", KeyFile: good}, "domain"},
		{"no selector", "noreply@herald.example", DKIMConfig{Domain: "herald.example", KeyFile: good}, "selector"},
		{"selector with a dot", "noreply@herald.example", DKIMConfig{Domain: "herald.example", Selector: "a.b", KeyFile: good}, "selector"},
		{"missing key", "noreply@herald.example", DKIMConfig{Domain: "herald.example", Selector: "herald", KeyFile: "/nonexistent.pem"}, "key_file"},
		{"not a key", "noreply@herald.example", DKIMConfig{Domain: "herald.example", Selector: "herald", KeyFile: garbage}, "key_file"},
		{"no domain", "noreply@herald.example", DKIMConfig{Selector: "herald", KeyFile: good}, "domain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.validate(tc.from)
			if err == nil && tc.c != (DKIMConfig{}) {
				_, err = newSMTP(SMTPConfig{Addr: "127.0.0.1:1", From: tc.from, DKIM: tc.c}, "smtp", "zz", nil) // what start does
			}
			if tc.key == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("error %v does not name %s", err, tc.key)
			}
		})
	}
}
