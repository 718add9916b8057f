package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/herald-notify/herald/region/notify"
)

// twilioProvider posts to a Twilio-compatible Messages endpoint (form-encoded, basic auth).
type twilioProvider struct {
	name string
	cfg  TwilioConfig
	url  string
	hc   *http.Client
	// callback makes a task's StatusCallback URL (Deps.StatusCallback; nil or "": none).
	callback func(t notify.Task, provider string) string
}

func newTwilio(c TwilioConfig, name string, callback func(notify.Task, string) string) *twilioProvider {
	u := strings.TrimRight(c.BaseURL, "/") + "/2010-04-01/Accounts/" + url.PathEscape(c.AccountSID) + "/Messages.json"
	return &twilioProvider{name: name, cfg: c, url: u, hc: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}, callback: callback}
}

func (p *twilioProvider) Name() string { return p.name }

// smsForm builds the Messages form (pure: tested on its own).
func smsForm(t notify.Task, from, to string) url.Values {
	body := t.Content.Body
	if body == "" {
		body = t.Content.Text
	}
	if body == "" {
		body = t.Content.Title
	}
	if t.Content.Link != "" {
		body += " " + t.Content.Link
	}
	return url.Values{"To": {to}, "From": {from}, "Body": {body}}
}

func (p *twilioProvider) Send(ctx context.Context, t notify.Task, to string) (Receipt, error) {
	form := smsForm(t, p.cfg.From, to)
	if p.callback != nil {
		if cb := p.callback(t, p.name); cb != "" {
			form.Set("StatusCallback", cb)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, strings.NewReader(form.Encode()))
	if err != nil {
		return Receipt{}, &SendError{Class: Permanent, Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(p.cfg.AccountSID, p.cfg.AuthToken)
	resp, err := p.hc.Do(req)
	if err != nil {
		return Receipt{}, &SendError{Class: Transient, Err: err}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var ans struct {
		SID     string `json:"sid"`
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(raw, &ans)
	if resp.StatusCode/100 == 2 {
		return Receipt{MessageID: ans.SID, Status: strconv.Itoa(resp.StatusCode), Receipted: form.Has("StatusCallback")}, nil
	}
	se := classifyTwilio(resp.StatusCode, ans.Code, parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()))
	se.Err = fmt.Errorf("twilio: %s", ans.Message)
	return Receipt{}, se
}

// classifyTwilio maps a Twilio error answer to its SendError.
func classifyTwilio(status, code int, retryAfter time.Duration) *SendError {
	se := &SendError{Class: Transient, Status: strconv.Itoa(status)}
	if code != 0 {
		se.Reason = strconv.Itoa(code)
	}
	switch {
	case status == http.StatusTooManyRequests || status >= 500:
		se.RetryAfter = retryAfter
	case status == http.StatusBadRequest:
		// 21211 invalid number, 21610 unsubscribed, 21614 not a mobile, 2160x missing or bad
		// fields: the message or recipient is refused for good.
		se.Class = Permanent
		switch code {
		case 21211, 21614: // the number is not one a text can reach
			se.Bounce = BounceHard
		case 21610: // the owner replied STOP to this sender
			se.Bounce = BounceUnsubscribed
		}
	default:
		// 401 (20003), 403, 404 (20404): our account or credentials; retried, counted by the
		// breaker, nothing lost while it is fixed.
	}
	return se
}

// AuthTokens returns the auth token of each configured Twilio provider (the primary and any
// secondary), by the name the dispatcher gives it: what verifies their status callbacks.
func (c TwilioConfig) AuthTokens() map[string]string {
	out := map[string]string{}
	if c.BaseURL == "" {
		return out
	}
	for i, p := range []*TwilioConfig{&c, c.Secondary} {
		if p != nil {
			out[providerName(p.Name, "twilio", i == 1)] = p.AuthToken
		}
	}
	return out
}
