package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"google.golang.org/api/option"

	"github.com/herald-notify/herald/region/notify"
)

// fcmProvider sends through the Firebase Admin SDK (FCM HTTP v1) with a service-account
// credential, pointed at the configured endpoint.
type fcmProvider struct {
	name string
	// newClient makes a messaging client with a token source of its own.
	newClient func() (*messaging.Client, error)

	mu      sync.Mutex
	client  *messaging.Client
	renewed time.Time // when client was last replaced after a refused token
	// minimal reports, on each send, whether the region's jurisdiction wants content-free
	// pushes (Deps.MinimalPush).
	minimal func() bool
}

func newFCM(c FCMConfig, name string, minimal func() bool) (*fcmProvider, error) {
	sa, err := os.ReadFile(c.CredentialsFile)
	if err != nil {
		return nil, fmt.Errorf("fcm %s: credentials file: %w", name, err)
	}
	var acct struct {
		ProjectID string `json:"project_id"`
	}
	if err := json.Unmarshal(sa, &acct); err != nil || acct.ProjectID == "" {
		return nil, fmt.Errorf("fcm %s: credentials file %s: no project_id in the service-account JSON", name, c.CredentialsFile)
	}
	return newFCMAccount(c, sa, acct.ProjectID, name, minimal)
}

// newFCMAccount is newFCM with the service-account JSON in hand (an app's own).
func newFCMAccount(c FCMConfig, sa []byte, projectID, name string, minimal func() bool) (*fcmProvider, error) {
	acct := struct{ ProjectID string }{projectID}
	newClient := func() (*messaging.Client, error) {
		// The client refreshes OAuth2 tokens with this context, so it must outlive the client.
		ctx := context.Background()
		app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: acct.ProjectID},
			option.WithAuthCredentialsJSON(option.ServiceAccount, sa),
			option.WithEndpoint(strings.TrimRight(c.Endpoint, "/")))
		if err != nil {
			return nil, fmt.Errorf("fcm %s: %w", name, err)
		}
		client, err := app.Messaging(ctx)
		if err != nil {
			return nil, fmt.Errorf("fcm %s: messaging client: %w", name, err)
		}
		if err := withoutSDKRetries(client); err != nil {
			return nil, fmt.Errorf("fcm %s: %w", name, err)
		}
		return client, nil
	}
	client, err := newClient()
	if err != nil {
		return nil, err
	}
	return &fcmProvider{name: name, newClient: newClient, client: client, minimal: minimal}, nil
}

// withoutSDKRetries turns off the retries the Admin SDK makes inside Send: it repeats a request
// after a 503 (waiting out Retry-After, up to 2 minutes) and after any network error (at once),
// and none of that is visible to Herald. Herald retries itself, through the retry topics, behind
// the provider's breaker, with the sent marks. The SDK's own retries did harm: during an outage
// each Send sat inside the SDK until send_timeout, holding a slot of the pool while the breaker,
// which sees a call only when it returns, stayed closed; and a retry the SDK sent just before
// send_timeout ended was accepted by FCM while Herald saw the timeout and sent it again (the
// fault suite's provider-outage repeats). The SDK offers no option for this (its own tests clear
// the same field), so it is cleared here, and a start fails loudly if a new SDK version moved it.
func withoutSDKRetries(c *messaging.Client) error {
	layout := errors.New("the Admin SDK's messaging client no longer has fcmClient.httpClient.RetryConfig; its internal retries cannot be turned off (check the firebase.google.com/go/v4 upgrade)")
	v := reflect.ValueOf(c)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return layout
	}
	fc := v.Elem().FieldByName("fcmClient")
	if !fc.IsValid() || fc.Kind() != reflect.Pointer || fc.IsNil() {
		return layout
	}
	hc := fc.Elem().FieldByName("httpClient")
	if !hc.IsValid() || hc.Kind() != reflect.Pointer || hc.IsNil() {
		return layout
	}
	rc := hc.Elem().FieldByName("RetryConfig")
	if !rc.IsValid() || rc.Kind() != reflect.Pointer || !rc.CanAddr() {
		return layout
	}
	reflect.NewAt(rc.Type(), unsafe.Pointer(rc.UnsafeAddr())).Elem().Set(reflect.Zero(rc.Type()))
	return nil
}

// fcmRenewEvery bounds how often a refused token replaces the client (and its token).
const fcmRenewEvery = 5 * time.Second

// renew replaces the client, and so its cached access token, after FCM refused the token
// (401 UNAUTHENTICATED): the Admin SDK keeps a token until it expires (an hour) and never
// fetches a new one on a 401, so a token the provider stopped accepting (revoked, or issued by
// a provider instance that restarted) failed every push for the rest of the hour, with the
// breaker open. used is the client the refused send went through.
func (p *fcmProvider) renew(used *messaging.Client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client != used || time.Since(p.renewed) < fcmRenewEvery {
		return // another send renewed it already
	}
	c, err := p.newClient()
	if err != nil {
		return // the next refused send tries again
	}
	p.client, p.renewed = c, time.Now()
	fcmTokenRenewals.WithLabelValues(p.name).Inc()
}

func (p *fcmProvider) Name() string { return p.name }

// fcmReserved are data keys FCM refuses.
func fcmReserved(k string) bool {
	switch k {
	case "from", "notification", "message_type", "collapse_key":
		return true
	}
	return strings.HasPrefix(k, "google.") || strings.HasPrefix(k, "gcm.")
}

// fcmMessage builds the FCM message for one device (pure: tested on its own). minimal builds
// the content-free push of a jurisdiction whose push_content is minimal: a data-only message
// holding the notification id and nothing else of the task (no notification block, title,
// body, link, metadata or user id), which the app's FirebaseMessagingService receives and
// answers by fetching the content from the user's home region. No collapse key or analytics
// label is ever set.
func fcmMessage(t notify.Task, deviceToken, platform string, now time.Time, minimal bool) *messaging.Message {
	m := &messaging.Message{Token: deviceToken, Data: map[string]string{"notification_id": t.NotificationID}}
	if !minimal {
		body := t.Content.Body
		if body == "" {
			body = t.Content.Text
		}
		for k, v := range t.Metadata {
			if !fcmReserved(k) {
				m.Data[k] = v
			}
		}
		if t.Content.Link != "" {
			m.Data["link"] = t.Content.Link
		}
		m.Notification = &messaging.Notification{Title: t.Content.Title, Body: body}
	}
	var ttl *time.Duration
	if !t.ExpiresAt.IsZero() {
		d := max(t.ExpiresAt.Sub(now), 0).Truncate(time.Second)
		ttl = &d
	}
	switch platform {
	case "web":
		m.Webpush = &messaging.WebpushConfig{Headers: map[string]string{}}
		if ttl != nil {
			m.Webpush.Headers["TTL"] = strconv.Itoa(int(ttl.Seconds()))
		}
		if !minimal && strings.HasPrefix(t.Content.Link, "https://") {
			m.Webpush.FCMOptions = &messaging.WebpushFCMOptions{Link: t.Content.Link}
		}
	default:
		prio := "high"
		if t.Tier == notify.Marketing {
			prio = "normal"
		}
		m.Android = &messaging.AndroidConfig{Priority: prio, TTL: ttl}
	}
	return m
}

func (p *fcmProvider) Send(ctx context.Context, t notify.Task, to string) (Receipt, error) {
	platform := "android"
	for _, d := range t.Target.Devices {
		if d.Token == to {
			platform = d.Platform
		}
	}
	p.mu.Lock()
	client := p.client
	p.mu.Unlock()
	name, err := client.Send(ctx, fcmMessage(t, to, platform, time.Now(), p.minimal != nil && p.minimal()))
	if err == nil {
		return Receipt{MessageID: name, Status: "200"}, nil
	}
	if errorutils.IsUnauthenticated(err) {
		p.renew(client) // the retry goes out with a new token
	}
	status, ra := 0, time.Duration(0)
	if resp := errorutils.HTTPResponse(err); resp != nil {
		status = resp.StatusCode
		ra = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	se := classifyFCM(status, fcmErrorCode(err), ra)
	se.Err = err
	return Receipt{}, se
}

// fcmErrorCode names the FCM error the Admin SDK recognised.
func fcmErrorCode(err error) string {
	switch {
	case messaging.IsUnregistered(err):
		return "UNREGISTERED"
	case messaging.IsSenderIDMismatch(err):
		return "SENDER_ID_MISMATCH"
	case messaging.IsQuotaExceeded(err):
		return "QUOTA_EXCEEDED"
	case messaging.IsThirdPartyAuthError(err):
		return "THIRD_PARTY_AUTH_ERROR"
	case messaging.IsInvalidArgument(err):
		return "INVALID_ARGUMENT"
	case messaging.IsUnavailable(err):
		return "UNAVAILABLE"
	case messaging.IsInternal(err):
		return "INTERNAL"
	case errorutils.IsUnauthenticated(err):
		return "UNAUTHENTICATED"
	case errorutils.IsPermissionDenied(err):
		return "PERMISSION_DENIED"
	}
	return ""
}

// classifyFCM maps an FCM error (HTTP status, FCM error code) to its SendError.
func classifyFCM(status int, code string, retryAfter time.Duration) *SendError {
	se := &SendError{Class: Transient, Reason: code}
	if status != 0 {
		se.Status = strconv.Itoa(status)
	}
	switch code {
	case "UNREGISTERED", "INVALID_ARGUMENT":
		// FCM answers INVALID_ARGUMENT for a malformed token too; Herald builds its messages
		// within FCM's limits, so the token is what is wrong.
		se.Class = Gone
	case "SENDER_ID_MISMATCH":
		se.Class = Permanent
	case "QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL":
		se.RetryAfter = retryAfter
	default:
		if status == http.StatusTooManyRequests || status >= 500 {
			se.RetryAfter = retryAfter
		}
	}
	return se
}
