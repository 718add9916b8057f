package sim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/herald-notify/herald/platform/wire"
)

// SMTPEventsConfig makes the SMTP simulator report what became of each mail it took the way
// SendGrid's signed Event Webhook does: batches (JSON arrays) of events, each with the
// message's X-SMTPAPI unique_args as top-level members, signed with ECDSA P-256 over the
// timestamp header and the body.
type SMTPEventsConfig struct {
	// URL is where the batches are posted (the gateway's /v1/receipts/sendgrid); empty: no
	// events.
	URL string `yaml:"url" env:"HERALD_SIM_SMTP_EVENTS_URL"`
	// KeyFile is the ECDSA P-256 signing key (PEM, PKCS#8; default
	// <dir>/sendgrid-event-key.pem), made on first start. Its public half is written beside it
	// as SendGrid's console shows it, base64 of the DER key (<dir>/sendgrid-event-key-public.txt),
	// for the gateway's receipts.sendgrid.public_key_files.
	KeyFile string `yaml:"key_file" env:"HERALD_SIM_SMTP_EVENTS_KEY_FILE"`
	// Later is how long after delivery a bounce_later recipient's bounce or a complain
	// recipient's spam report is posted (default 0: in the next batch at once).
	Later time.Duration `yaml:"later" env:"HERALD_SIM_SMTP_EVENTS_LATER"`
}

func (c *Config) sendGridKeyFile() string {
	return orDefault(c.SMTP.Events.KeyFile, filepath.Join(c.Dir, "sendgrid-event-key.pem"))
}

// sendGridPublicKeyFile is where the verification key is written: beside the signing key.
func sendGridPublicKeyFile(keyFile string) string {
	return strings.TrimSuffix(keyFile, filepath.Ext(keyFile)) + "-public.txt"
}

// eventPoster signs and posts the SMTP simulator's event batches in order.
type eventPoster struct {
	cfg     SMTPEventsConfig
	key     *ecdsa.PrivateKey
	public  string // base64 DER, as SendGrid's console shows it
	batches chan eventBatch
	client  *http.Client
	log     *slog.Logger
	// posted and dropped count batches taken (2xx) and given up on.
	posted, dropped atomic.Int64
}

type eventBatch struct {
	at     time.Time // not before
	events []map[string]any
}

// loadOrCreateEventKey loads the signing key at path, or makes it, and writes its public half.
func loadOrCreateEventKey(path string) (*ecdsa.PrivateKey, string, error) {
	var key *ecdsa.PrivateKey
	raw, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, "", err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, "", err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, "", err
		}
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, "", fmt.Errorf("writing the SendGrid event key: %w", err)
		}
	case err != nil:
		return nil, "", err
	default:
		block, _ := pem.Decode(raw)
		if block == nil {
			return nil, "", fmt.Errorf("%s: not PEM", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", path, err)
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok || ek.Curve != elliptic.P256() {
			return nil, "", fmt.Errorf("%s: not an ECDSA P-256 key", path)
		}
		key = ek
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, "", err
	}
	public := base64.StdEncoding.EncodeToString(der)
	if err := os.WriteFile(sendGridPublicKeyFile(path), []byte(public+"\n"), 0o644); err != nil {
		return nil, "", fmt.Errorf("writing the SendGrid verification key: %w", err)
	}
	return key, public, nil
}

func newEventPoster(cfg SMTPEventsConfig, keyFile string, log *slog.Logger) (*eventPoster, error) {
	key, public, err := loadOrCreateEventKey(keyFile)
	if err != nil {
		return nil, err
	}
	return &eventPoster{cfg: cfg, key: key, public: public, batches: make(chan eventBatch, 4096),
		client: &http.Client{Timeout: 5 * time.Second}, log: log}, nil
}

// SignSendGrid signs an event batch as SendGrid does: base64 of the ASN.1 DER ECDSA signature
// of SHA-256 over the timestamp followed by the body.
func SignSendGrid(key *ecdsa.PrivateKey, timestamp string, body []byte) (string, error) {
	h := sha256.New()
	h.Write([]byte(timestamp))
	h.Write(body)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h.Sum(nil))
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// uniqueArgs reads the unique_args of a message's X-SMTPAPI header (SendGrid's SMTP API):
// what SendGrid echoes in each of the message's events.
func uniqueArgs(raw []byte) map[string]string {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil
	}
	h := msg.Header.Get("X-SMTPAPI")
	if h == "" {
		return nil
	}
	var api struct {
		UniqueArgs map[string]string `json:"unique_args"`
	}
	if json.Unmarshal([]byte(h), &api) != nil {
		return nil
	}
	return api.UniqueArgs
}

// mailTaken queues the events of a mail the SMTP simulator took for rcpt: processed and
// delivered; a bounce_later recipient's processed then bounce (the receiving server refused
// it after the relay took it); a complain recipient's delivered then spamreport.
func (p *eventPoster) mailTaken(rcpt, queueID, messageID string, args map[string]string, fault RecipientFault) {
	now := time.Now()
	ev := func(event string, extra map[string]any) map[string]any {
		m := map[string]any{}
		for k, v := range args {
			m[k] = v
		}
		m["email"], m["timestamp"], m["event"] = rcpt, now.Unix(), event
		m["sg_event_id"] = base64.RawURLEncoding.EncodeToString([]byte(randomHex(11)))
		m["sg_message_id"] = queueID + ".filterdrecv-sim-0"
		m["smtp-id"] = messageID
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	first := []map[string]any{ev("processed", nil)}
	var later []map[string]any
	switch fault {
	case RecipientBounceLater:
		later = append(later, ev("bounce", map[string]any{"type": "bounce", "status": "5.1.1",
			"reason": "550 5.1.1 The email account that you tried to reach does not exist", "bounce_classification": "Invalid Address"}))
	case RecipientComplain:
		first = append(first, ev("delivered", map[string]any{"response": "250 2.0.0 OK"}))
		later = append(later, ev("spamreport", nil))
	default:
		first = append(first, ev("delivered", map[string]any{"response": "250 2.0.0 OK"}))
	}
	p.queue(eventBatch{at: now, events: first})
	if later != nil {
		p.queue(eventBatch{at: now.Add(p.cfg.Later), events: later})
	}
}

func (p *eventPoster) queue(b eventBatch) {
	select {
	case p.batches <- b:
	default:
		p.dropped.Add(1)
	}
}

// run posts queued batches in order until ctx ends. A batch the receiver does not take (not
// 2xx) is posted again, freshly signed, up to 5 times with backoff (SendGrid retries for 24 h).
func (p *eventPoster) run(ctx context.Context) error {
	for {
		var b eventBatch
		select {
		case <-ctx.Done():
			return nil
		case b = <-p.batches:
		}
		if d := time.Until(b.at); d > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(d):
			}
		}
		body, _ := json.Marshal(b.events)
		wait := 200 * time.Millisecond
		for attempt := 1; ; attempt++ {
			err := p.post(ctx, body)
			if err == nil {
				p.posted.Add(1)
				break
			}
			if attempt == 5 || ctx.Err() != nil {
				p.dropped.Add(1)
				p.log.Warn("sendgrid event batch given up", "url", p.cfg.URL, "err", err)
				break
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			wait *= 2
		}
	}
}

func (p *eventPoster) post(ctx context.Context, body []byte) error {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	sig, err := SignSendGrid(p.key, ts, body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "SendGrid Event API")
	req.Header.Set(wire.SendGridSignatureHeader, sig)
	req.Header.Set(wire.SendGridTimestampHeader, ts)
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("answered %d", resp.StatusCode)
	}
	return nil
}
