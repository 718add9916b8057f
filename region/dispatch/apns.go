package dispatch

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sideshow/apns2"
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
	// minimal reports, on each send, whether the region's jurisdiction wants content-free
	// pushes (Deps.MinimalPush).
	minimal func() bool
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

func newAPNs(c APNsConfig, name string, minimal func() bool) (*apnsProvider, error) {
	raw, err := os.ReadFile(c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("apns %s: key file: %w", name, err)
	}
	return newAPNsKey(c, raw, name, minimal)
}

// newAPNsKey is newAPNs with the .p8 key's bytes in hand (an app's own key).
func newAPNsKey(c APNsConfig, p8 []byte, name string, minimal func() bool) (*apnsProvider, error) {
	key, err := token.AuthKeyFromBytes(p8)
	if err != nil {
		return nil, fmt.Errorf("apns %s: key: %w", name, err)
	}
	client := apns2.NewTokenClient(&token.Token{AuthKey: key, KeyID: c.KeyID, TeamID: c.TeamID})
	client.Host = strings.TrimRight(c.Endpoint, "/")
	// The send's context (send_timeout) bounds each request; apns2's own client timeout would
	// add a timer and a goroutine to every push.
	client.HTTPClient.Timeout = 0
	// sideshow/apns2 builds its client on x/net's HTTP/2 transport (deprecated since net/http
	// speaks HTTP/2 itself); the CA is set on the transport apns2 made.
	tr, ok := client.HTTPClient.Transport.(*http2.Transport) //nolint:staticcheck // apns2's own transport
	if !ok {
		return nil, fmt.Errorf("apns %s: unexpected transport %T", name, client.HTTPClient.Transport)
	}
	if c.CAFile != "" {
		pool, err := loadPool(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("apns %s: %w", name, err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12} //nolint:staticcheck // apns2's own transport
	}
	// apns2's Response carries no headers; the wrapper hands Retry-After to the caller.
	client.HTTPClient.Transport = &retryAfterTransport{next: tr}
	return &apnsProvider{name: name, topic: c.Topic, client: client, minimal: minimal}, nil
}

func (p *apnsProvider) Name() string { return p.name }

// apnsNotification builds the APNs request for one device (pure: tested on its own). minimal
// builds the content-free push (apnsMinimalPayload). No header carries anything of the task
// but its tier (the priority) and its expiry: no apns-collapse-id, no thread id.
func apnsNotification(t notify.Task, deviceToken, topic string, minimal bool) *apns2.Notification {
	payload := apnsPayload
	if minimal {
		payload = apnsMinimalPayload
	}
	n := &apns2.Notification{
		DeviceToken: deviceToken,
		Topic:       topic,
		Payload:     payload(t),
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

// apnsAps is the "aps" dictionary of a push: the alert and the default sound.
type apnsAps struct {
	Alert apnsAlert `json:"alert"`
	Sound string    `json:"sound"`
}

type apnsAlert struct {
	Body  string `json:"body,omitempty"`
	Title string `json:"title,omitempty"`
}

// apnsPayload is the JSON body of a push: "aps", then the task's metadata ("aps" excepted),
// its link and its notification id as custom keys, the last two winning over metadata keys of
// the same name. It is encoded here, from a struct and strings, rather than through apns2's
// payload builder, whose map of interfaces cost about a tenth of a push's CPU in the
// dispatcher; apns2 sends a []byte payload as it is.
func apnsPayload(t notify.Task) []byte {
	out := make([]byte, 0, 256)
	out = append(out, `{"aps":`...)
	aps, _ := json.Marshal(apnsAps{Alert: apnsAlert{Body: cmp.Or(t.Content.Body, t.Content.Text), Title: t.Content.Title}, Sound: "default"})
	out = append(out, aps...)
	custom := func(k, v string) {
		out = append(out, ',')
		out = appendJSONString(out, k)
		out = append(out, ':')
		out = appendJSONString(out, v)
	}
	if len(t.Metadata) > 0 {
		for _, k := range slices.Sorted(maps.Keys(t.Metadata)) { // a stable body for one task
			if k == "aps" || k == "notification_id" || (k == "link" && t.Content.Link != "") {
				continue
			}
			custom(k, t.Metadata[k])
		}
	}
	if t.Content.Link != "" {
		custom("link", t.Content.Link)
	}
	custom("notification_id", t.NotificationID)
	return append(out, '}')
}

// MinimalAlertLocKey is the alert of a content-free push: a key of the app's Localizable.strings
// ("New notification" in the user's language), shown as it is if the app's Notification Service
// Extension cannot fetch the content in time.
const MinimalAlertLocKey = "HERALD_NOTIFICATION"

// apnsMinimalPayload is the content-free push of a jurisdiction whose push_content is minimal:
// a generic, localisable alert with "mutable-content": 1, which has iOS start the app's
// Notification Service Extension, and the notification id, with which the extension fetches
// the title and body from the user's home region. Nothing else of the task goes to Apple: no
// title, body, link, metadata or user id.
func apnsMinimalPayload(t notify.Task) []byte {
	out := make([]byte, 0, 128)
	out = append(out, `{"aps":{"alert":{"loc-key":`...)
	out = appendJSONString(out, MinimalAlertLocKey)
	out = append(out, `},"sound":"default","mutable-content":1},"notification_id":`...)
	out = appendJSONString(out, t.NotificationID)
	return append(out, '}')
}

// appendJSONString appends s as a JSON string (encoding/json's escaping).
func appendJSONString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always encodes
	return append(dst, b...)
}

func (p *apnsProvider) Send(ctx context.Context, t notify.Task, to string) (Receipt, error) {
	var ra string
	ctx = context.WithValue(ctx, retryAfterKey{}, &ra)
	res, err := p.client.PushWithContext(ctx, apnsNotification(t, to, p.topic, p.minimal != nil && p.minimal()))
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
type retryAfterTransport struct {
	next interface {
		http.RoundTripper
		CloseIdleConnections()
	}
}

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
