package dispatch

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/notify"
)

// smtpProvider sends through an SMTP relay with STARTTLS (trusting the configured CA) and AUTH
// PLAIN, one session per message. It uses go-smtp's client rather than net/smtp because it
// returns the relay's reply to DATA, whose "queued as <id>" is the id to trace the message
// by at the relay.
type smtpProvider struct {
	name      string
	cfg       SMTPConfig
	tlsConfig *tls.Config
	region    string
	// unsubscribe makes a task's one-click unsubscribe link (Deps.UnsubscribeLink; nil: none).
	unsubscribe func(notify.Task) string
	dkim        *dkimSigner // nil: unsigned
	// receipt makes a task's receipt token for SendGrid's events (Deps.EmailReceipt, set when
	// the config says events: sendgrid; nil or "": none).
	receipt func(t notify.Task, provider string) string
}

// smtpAPIHeader is SendGrid's X-SMTPAPI header carrying the receipt token as a unique
// argument, which SendGrid echoes in every event of the message and strips before delivery.
// The token is base64url and a region name: no character needs folding or quoting.
func smtpAPIHeader(token string) string {
	raw, _ := json.Marshal(map[string]map[string]string{"unique_args": {wire.SendGridTokenField: token}})
	return string(raw)
}

func newSMTP(c SMTPConfig, name, region string, unsubscribe func(notify.Task) string) (*smtpProvider, error) {
	host, _, _ := net.SplitHostPort(c.Addr)
	tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pool, err := loadPool(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("smtp %s: %w", name, err)
		}
		tc.RootCAs = pool
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		return nil, fmt.Errorf("smtp %s: from %q: %w", name, c.From, err)
	}
	if c.UnsubscribeMailto != "" {
		if a, err := mail.ParseAddress(c.UnsubscribeMailto); err != nil || a.Name != "" || a.Address != c.UnsubscribeMailto {
			return nil, fmt.Errorf("smtp %s: unsubscribe_mailto %q: a bare address", name, c.UnsubscribeMailto)
		}
	}
	signer, err := newDKIMSigner(c.DKIM)
	if err != nil {
		return nil, fmt.Errorf("smtp %s: %w", name, err)
	}
	return &smtpProvider{name: name, cfg: c, tlsConfig: tc, region: region, unsubscribe: unsubscribe, dkim: signer}, nil
}

// listUnsubscribe is the List-Unsubscribe header of a bulk email (RFC 2369, RFC 8058): the
// one-click HTTPS link, and the mailbox when one is configured. "" for transactional mail,
// which carries none.
func (p *smtpProvider) listUnsubscribe(t notify.Task) string {
	if t.Tier == notify.Transactional {
		return ""
	}
	link := ""
	if p.unsubscribe != nil {
		link = p.unsubscribe(t)
	}
	if link == "" {
		emailWithoutUnsubscribe.WithLabelValues(p.region).Inc()
		return ""
	}
	h := "<" + link + ">"
	if p.cfg.UnsubscribeMailto != "" {
		_, token, _ := strings.Cut(link, "/v1/unsubscribe/")
		h += ",\r\n <mailto:" + p.cfg.UnsubscribeMailto + "?subject=unsubscribe%20" + token + ">"
	}
	return h
}

func (p *smtpProvider) Name() string { return p.name }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// messageID returns a fresh Message-ID in the sender's domain.
func messageID(t notify.Task, from string) string {
	domain := "herald.local"
	if a, err := mail.ParseAddress(from); err == nil {
		if _, d, ok := strings.Cut(a.Address, "@"); ok {
			domain = d
		}
	}
	return "<" + t.NotificationID + "." + randomHex(6) + "@" + domain + ">"
}

// buildMail renders the MIME message (pure: tested on its own): text, and an HTML alternative
// when the content has one. A non-empty unsubscribe is the List-Unsubscribe value: it goes
// with List-Unsubscribe-Post, so mail clients offer one-click unsubscribe (RFC 8058).
func buildMail(t notify.Task, from, to, msgID, unsubscribe string, date time.Time, extra ...[2]string) ([]byte, error) {
	var b bytes.Buffer
	subject := t.Content.Subject
	if subject == "" {
		subject = t.Content.Title
	}
	text := t.Content.Text
	if text == "" {
		text = t.Content.Body
		if t.Content.Link != "" {
			text += "\n\n" + t.Content.Link
		}
	}
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("From", from)
	hdr("To", to)
	hdr("Subject", mime.QEncoding.Encode("utf-8", subject))
	hdr("Date", date.Format(time.RFC1123Z))
	hdr("Message-ID", msgID)
	hdr("MIME-Version", "1.0")
	hdr("X-Herald-Notification-Id", t.NotificationID)
	if unsubscribe != "" {
		hdr("List-Unsubscribe", unsubscribe)
		hdr("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
	}
	for _, h := range extra {
		hdr(h[0], h[1])
	}
	writeQP := func(w *bytes.Buffer, s string) error {
		qp := quotedprintable.NewWriter(w)
		if _, err := qp.Write([]byte(s)); err != nil {
			return err
		}
		return qp.Close()
	}
	if t.Content.HTML == "" {
		hdr("Content-Type", `text/plain; charset="utf-8"`)
		hdr("Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		if err := writeQP(&b, text); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	hdr("Content-Type", `multipart/alternative; boundary="`+mw.Boundary()+`"`)
	b.WriteString("\r\n")
	for _, part := range []struct{ ctype, content string }{{"text/plain", text}, {"text/html", t.Content.HTML}} {
		pw, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {part.ctype + `; charset="utf-8"`},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return nil, err
		}
		var pb bytes.Buffer
		if err := writeQP(&pb, part.content); err != nil {
			return nil, err
		}
		if _, err := pw.Write(pb.Bytes()); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	b.Write(body.Bytes())
	return b.Bytes(), nil
}

var queuedAs = regexp.MustCompile(`(?i)queued as ([A-Za-z0-9._-]+)`)

// smtpQuitTimeout bounds the QUIT after an accepted message (a courtesy the server may not
// answer).
const smtpQuitTimeout = 5 * time.Second

func (p *smtpProvider) Send(ctx context.Context, t notify.Task, to string) (Receipt, error) {
	msgID := messageID(t, p.cfg.From)
	var extra [][2]string
	if p.receipt != nil {
		if tok := p.receipt(t, p.name); tok != "" {
			extra = append(extra, [2]string{"X-SMTPAPI", smtpAPIHeader(tok)})
		}
	}
	msg, err := buildMail(t, p.cfg.From, to, msgID, p.listUnsubscribe(t), time.Now(), extra...)
	if err != nil {
		return Receipt{}, &SendError{Class: Permanent, Err: err}
	}
	if p.dkim != nil {
		if msg, err = p.dkim.sign(msg); err != nil {
			return Receipt{}, &SendError{Class: Permanent, Err: err}
		}
	}
	envFrom := p.cfg.From
	if a, err := mail.ParseAddress(p.cfg.From); err == nil {
		envFrom = a.Address
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", p.cfg.Addr)
	if err != nil {
		return Receipt{}, &SendError{Class: Transient, Err: err}
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	c, err := gosmtp.NewClientStartTLS(conn, p.tlsConfig)
	if err != nil {
		conn.Close()
		return Receipt{}, classifySMTP(fmt.Errorf("starttls: %w", err))
	}
	quitting := false
	defer func() {
		if !quitting {
			_ = c.Close()
		}
	}()
	if p.cfg.Username != "" {
		if err := c.Auth(sasl.NewPlainClient("", p.cfg.Username, p.cfg.Password)); err != nil {
			return Receipt{}, classifySMTP(fmt.Errorf("auth: %w", err))
		}
	}
	if err := c.Mail(envFrom, nil); err != nil {
		return Receipt{}, classifySMTP(fmt.Errorf("mail from: %w", err))
	}
	if err := c.Rcpt(to, nil); err != nil {
		return Receipt{}, classifySMTP(fmt.Errorf("rcpt to: %w", err))
	}
	w, err := c.Data()
	if err != nil {
		return Receipt{}, classifySMTP(fmt.Errorf("data: %w", err))
	}
	if _, err := w.Write(msg); err != nil {
		return Receipt{}, classifySMTP(fmt.Errorf("data: %w", err))
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return Receipt{}, classifySMTP(fmt.Errorf("end of data: %w", err))
	}
	// The server has the message. A crash from here to the sent mark repeats the send, so the
	// QUIT's round trip is not made in that window: it goes on in the background, bounded.
	quitting = true
	go func() {
		_ = conn.SetDeadline(time.Now().Add(smtpQuitTimeout))
		_ = c.Quit()
		_ = c.Close()
	}()
	id := msgID
	if m := queuedAs.FindStringSubmatch(resp.StatusText); m != nil {
		id = m[1]
	}
	return Receipt{MessageID: id, Status: "250", Receipted: len(extra) > 0}, nil
}

// classifySMTP maps an SMTP error: 5xx refuses the recipient or message for good (except the
// authentication replies, which are our credentials); 4xx and connection errors are transient.
func classifySMTP(err error) *SendError {
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) {
		return &SendError{Class: Transient, Err: err}
	}
	return classifySMTPReply(se.Code, fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2]), err)
}

func classifySMTPReply(code int, enhanced string, err error) *SendError {
	out := &SendError{Class: Transient, Status: fmt.Sprint(code), Reason: enhanced, Err: err}
	switch {
	case code == 530 || code == 535 || code == 523 || code == 538 || strings.HasPrefix(enhanced, "5.7.0") || strings.HasPrefix(enhanced, "5.7.8"):
		// authentication required or refused: our configuration, not the recipient
	case code >= 500:
		out.Class = Permanent
	}
	out.Bounce = smtpBounce(code, enhanced)
	return out
}

// smtpBounce tells a bounce of the address from other refusals by the enhanced status code
// (RFC 3463): X.1.x is the address (5.1.1 no such user, 5.1.2 no such domain, 5.1.3 bad
// syntax, 5.1.10 null MX), 5.2.1 a mailbox disabled for good; X.2.2 a full mailbox and 4.2.x a
// mailbox unavailable for now are soft. A policy or content refusal (5.7.x), a relay or server
// problem (X.3.x, X.4.x) says nothing about the address.
func smtpBounce(code int, enhanced string) string {
	switch {
	case code >= 500 && strings.HasPrefix(enhanced, "5.2.2"):
		return BounceSoft
	case code >= 500 && (strings.HasPrefix(enhanced, "5.1.") || enhanced == "5.2.1"):
		return BounceHard
	case code >= 400 && code < 500 && strings.HasPrefix(enhanced, "4.2."):
		return BounceSoft
	}
	return ""
}
