package dispatch

import (
	"context"
	"errors"
	"testing"

	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/region/notify"
)

func TestRateLimitConfigValidateNamesKeys(t *testing.T) {
	ok := DefaultConfig()
	ok.Push.APNs = APNsConfig{Endpoint: "https://apns.example", TeamID: "T", KeyID: "K", KeyFile: "k.p8", Topic: "app",
		RateLimit: RateLimitConfig{PerSecond: 100, Burst: 20},
		Secondary: &APNsConfig{Endpoint: "https://apns2.example", TeamID: "T", KeyID: "K", KeyFile: "k.p8", Topic: "app"}}
	ok.SMS.Twilio = TwilioConfig{BaseURL: "https://sms.example", AccountSID: "AC", AuthToken: "x", From: "+1",
		RateLimit: RateLimitConfig{PerSecond: 0.5, Burst: 1}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	if DefaultConfig().Push.APNs.RateLimit.Enabled() {
		t.Fatal("rate limit must default to unlimited")
	}
	for key, mut := range map[string]func(*Config){
		"push.apns.rate_limit.per_second":           func(c *Config) { c.Push.APNs.RateLimit.PerSecond = -1 },
		"push.apns.rate_limit.burst":                func(c *Config) { c.Push.APNs.RateLimit.Burst = 0 },
		"push.apns.secondary.rate_limit.burst":      func(c *Config) { c.Push.APNs.Secondary.RateLimit = RateLimitConfig{Burst: 5} },
		"push.apns.secondary.rate_limit.per_second": func(c *Config) { c.Push.APNs.Secondary.RateLimit = RateLimitConfig{PerSecond: -3, Burst: 1} },
		"push.fcm.rate_limit.burst":                 func(c *Config) { c.Push.FCM.RateLimit = RateLimitConfig{PerSecond: 10, Burst: -1} },
		"email.smtp.rate_limit.per_second":          func(c *Config) { c.Email.SMTP.RateLimit = RateLimitConfig{PerSecond: 2e6, Burst: 1} },
		"sms.twilio.rate_limit.burst":               func(c *Config) { c.SMS.Twilio.RateLimit.Burst = 0 },
	} {
		c := ok
		sec := *ok.Push.APNs.Secondary
		c.Push.APNs.Secondary = &sec
		mut(&c)
		var ke *config.KeyError
		if err := c.Validate(); !errors.As(err, &ke) || ke.Key != key {
			t.Errorf("%s: got %v", key, err)
		}
	}
}

func TestRateLimitsByProviderName(t *testing.T) {
	c := DefaultConfig()
	c.Push.APNs = APNsConfig{Endpoint: "https://a", Name: "apns-app1", RateLimit: RateLimitConfig{PerSecond: 7, Burst: 3},
		Secondary: &APNsConfig{Endpoint: "https://b", RateLimit: RateLimitConfig{PerSecond: 1, Burst: 1}}}
	c.SMS.Twilio = TwilioConfig{BaseURL: "https://s", RateLimit: RateLimitConfig{PerSecond: 2, Burst: 2}}
	got := c.rateLimits()
	if got["apns-app1"].PerSecond != 7 || got["apns-secondary"].PerSecond != 1 || got["twilio"].Burst != 2 {
		t.Fatalf("rate limits by provider: %+v", got)
	}
	if _, ok := got["fcm"]; ok {
		t.Fatal("unconfigured provider has a rate limit")
	}
}

func TestNilRateLimiterDoesNotLimit(t *testing.T) {
	if l := NewRateLimiter(nil, "p:", "r", "apns", RateLimitConfig{PerSecond: 1, Burst: 1}, nil); l != nil {
		t.Fatal("a limiter without Redis must be nil")
	}
	var l *RateLimiter
	if err := l.Wait(context.Background(), notify.Transactional); err != nil {
		t.Fatal(err)
	}
}
