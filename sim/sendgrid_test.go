package sim

import (
	"crypto/ecdsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/wire"
)

// The SMTP simulator, with events on, posts SendGrid's signed batches for each mail it takes:
// the message's unique_args echoed in each event, delivered for most recipients, a bounce
// after the relay took it for bounce_later ones, delivered then a spam report for complain
// ones; each batch verifies with the public key it wrote, as SendGrid's console shows it.
func TestSMTPPostsSignedSendGridEventsForEachMail(t *testing.T) {
	var mu sync.Mutex
	var got []wire.SendGridEvent
	var raws [][]byte
	var heads []http.Header
	rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		evs, e := wire.ParseSendGrid(raw)
		if e != nil {
			t.Errorf("a batch that does not parse: %v: %s", e, raw)
		}
		mu.Lock()
		got = append(got, evs...)
		raws, heads = append(raws, raw), append(heads, r.Header.Clone())
		mu.Unlock()
	}))
	defer rx.Close()
	s := startSim(t, func(c *Config) { c.SMTP.Events.URL = rx.URL })
	info := s.Info()
	pubFile, err := os.ReadFile(info.SMTP.EventsPublicKeyFile)
	if err != nil || strings.TrimSpace(string(pubFile)) != info.SMTP.EventsPublicKey {
		t.Fatalf("public key file %q %v, info %q", pubFile, err, info.SMTP.EventsPublicKey)
	}
	key, err := wire.ParseSendGridKey(info.SMTP.EventsPublicKey)
	if err != nil {
		t.Fatal(err)
	}
	setFaults(t, s, "smtp", Faults{BounceLater: []string{"bob@example.com"}, Complain: []string{"cy@example.com"}})
	msg := strings.Replace(mailBody("Hi", "Hello."), "\r\n\r\n", "\r\nX-SMTPAPI: {\"unique_args\":{\"herald_receipt\":\"eu-west-1.tok\"}}\r\n\r\n", 1)
	if step, err := sendMail(t, s, plainAuth(s), true, []string{mailTo, "bob@example.com", "cy@example.com"}, msg); err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	want := map[string][]string{mailTo: {"processed", "delivered"}, "bob@example.com": {"processed", "bounce"},
		"cy@example.com": {"processed", "delivered", "spamreport"}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 7 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events: %+v", n, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	byTo := map[string][]string{}
	for _, ev := range got {
		if ev.Token != "eu-west-1.tok" || ev.MessageID == "" || ev.EventID == "" {
			t.Fatalf("event %+v", ev)
		}
		if ev.Event == "bounce" && (ev.Type != "bounce" || ev.Status != "5.1.1") {
			t.Fatalf("bounce %+v", ev)
		}
		byTo[ev.Email] = append(byTo[ev.Email], ev.Event)
	}
	for to, evs := range want {
		if strings.Join(byTo[to], ",") != strings.Join(evs, ",") {
			t.Errorf("%s: %v, want %v", to, byTo[to], evs)
		}
	}
	for i, raw := range raws {
		var arr []json.RawMessage
		if json.Unmarshal(raw, &arr) != nil {
			t.Fatalf("batch %d is not an array", i)
		}
		err := wire.VerifySendGrid([]*ecdsa.PublicKey{key}, raw, heads[i].Get(wire.SendGridSignatureHeader), heads[i].Get(wire.SendGridTimestampHeader), time.Now(), time.Minute)
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	if recs := records(t, s, "smtp", mailTo); len(recs) != 1 || recs[0].Headers["x-smtpapi"] == "" {
		t.Fatalf("records %+v", recs)
	}
}
