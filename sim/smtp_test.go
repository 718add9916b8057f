package sim

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
)

const mailTo = "ada@example.com"

func mailBody(subject, body string) string {
	return "From: Herald <noreply@herald.local>\r\nTo: " + mailTo + "\r\nSubject: " + subject +
		"\r\nMessage-ID: <1@herald.local>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n"
}

// sendMail is what smtp.SendMail does, with a TLS config that trusts the simulators' CA
// (SendMail itself only trusts the system roots). It returns the first error and its step.
func sendMail(t testing.TB, s *Sim, auth smtp.Auth, startTLS bool, to []string, msg string) (string, error) {
	t.Helper()
	c, err := smtp.Dial(s.Info().SMTP.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if startTLS {
		if err := c.StartTLS(&tls.Config{ServerName: "127.0.0.1", RootCAs: caPool(t, s)}); err != nil {
			return "starttls", err
		}
	}
	if auth != nil {
		if err := c.Auth(auth); err != nil {
			return "auth", err
		}
	}
	if err := c.Mail("noreply@herald.local"); err != nil {
		return "mail", err
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			return "rcpt", err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "data", err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return "data", err
	}
	if err := w.Close(); err != nil {
		return "data-end", err
	}
	return "", c.Quit()
}

func plainAuth(s *Sim) smtp.Auth {
	return smtp.PlainAuth("", "herald", "herald-sim", "127.0.0.1")
}

func smtpCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

func TestSMTPAcceptsMailOverSTARTTLSWithPlainAuth(t *testing.T) {
	s := startSim(t, nil)
	if step, err := sendMail(t, s, plainAuth(s), true, []string{mailTo, "bob@example.com"}, mailBody("Your order", "It shipped.")); err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	recs := records(t, s, "smtp", mailTo)
	if len(recs) != 1 {
		t.Fatalf("records %+v", recs)
	}
	var m smtpMessage
	if err := json.Unmarshal(recs[0].Payload, &m); err != nil {
		t.Fatal(err)
	}
	if m.Subject != "Your order" || strings.TrimSpace(m.Body) != "It shipped." || m.MailFrom != "noreply@herald.local" ||
		len(m.RcptTo) != 2 || m.MessageID != "<1@herald.local>" || m.From != "Herald <noreply@herald.local>" {
		t.Fatalf("message %+v", m)
	}
	if recs[0].Status != 250 || len(recs[0].ID) != 12 || recs[0].Headers["subject"] != "Your order" {
		t.Fatalf("record %+v", recs[0])
	}
	if bob := records(t, s, "smtp", "bob@example.com"); len(bob) != 1 || bob[0].ID != recs[0].ID {
		t.Fatalf("second recipient %+v", bob)
	}
}

func TestSMTPAcceptsAuthLoginFromGoSMTP(t *testing.T) {
	s := startSim(t, nil)
	c, err := gosmtp.DialStartTLS(s.Info().SMTP.Addr, &tls.Config{ServerName: "localhost", RootCAs: caPool(t, s)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewLoginClient("herald", "herald-sim")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("noreply@herald.local", []string{mailTo}, strings.NewReader(mailBody("Login", "via LOGIN"))); err != nil {
		t.Fatal(err)
	}
	if recs := records(t, s, "smtp", mailTo); len(recs) != 1 {
		t.Fatalf("records %+v", recs)
	}
}

func TestSMTPAuthFailures(t *testing.T) {
	s := startSim(t, nil)
	tests := []struct {
		name     string
		auth     smtp.Auth
		startTLS bool
		wantStep string
		wantCode int
		wantText string
	}{
		{"wrong password", smtp.PlainAuth("", "herald", "nope", "127.0.0.1"), true, "auth", 535, ""},
		{"wrong user", smtp.PlainAuth("", "mallory", "herald-sim", "127.0.0.1"), true, "auth", 535, ""},
		// Credentials in the clear are refused: 523 5.7.10 until STARTTLS.
		{"auth before STARTTLS", plainAuth(s), false, "auth", 523, "TLS is required"},
		{"no auth at all", nil, true, "mail", 530, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			step, err := sendMail(t, s, tt.auth, tt.startTLS, []string{mailTo}, mailBody("x", "y"))
			if step != tt.wantStep || smtpCode(err) != tt.wantCode || !strings.Contains(errString(err), tt.wantText) {
				t.Fatalf("failed at %q with %v", step, err)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestSMTPFaultsMapToSMTPReplies(t *testing.T) {
	s := startSim(t, func(c *Config) { c.SMTP.MaxMessageBytes = 2048 })
	tests := []struct {
		name     string
		faults   Faults
		body     string
		wantStep string
		wantCode int
	}{
		{"unregistered address", Faults{Unregistered: []string{mailTo}}, "hello", "rcpt", 550},
		{"invalid address", Faults{Invalid: []string{mailTo}}, "hello", "rcpt", 550},
		{"outage", Faults{OutageSeconds: 30}, "hello", "data-end", 421},
		{"rate limited", Faults{RateLimitRate: 1}, "hello", "data-end", 451},
		{"server error 500", Faults{ErrorRate: 1, ErrorStatuses: []int{500}}, "hello", "data-end", 451},
		{"server error 503", Faults{ErrorRate: 1, ErrorStatuses: []int{503}}, "hello", "data-end", 421},
		{"message too large", Faults{}, strings.Repeat(strings.Repeat("x", 70)+"\r\n", 60), "data-end", 552},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setFaults(t, s, "smtp", tt.faults)
			admin(t, s, "DELETE", "/sim/smtp/messages", nil, nil)
			step, err := sendMail(t, s, plainAuth(s), true, []string{mailTo}, mailBody("x", tt.body))
			if step != tt.wantStep || smtpCode(err) != tt.wantCode {
				t.Fatalf("failed at %q with %v, want %q %d", step, err, tt.wantStep, tt.wantCode)
			}
			if recs := records(t, s, "smtp", mailTo); len(recs) != 1 || recs[0].Status != tt.wantCode || recs[0].ID != "" {
				t.Fatalf("records %+v", recs)
			}
		})
	}
}

func TestSMTPLatencyDelaysTheDataReply(t *testing.T) {
	s := startSim(t, func(c *Config) { c.SMTP.Faults = Faults{LatencyMS: 200} })
	start := time.Now()
	if step, err := sendMail(t, s, plainAuth(s), true, []string{mailTo}, mailBody("x", "y")); err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("took %v", d)
	}
}

func TestParseMailDecodesSinglePartBodies(t *testing.T) {
	tests := []struct {
		name, raw, wantSubject, wantBody string
	}{
		{"quoted-printable", "Subject: =?utf-8?q?Caf=C3=A9?=\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nna=C3=AFve=\r\n text\r\n", "Café", "naïve text\r\n"},
		{"base64", "Subject: b\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8g\r\nd29ybGQ=\r\n", "b", "hello world"},
		{"not a mail", "no headers here", "", "no headers here"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, _ := parseMail("a@b", []string{"c@d"}, []byte(tt.raw))
			var m smtpMessage
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			if m.Subject != tt.wantSubject || m.Body != tt.wantBody {
				t.Fatalf("subject %q body %q", m.Subject, m.Body)
			}
		})
	}
}

// The simulator checks DKIM as a receiving MTA does, against the public record of the key pair
// it made for senders: a mail signed with that key passes, the same mail changed in transit
// fails, and an unsigned one is "none".
func TestSMTPChecksDKIMSignaturesAgainstItsSenderKeysRecord(t *testing.T) {
	s := startSim(t, nil)
	info := s.Info()
	key, err := loadRSAKey(info.SMTP.DKIMKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(info.SMTP.DKIMRecord, "herald._domainkey.herald.local TXT v=DKIM1; k=rsa; p=") {
		t.Fatalf("record %q", info.SMTP.DKIMRecord)
	}
	sign := func(msg string) string {
		var out bytes.Buffer
		if err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{Domain: info.SMTP.DKIMDomain, Selector: info.SMTP.DKIMSelector,
			Signer: key, HeaderKeys: []string{"From", "Subject"}}); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	signed := sign(mailBody("Signed", "hello"))
	for _, tc := range []struct{ name, msg, want string }{
		{"signed", signed, "pass d=herald.local"},
		{"changed in transit", strings.Replace(signed, "Subject: Signed", "Subject: Changed", 1), "fail: "},
		{"unsigned", mailBody("Unsigned", "hello"), "none"},
	} {
		admin(t, s, "DELETE", "/sim/smtp/messages", nil, nil)
		if step, err := sendMail(t, s, plainAuth(s), true, []string{mailTo}, tc.msg); err != nil {
			t.Fatalf("%s: %s: %v", tc.name, step, err)
		}
		recs := records(t, s, "smtp", mailTo)
		if len(recs) != 1 || !strings.HasPrefix(recs[0].Headers["dkim"], tc.want) {
			t.Fatalf("%s: records %+v, want dkim %q", tc.name, recs, tc.want)
		}
	}
}
