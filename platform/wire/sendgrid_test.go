package wire

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func sendGridKey(t testing.TB) (*ecdsa.PrivateKey, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return k, base64.StdEncoding.EncodeToString(der)
}

// signSendGrid signs as SendGrid does: ECDSA over SHA-256 of timestamp then body, ASN.1 DER,
// base64.
func signSendGrid(t testing.TB, k *ecdsa.PrivateKey, ts string, body []byte) string {
	t.Helper()
	h := sha256.Sum256(append([]byte(ts), body...))
	sig, err := ecdsa.SignASN1(rand.Reader, k, h[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func TestVerifySendGridTakesOnlyAFreshBatchSignedWithAConfiguredKey(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	k1, pub1 := sendGridKey(t)
	k2, pub2 := sendGridKey(t)
	other, _ := sendGridKey(t)
	key1, err := ParseSendGridKey(pub1)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := base64.StdEncoding.DecodeString(pub2)
	key2, err := ParseSendGridKey(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	if err != nil {
		t.Fatal(err)
	}
	keys := []*ecdsa.PublicKey{key1, key2}
	body := []byte(`[{"event":"delivered","email":"ada@example.com","timestamp":1765098000}]`)
	ts := strconv.FormatInt(now.Unix(), 10)
	old := strconv.FormatInt(now.Add(-11*time.Minute).Unix(), 10)
	ahead := strconv.FormatInt(now.Add(2*time.Minute).Unix(), 10)
	for _, c := range []struct {
		name     string
		sig, ts  string
		body     []byte
		want     error
		keys     []*ecdsa.PublicKey
		noChange bool
	}{
		{name: "signed with the first key", sig: signSendGrid(t, k1, ts, body), ts: ts, body: body},
		{name: "signed with the rotated-in key (PEM)", sig: signSendGrid(t, k2, ts, body), ts: ts, body: body},
		{name: "signed with a key not configured", sig: signSendGrid(t, other, ts, body), ts: ts, body: body, want: ErrSendGridSignature},
		{name: "body changed after signing", sig: signSendGrid(t, k1, ts, body), ts: ts, body: append([]byte(" "), body...), want: ErrSendGridSignature},
		{name: "timestamp changed after signing", sig: signSendGrid(t, k1, ts, body), ts: strconv.FormatInt(now.Unix()-1, 10), body: body, want: ErrSendGridSignature},
		{name: "expired (a replay of an old batch)", sig: signSendGrid(t, k1, old, body), ts: old, body: body, want: ErrSendGridStale},
		{name: "from the future", sig: signSendGrid(t, k1, ahead, body), ts: ahead, body: body, want: ErrSendGridStale},
		{name: "no signature", sig: "", ts: ts, body: body, want: ErrSendGridSignature},
		{name: "no timestamp", sig: signSendGrid(t, k1, "", body), ts: "", body: body, want: ErrSendGridSignature},
		{name: "timestamp not digits", sig: signSendGrid(t, k1, "abc", body), ts: "abc", body: body, want: ErrSendGridSignature},
		{name: "signature not base64", sig: "!!!", ts: ts, body: body, want: ErrSendGridSignature},
		{name: "signature not DER", sig: base64.StdEncoding.EncodeToString([]byte("0123456789")), ts: ts, body: body, want: ErrSendGridSignature},
		{name: "huge signature", sig: strings.Repeat("A", 4096), ts: ts, body: body, want: ErrSendGridSignature},
		{name: "no key configured", sig: signSendGrid(t, k1, ts, body), ts: ts, body: body, keys: []*ecdsa.PublicKey{}, want: ErrSendGridSignature},
	} {
		t.Run(c.name, func(t *testing.T) {
			ks := keys
			if c.keys != nil {
				ks = c.keys
			}
			if err := VerifySendGrid(ks, c.body, c.sig, c.ts, now, 10*time.Minute); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestParseSendGridKeyTakesOnlyP256Keys(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 1024)
	rder, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	pk, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	pder, _ := x509.MarshalPKIXPublicKey(&pk.PublicKey)
	for name, s := range map[string]string{
		"RSA":       base64.StdEncoding.EncodeToString(rder),
		"P-384":     base64.StdEncoding.EncodeToString(pder),
		"not a key": base64.StdEncoding.EncodeToString([]byte("hello")),
		"garbage":   "%%%",
		"empty":     "",
	} {
		if _, err := ParseSendGridKey(s); err == nil {
			t.Errorf("%s: taken", name)
		}
	}
}

func TestParseSendGridReadsABatchStrictly(t *testing.T) {
	ok := `{"event":"delivered","email":"ada@example.com","timestamp":1765098000,"sg_event_id":"e1","herald_receipt":"eu-west-1.abc","category":["a"],"smtp-id":"<x@y>"}`
	for _, c := range []struct {
		name, body  string
		code, field string
		n           int
	}{
		{name: "one event, unknown members ignored", body: "[" + ok + "]", n: 1},
		{name: "two events", body: "[" + ok + "," + strings.Replace(ok, "delivered", "open", 1) + "]", n: 2},
		{name: "an event type Herald does not know", body: `[{"event":"group_resubscribe","email":"a@b.c","timestamp":1}]`, n: 1},
		{name: "a bounce", body: `[{"event":"bounce","type":"blocked","status":"5.7.1","reason":"550 blocked","email":"a@b.c","timestamp":1}]`, n: 1},
		{name: "empty body", body: "", code: CodeMalformedJSON},
		{name: "null", body: "null", code: CodeMalformedJSON},
		{name: "an object, not an array", body: ok, code: CodeMalformedJSON},
		{name: "empty array", body: "[]", code: CodeInvalidField, field: "events"},
		{name: "a null event", body: "[null]", code: CodeInvalidField, field: "[0]"},
		{name: "a string event", body: `["x"]`, code: CodeInvalidField, field: "[0]"},
		{name: "truncated", body: "[" + ok, code: CodeMalformedJSON},
		{name: "trailing garbage", body: "[" + ok + "]x", code: CodeMalformedJSON},
		{name: "a member twice", body: `[{"event":"delivered","event":"bounce","email":"a@b.c","timestamp":1}]`, code: CodeMalformedJSON},
		{name: "invalid UTF-8", body: "[{\"event\":\"delivered\",\"email\":\"a\xff@b.c\",\"timestamp\":1}]", code: CodeMalformedJSON},
		{name: "a raw NUL", body: "[{\"event\":\"delivered\",\"email\":\"a\x00@b.c\",\"timestamp\":1}]", code: CodeMalformedJSON},
		{name: "an escaped NUL", body: `[{"event":"delivered","email":"a\u0000@b.c","timestamp":1}]`, code: CodeInvalidField, field: "[0].email"},
		{name: "no event type", body: `[{"email":"a@b.c","timestamp":1}]`, code: CodeMissingField, field: "[0].event"},
		{name: "an event type not a name", body: `[{"event":"DELIVERED","email":"a@b.c","timestamp":1}]`, code: CodeInvalidField, field: "[0].event"},
		{name: "a timestamp as a string", body: `[{"event":"delivered","email":"a@b.c","timestamp":"1"}]`, code: CodeInvalidField, field: "[0].timestamp"},
		{name: "no timestamp", body: `[{"event":"delivered","email":"a@b.c"}]`, code: CodeInvalidField, field: "[0].timestamp"},
		{name: "a token that is a number", body: `[{"event":"delivered","email":"a@b.c","timestamp":1,"herald_receipt":7}]`, code: CodeInvalidField, field: "[0].herald_receipt"},
		{name: "a huge token", body: `[{"event":"delivered","email":"a@b.c","timestamp":1,"herald_receipt":"` + strings.Repeat("a", 2000) + `"}]`, code: CodeInvalidField, field: "[0].herald_receipt"},
		{name: "a status not SMTP", body: `[{"event":"bounce","status":"five","email":"a@b.c","timestamp":1}]`, code: CodeInvalidField, field: "[0].status"},
		{name: "huge body", body: "[" + strings.Repeat(ok+",", MaxSendGridBytes/len(ok)) + ok + "]", code: CodePayloadTooLarge},
		{name: "too many events", body: "[" + strings.Repeat(`{"event":"open","email":"","timestamp":1},`, MaxSendGridEvents) + `{"event":"open","email":"","timestamp":1}]`, code: CodeInvalidField, field: "events"},
	} {
		t.Run(c.name, func(t *testing.T) {
			evs, e := ParseSendGrid([]byte(c.body))
			if c.code == "" {
				if e != nil || len(evs) != c.n {
					t.Fatalf("got %d events, %v", len(evs), e)
				}
				b := SendGridBatch{Events: evs}
				if e := b.Validate(); e != nil {
					t.Fatalf("a parsed batch does not validate: %v", e)
				}
				return
			}
			if e == nil || e.Code != c.code || e.Field != c.field {
				t.Fatalf("got %v, want %s (%s)", e, c.code, c.field)
			}
		})
	}
	evs, _ := ParseSendGrid([]byte("[" + ok + "]"))
	if evs[0].Token != "eu-west-1.abc" || evs[0].EventID != "e1" || evs[0].Timestamp != 1765098000 {
		t.Fatalf("%+v", evs[0])
	}
}

// FuzzParseSendGrid: any body is parsed or refused with a code, never a panic; what is parsed
// validates as the region reads it, and verifying a signature over it never panics either.
func FuzzParseSendGrid(f *testing.F) {
	for _, s := range []string{`[{"event":"delivered","email":"a@b.c","timestamp":1,"herald_receipt":"r.x"}]`, `[]`, `null`, `[null]`,
		`[{"event":"bounce","type":"bounce","status":"5.1.1","email":"a@b.c","timestamp":1}]`, "[{\"event\":\"a\x00\"}]", `[{"event":"x","event":"y"}]`} {
		f.Add([]byte(s))
	}
	_, pub := sendGridKey(f)
	key, err := ParseSendGridKey(pub)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, e := ParseSendGrid(body)
		if e != nil {
			if e.Code == "" || evs != nil {
				t.Fatalf("refusal %v with events %v", e, evs)
			}
		} else {
			b := SendGridBatch{Events: evs}
			if e := b.Validate(); e != nil {
				t.Fatalf("parsed but does not validate: %v", e)
			}
		}
		_ = VerifySendGrid([]*ecdsa.PublicKey{key}, body, string(body), "1", time.Unix(1, 0), time.Minute)
		_, _ = ParseSendGridKey(string(body))
	})
}
