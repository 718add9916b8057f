package dispatch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/payload"
	"github.com/sideshow/apns2/token"
	"golang.org/x/net/http2"

	"github.com/herald-notify/herald/region/notify"
)

// apnsProvider sends through sideshow/apns2 with provider-token (.p8) authentication over one
// HTTP/2 client (multiplexed streams).
type apnsProvider struct {
	name   string
	topic  string
	client *apns2.Client
}

func loadPool(file string) (*x509.CertPool, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}

func newAPNs(c APNsConfig, name string) (*apnsProvider, error) {
	key, err := token.AuthKeyFromFile(c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("apns %s: key file: %w", name, err)
	}
	client := apns2.NewTokenClient(&token.Token{AuthKey: key, KeyID: c.KeyID, TeamID: c.TeamID})
	client.Host = strings.TrimRight(c.Endpoint, "/")
	tr, ok := client.HTTPClient.Transport.(*http2.Transport)
	if !ok {
		return nil, fmt.Errorf("apns %s: unexpected transport %T", name, client.HTTPClient.Transport)
	}
	if c.CAFile != "" {
		pool, err := loadPool(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("apns %s: %w", name, err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	// apns2's Response carries no headers; the wrapper hands Retry-After to the caller.
	client.HTTPClient.Transport = &retryAfterTransport{next: tr}
	return &apnsProvider{name: name, topic: c.Topic, client: client}, nil
}

func (p *apnsProvider) Name() string { return p.name }

// apnsNotification builds the APNs request for one device (pure: tested on its own).
func apnsNotification(t notify.Task, deviceToken, topic string) *apns2.Notification {
	pl := payload.NewPayload().Sound("default")
	if t.Content.Title != "" {
		pl.AlertTitle(t.Content.Title)
	}
	body := t.Content.Body
	if body == "" {
		body = t.Content.Text
	}
	pl.AlertBody(body)
	for k, v := range t.Metadata {
		if k != "aps" {
			pl.Custom(k, v)
		}
	}
	if t.Content.Link != "" {
		pl.Custom("link", t.Content.Link)
	}
	pl.Custom("notification_id", t.NotificationID)
	n := &apns2.Notification{
		DeviceToken: deviceToken,
		Topic:       topic,
		Payload:     pl,
		PushType:    apns2.PushTypeAlert,
		Priority:    apns2.PriorityHigh,
	}
	if t.Tier == notify.Marketing {
		n.Priority = apns2.PriorityLow // Apple: 5 for non-urgent, delivered power-efficiently
	}
	if !t.ExpiresAt.IsZero() {
		n.Expiration = t.ExpiresAt
	}
	return n
}

func (p *apnsProvider) Send(ctx context.Context, t notify.Task, to string) (Receipt, error) {
	var ra string
	ctx = context.WithValue(ctx, retryAfterKey{}, &ra)
	res, err := p.client.PushWithContext(ctx, apnsNotification(t, to, p.topic))
	if err != nil {
		return Receipt{}, &SendError{Class: Transient, Err: err}
	}
	if se := classifyAPNs(res.StatusCode, res.Reason, parseRetryAfter(ra, time.Now())); se != nil {
		return Receipt{MessageID: res.ApnsID}, se
	}
	return Receipt{MessageID: res.ApnsID, Status: strconv.Itoa(res.StatusCode)}, nil
}

// classifyAPNs maps an APNs answer to nil (accepted) or its SendError.
func classifyAPNs(status int, reason string, retryAfter time.Duration) *SendError {
	if status == http.StatusOK {
		return nil
	}
	se := &SendError{Class: Transient, Status: strconv.Itoa(status), Reason: reason}
	switch {
	case status == http.StatusGone, reason == apns2.ReasonUnregistered, reason == apns2.ReasonBadDeviceToken:
		se.Class = Gone // the token will never work again: deactivate it
	case status == http.StatusBadRequest, status == http.StatusRequestEntityTooLarge:
		se.Class = Permanent // the message itself is refused; sending it again changes nothing
	case status == http.StatusTooManyRequests, status >= 500:
		se.RetryAfter = retryAfter
	default:
		// 403 provider token, 404/405 path: our configuration or credentials, not the
		// recipient; retried (and counted by the breaker) so nothing is lost while it is fixed.
	}
	return se
}

type retryAfterKey struct{}

// retryAfterTransport copies the Retry-After header of an answer into the *string the request's
// context carries.
type retryAfterTransport struct{ next *http2.Transport }

func (t *retryAfterTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if resp != nil {
		if box, ok := r.Context().Value(retryAfterKey{}).(*string); ok {
			*box = resp.Header.Get("Retry-After")
		}
	}
	return resp, err
}

// CloseIdleConnections lets apns2's Client.CloseIdleConnections reach the HTTP/2 transport.
func (t *retryAfterTransport) CloseIdleConnections() { t.next.CloseIdleConnections() }
