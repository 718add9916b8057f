package sim

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// WebhookConfig configures the webhook receiver: an app's endpoint, as Herald's webhooks role
// calls it.
type WebhookConfig struct {
	Listen string `yaml:"listen" env:"HERALD_SIM_WEBHOOK_LISTEN"`
	Faults Faults `yaml:"faults"`
}

// maxWebhookBody bounds a received message.
const maxWebhookBody = 1 << 20

// webhookServer receives Standard Webhooks messages at POST /hooks/{name}: each name is one
// endpoint, whose secret (whsec_...) is registered over the admin API (PUT
// /sim/webhook/secrets/{name}). It verifies every message with the specification's own library
// (signature and timestamp tolerance), records it, and answers 204, or 401 when the signature
// does not verify; faults (outage, server errors, latency past the sender's timeout) are applied
// before that.
type webhookServer struct {
	records *Ring
	faults  *Injector
	log     *slog.Logger

	mu      sync.RWMutex
	secrets map[string]*standardwebhooks.Webhook
}

func newWebhookServer(records *Ring, faults *Injector, log *slog.Logger) *webhookServer {
	return &webhookServer{records: records, faults: faults, log: log, secrets: map[string]*standardwebhooks.Webhook{}}
}

func (s *webhookServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hooks/{name}", s.receive)
	return mux
}

// setSecret registers name's secret (empty: forgets it).
func (s *webhookServer) setSecret(name, secret string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if secret == "" {
		delete(s.secrets, name)
		return nil
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return err
	}
	s.secrets[name] = wh
	return nil
}

func (s *webhookServer) receive(w http.ResponseWriter, r *http.Request) {
	received := time.Now()
	name := r.PathValue("name")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	rec := &Record{To: name, ReceivedAt: received, Payload: jsonPayload(body), Headers: map[string]string{
		"webhook-id":        r.Header.Get(standardwebhooks.HeaderWebhookID),
		"webhook-timestamp": r.Header.Get(standardwebhooks.HeaderWebhookTimestamp),
		"content-type":      r.Header.Get("Content-Type"),
		"user-agent":        r.Header.Get("User-Agent"),
	}}
	answer := func(status int, reason string, retryAfter int) {
		rec.Status, rec.Error = status, reason
		s.records.Add(rec)
		if retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		}
		if status == http.StatusNoContent {
			w.WriteHeader(status)
			return
		}
		writeJSON(w, status, map[string]string{"error": reason})
	}
	if err != nil {
		answer(http.StatusRequestEntityTooLarge, "body_too_large", 0)
		return
	}
	if err := s.faults.Wait(r.Context()); err != nil {
		rec.Status, rec.Error = 0, "sender_gone" // the sender gave up (its timeout) while we waited
		s.records.Add(rec)
		return
	}
	switch d := s.faults.Decide(); d.Kind {
	case Outage:
		answer(http.StatusServiceUnavailable, "outage", d.RetryAfter)
		return
	case RateLimited:
		answer(http.StatusTooManyRequests, "rate_limited", d.RetryAfter)
		return
	case ServerError:
		answer(d.Status, "server_error", 0)
		return
	}
	s.mu.RLock()
	wh := s.secrets[name]
	s.mu.RUnlock()
	if wh == nil {
		rec.Headers["verified"] = "false"
		answer(http.StatusNotFound, "no_secret_registered", 0)
		return
	}
	if err := wh.Verify(body, r.Header); err != nil {
		rec.Headers["verified"] = "false"
		reason := "invalid_signature"
		switch {
		case errors.Is(err, standardwebhooks.ErrRequiredHeaders):
			reason = "missing_headers"
		case errors.Is(err, standardwebhooks.ErrMessageTooOld), errors.Is(err, standardwebhooks.ErrMessageTooNew):
			reason = "timestamp_out_of_tolerance"
		}
		answer(http.StatusUnauthorized, reason, 0)
		return
	}
	rec.Headers["verified"] = "true"
	rec.ID = r.Header.Get(standardwebhooks.HeaderWebhookID)
	answer(http.StatusNoContent, "", 0)
}

// webhookSecret is the admin API's body for a receiver's secret.
type webhookSecret struct {
	Secret string `json:"secret"`
}

func decodeWebhookSecret(r io.Reader) (string, error) {
	var b webhookSecret
	dec := json.NewDecoder(io.LimitReader(r, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return "", err
	}
	if b.Secret == "" {
		return "", errors.New("secret is required (whsec_ and base64)")
	}
	if _, err := standardwebhooks.NewWebhook(b.Secret); err != nil {
		return "", err
	}
	return b.Secret, nil
}
