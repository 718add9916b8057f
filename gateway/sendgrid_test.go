package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/residency"
)

func sgSign(t *testing.T, k *ecdsa.PrivateKey, ts string, body []byte) string {
	t.Helper()
	h := sha256.Sum256(append([]byte(ts), body...))
	sig, err := ecdsa.SignASN1(rand.Reader, k, h[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// The gateway refuses what SendGrid did not sign, signed long ago, or signed and posted before,
// and malformed batches, each with a stable code and the field; events whose token names no
// region it knows are skipped (nothing is forwarded), and the batch is still taken.
func TestSendGridBatchesAreVerifiedParsedAndReplaysRefusedBeforeAnythingIsForwarded(t *testing.T) {
	gin.SetMode(gin.TestMode)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cfg := SendGridReceiptsConfig{PublicKeys: []string{base64.StdEncoding.EncodeToString(der)}}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	keys, _ := cfg.Keys()
	p, err := residency.Parse([]byte(routePolicy))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	s := &Server{Policy: residency.NewHolder(p), SendGridKeys: keys, SendGridMaxAge: cfg.maxAge(), sendGridSeen: newReplays(10),
		Now: func() time.Time { return now }, Log: slog.New(slog.DiscardHandler)}
	r := gin.New()
	r.POST(sendGridPath, s.sendGridReceipts)
	ts := strconv.FormatInt(now.Unix(), 10)
	old := strconv.FormatInt(now.Add(-time.Hour).Unix(), 10)
	good := []byte(`[{"event":"delivered","email":"a@b.c","timestamp":1765098000,"herald_receipt":"nowhere-1.AAAAAAAAAAAAAAAAAAAA"},` +
		`{"event":"open","email":"a@b.c","timestamp":1765098000}]`)
	post := func(body []byte, sig, ts string) (int, map[string]any) {
		req := httptest.NewRequest(http.MethodPost, sendGridPath, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		if sig != "" {
			req.Header.Set(wire.SendGridSignatureHeader, sig)
		}
		if ts != "" {
			req.Header.Set(wire.SendGridTimestampHeader, ts)
		}
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		var out map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		return rec.Code, out
	}
	signed := func(body string) ([]byte, string) { return []byte(body), sgSign(t, key, ts, []byte(body)) }
	for _, c := range []struct {
		name        string
		body        []byte
		sig, ts     string
		status      int
		code, field string
	}{
		{"not signed", good, "", ts, 403, "invalid_signature", wire.SendGridSignatureHeader},
		{"no timestamp", good, sgSign(t, key, ts, good), "", 403, "invalid_signature", wire.SendGridTimestampHeader},
		{"signed with another key", good, sgSign(t, other, ts, good), ts, 403, "invalid_signature", wire.SendGridSignatureHeader},
		{"signed for another timestamp", good, sgSign(t, key, old, good), ts, 403, "invalid_signature", wire.SendGridSignatureHeader},
		{"expired", good, sgSign(t, key, old, good), old, 403, "stale_timestamp", wire.SendGridTimestampHeader},
		{"huge", []byte("[" + strings.Repeat(" ", wire.MaxSendGridBytes) + "]"), "x", ts, 413, "payload_too_large", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := testutil.ToFloat64(metricReceiptsRefused.WithLabelValues("sendgrid", c.code))
			code, out := post(c.body, c.sig, c.ts)
			e, _ := out["error"].(map[string]any)
			if code != c.status || e["code"] != c.code || (e["field"] != nil && e["field"] != c.field) || (e["field"] == nil && c.field != "") {
				t.Fatalf("%d %v, want %d %s (%s)", code, out, c.status, c.code, c.field)
			}
			// Counted by its code: HeraldProviderReceiptsRefused sees a wrong key or clock.
			if d := testutil.ToFloat64(metricReceiptsRefused.WithLabelValues("sendgrid", c.code)) - before; d != 1 {
				t.Fatalf("herald_gateway_receipts_refused_total{code=%q} moved by %v, want 1", c.code, d)
			}
		})
	}
	for _, c := range []struct{ name, body, code, field string }{
		{"malformed", `[{"event":`, "malformed_json", ""},
		{"null", `null`, "malformed_json", ""},
		{"empty array", `[]`, "invalid_field", "events"},
		{"NUL in a field", `[{"event":"delivered","email":"a\u0000","timestamp":1}]`, "invalid_field", "[0].email"},
		{"event type missing", `[{"email":"a@b.c","timestamp":1}]`, "missing_field", "[0].event"},
	} {
		t.Run(c.name, func(t *testing.T) {
			body, sig := signed(c.body)
			code, out := post(body, sig, ts)
			e, _ := out["error"].(map[string]any)
			if code != 400 || e["code"] != c.code || (c.field != "" && e["field"] != c.field) {
				t.Fatalf("%d %v, want 400 %s (%s)", code, out, c.code, c.field)
			}
		})
	}
	sig := sgSign(t, key, ts, good)
	code, out := post(good, sig, ts)
	if code != 200 || out["events"] != 2.0 || out["skipped"] != 2.0 || out["forwarded"] != 0.0 {
		t.Fatalf("a good batch of tokens no region minted: %d %v", code, out)
	}
	if code, out := post(good, sig, ts); code != 409 || out["error"].(map[string]any)["code"] != "replayed" {
		t.Fatalf("the same batch again: %d %v", code, out)
	}
	now = now.Add(11 * time.Minute)
	if code, out := post(good, sig, ts); code != 403 || out["error"].(map[string]any)["code"] != "stale_timestamp" {
		t.Fatalf("the same batch once too old: %d %v", code, out)
	}

	off := &Server{Policy: residency.NewHolder(p)}
	r2 := gin.New()
	r2.POST(sendGridPath, off.sendGridReceipts)
	rec := httptest.NewRecorder()
	r2.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, sendGridPath, strings.NewReader(string(good))))
	if rec.Code != 404 {
		t.Fatalf("without keys: %d %s", rec.Code, rec.Body)
	}
}

func TestSendGridConfigRefusesKeysThatAreNotP256(t *testing.T) {
	for name, c := range map[string]SendGridReceiptsConfig{
		"garbage":      {PublicKeys: []string{"not a key"}},
		"missing file": {PublicKeyFiles: []string{"/nonexistent/key"}},
		"max_age":      {MaxAge: -time.Second},
	} {
		if err := c.validate(); err == nil {
			t.Errorf("%s: taken", name)
		}
	}
}
