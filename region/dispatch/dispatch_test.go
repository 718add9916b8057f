package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/payload"

	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/region/deliverylog"
	"github.com/herald-notify/herald/region/notify"
)

func TestClassifyAPNs(t *testing.T) {
	for _, tc := range []struct {
		status int
		reason string
		want   Class
		ra     time.Duration
	}{
		{410, apns2.ReasonUnregistered, Gone, 0},
		{400, apns2.ReasonBadDeviceToken, Gone, 0},
		{400, apns2.ReasonBadTopic, Permanent, 0},
		{400, apns2.ReasonPayloadEmpty, Permanent, 0},
		{413, apns2.ReasonPayloadTooLarge, Permanent, 0},
		{403, apns2.ReasonExpiredProviderToken, Transient, 0},
		{403, apns2.ReasonInvalidProviderToken, Transient, 0},
		{429, apns2.ReasonTooManyRequests, Transient, 3 * time.Second},
		{500, apns2.ReasonInternalServerError, Transient, 3 * time.Second},
		{503, apns2.ReasonServiceUnavailable, Transient, 3 * time.Second},
	} {
		se := classifyAPNs(tc.status, tc.reason, 3*time.Second)
		if se == nil || se.Class != tc.want || se.RetryAfter != tc.ra {
			t.Errorf("%d %s: got %+v, want %v retry-after %v", tc.status, tc.reason, se, tc.want, tc.ra)
		}
	}
	if se := classifyAPNs(200, "", 0); se != nil {
		t.Errorf("200: %v", se)
	}
}

func TestClassifyFCM(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
		want   Class
		ra     bool
	}{
		{404, "UNREGISTERED", Gone, false},
		{400, "INVALID_ARGUMENT", Gone, false},
		{403, "SENDER_ID_MISMATCH", Permanent, false},
		{429, "QUOTA_EXCEEDED", Transient, true},
		{503, "UNAVAILABLE", Transient, true},
		{500, "INTERNAL", Transient, true},
		{401, "UNAUTHENTICATED", Transient, false},
		{403, "PERMISSION_DENIED", Transient, false},
		{401, "THIRD_PARTY_AUTH_ERROR", Transient, false},
		{502, "", Transient, true},
		{0, "", Transient, false},
	} {
		se := classifyFCM(tc.status, tc.code, 2*time.Second)
		if se.Class != tc.want || (se.RetryAfter > 0) != tc.ra {
			t.Errorf("%d %s: got %+v", tc.status, tc.code, se)
		}
	}
}

func TestClassifySMTP(t *testing.T) {
	for _, tc := range []struct {
		code     int
		enhanced string
		want     Class
	}{
		{550, "5.1.1", Permanent}, {550, "5.1.3", Permanent}, {553, "5.1.3", Permanent}, {552, "5.3.4", Permanent},
		{421, "4.3.2", Transient}, {451, "4.7.1", Transient}, {451, "4.3.0", Transient},
		{535, "5.7.8", Transient}, {530, "5.7.0", Transient}, {523, "5.7.10", Transient},
	} {
		if se := classifySMTPReply(tc.code, tc.enhanced, nil); se.Class != tc.want {
			t.Errorf("%d %s: got %v, want %v", tc.code, tc.enhanced, se.Class, tc.want)
		}
	}
	if se := classifySMTP(errors.New("connection refused")); se.Class != Transient {
		t.Errorf("network error: %v", se.Class)
	}
}

func TestClassifyTwilio(t *testing.T) {
	for _, tc := range []struct {
		status, code int
		want         Class
		ra           bool
	}{
		{400, 21211, Permanent, false}, {400, 21610, Permanent, false}, {400, 21604, Permanent, false},
		{400, 21617, Permanent, false}, {401, 20003, Transient, false}, {404, 20404, Transient, false},
		{429, 20429, Transient, true}, {503, 20503, Transient, true}, {500, 20500, Transient, true},
	} {
		se := classifyTwilio(tc.status, tc.code, time.Second)
		if se.Class != tc.want || (se.RetryAfter > 0) != tc.ra {
			t.Errorf("%d %d: got %+v", tc.status, tc.code, se)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"": 0, "7": 7 * time.Second, "-1": 0, "soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second, now.Add(-time.Minute).Format(http.TimeFormat): 0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("%q: got %v, want %v", in, got, want)
		}
	}
}

func TestBackoffGrowsWithJitterAndHonoursRetryAfter(t *testing.T) {
	r := RetryConfig{Delays: []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute}, MaxDelay: 5 * time.Minute, Jitter: 0.2, MaxAttempts: 6}
	for _, tc := range []struct {
		retry int
		ra    time.Duration
		rnd   float64
		want  time.Duration
		level int
	}{
		{1, 0, 0, 5 * time.Second, 1},
		{1, 0, 0.5, 5500 * time.Millisecond, 1},
		{2, 0, 0, 30 * time.Second, 2},
		{3, 0, 0, 2 * time.Minute, 3},
		{4, 0, 0, 4 * time.Minute, 3},
		{5, 0, 0, 5 * time.Minute, 3},                           // capped
		{5, 0, 0.99, 5*time.Minute + 59400*time.Millisecond, 3}, // jitter on top of the cap
		{1, 20 * time.Second, 0.5, 20 * time.Second, 1},         // Retry-After wins
	} {
		if got := r.Backoff(tc.retry, tc.ra, tc.rnd); got != tc.want {
			t.Errorf("retry %d ra %v rnd %v: got %v, want %v", tc.retry, tc.ra, tc.rnd, got, tc.want)
		}
		if got := r.Level(tc.retry); got != tc.level {
			t.Errorf("retry %d: level %d, want %d", tc.retry, got, tc.level)
		}
	}
}

func sampleTask(ch string) notify.Task {
	return notify.Task{NotificationID: "n1", AppID: "app", Tier: notify.Transactional, UserID: "ada", Channel: ch,
		Content:  notify.Content{Title: "Hi", Body: "Your order shipped", Link: "https://example.com/o/1", Subject: "Order", Text: "Shipped ✓"},
		Metadata: map[string]string{"order": "1", "from": "x", "aps": "y"}, ExpiresAt: time.Now().Add(time.Hour)}
}

func TestAPNsNotification(t *testing.T) {
	task := sampleTask(notify.Push)
	n := apnsNotification(task, "abcd", "com.herald.demo", false)
	if n.Topic != "com.herald.demo" || n.DeviceToken != "abcd" || n.Priority != 10 || n.PushType != apns2.PushTypeAlert || n.Expiration.IsZero() {
		t.Fatalf("notification: %+v", n)
	}
	raw, err := n.MarshalJSON() // what apns2 sends
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatalf("payload %s: %v", raw, err)
	}
	alert := p["aps"].(map[string]any)["alert"].(map[string]any)
	if alert["title"] != "Hi" || alert["body"] != "Your order shipped" || p["link"] != "https://example.com/o/1" || p["order"] != "1" || p["notification_id"] != "n1" {
		t.Fatalf("payload: %s", raw)
	}
	task.Tier = notify.Marketing
	if apnsNotification(task, "abcd", "t", false).Priority != 5 {
		t.Fatal("marketing should be priority 5")
	}
}

// The payload is encoded by hand; apns2's own payload builder, as the dispatcher used it
// before, is the reference it must match as JSON.
func TestAPNsPayloadMatchesTheApns2Builder(t *testing.T) {
	reference := func(t notify.Task) []byte {
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
		raw, err := json.Marshal(pl)
		if err != nil {
			panic(err)
		}
		return raw
	}
	full := sampleTask(notify.Push)
	for _, tc := range []struct {
		name string
		edit func(*notify.Task)
	}{
		{"title, body, link, metadata", func(*notify.Task) {}},
		{"text when there is no body", func(t *notify.Task) { t.Content.Body = "" }},
		{"no title, no link, no metadata", func(t *notify.Task) { t.Content.Title, t.Content.Link, t.Metadata = "", "", nil }},
		{"nothing to show", func(t *notify.Task) { t.Content = notify.Content{}; t.Metadata = nil }},
		{"metadata named like our keys", func(t *notify.Task) {
			t.Metadata = map[string]string{"aps": "x", "link": "https://meta", "notification_id": "meta", "z": "1", "a": "2"}
		}},
		{"metadata link kept without a content link", func(t *notify.Task) {
			t.Content.Link = ""
			t.Metadata = map[string]string{"link": "https://meta"}
		}},
		{"characters JSON escapes", func(t *notify.Task) {
			t.Content.Title, t.Content.Body = `"Quoted" <b>&</b>`, "line 1\nline 2\t\u0001 ✓ \u2028 é"
			t.Metadata = map[string]string{`k"ey`: "v\\al", "emoji": "🚀"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			task := full
			task.Metadata = maps.Clone(full.Metadata)
			tc.edit(&task)
			got, want := apnsPayload(task), reference(task)
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("invalid JSON %s: %v", got, err)
			}
			_ = json.Unmarshal(want, &w)
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("payload\n got %s\nwant %s", got, want)
			}
		})
	}
}

func TestFCMMessage(t *testing.T) {
	task := sampleTask(notify.Push)
	now := time.Now()
	m := fcmMessage(task, "tok", "android", now, false)
	if m.Token != "tok" || m.Notification.Title != "Hi" || m.Android == nil || m.Android.Priority != "high" || m.Android.TTL == nil {
		t.Fatalf("android: %+v", m)
	}
	if _, bad := m.Data["from"]; bad || m.Data["order"] != "1" || m.Data["link"] == "" || m.Data["notification_id"] != "n1" {
		t.Fatalf("data: %v", m.Data)
	}
	w := fcmMessage(task, "tok", "web", now, false)
	if w.Webpush == nil || w.Webpush.FCMOptions.Link != task.Content.Link || w.Android != nil {
		t.Fatalf("web: %+v", w)
	}
}

// personalTask is a push task whose every personal field holds a distinctive string, so a
// payload that carries any of them is caught by a byte search.
func personalTask() (notify.Task, []string) {
	task := notify.Task{NotificationID: "3f0c2d1e-8b7a-4c5d-9e6f-112233445566", AppID: "app-secret-app", Tier: notify.Transactional,
		Category: "cat-secret-category", UserID: "user-secret-ada", Channel: notify.Push,
		Content: notify.Content{Title: "Title-secret", Body: "Body-secret", Link: "https://link-secret.example/o/1",
			Subject: "Subject-secret", Text: "Text-secret", HTML: "<p>HTML-secret</p>"},
		Target:   notify.Target{Devices: []notify.Device{{DeviceID: "device-secret-id", Platform: "android", Token: "tok"}}},
		Metadata: map[string]string{"meta-secret-key": "meta-secret-value", "link": "https://meta-link-secret"}, ExpiresAt: time.Now().Add(time.Hour)}
	return task, []string{"secret", "ada", "Title", "Body"}
}

func TestAPNsMinimalPushCarriesOnlyTheNotificationIDAndWakesTheExtension(t *testing.T) {
	task, personal := personalTask()
	for _, tier := range []string{notify.Transactional, notify.Marketing} {
		task.Tier = tier
		n := apnsNotification(task, "abcd", "com.herald.demo", true)
		raw, err := n.MarshalJSON() // the bytes apns2 sends
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range personal {
			if strings.Contains(string(raw), s) {
				t.Fatalf("%s: minimal payload holds %q: %s", tier, s, raw)
			}
		}
		for _, h := range []string{n.CollapseID, n.ApnsID} {
			if h != "" {
				t.Fatalf("%s: header set from the task: %q", tier, h)
			}
		}
		var p struct {
			Aps struct {
				Alert          map[string]any `json:"alert"`
				MutableContent int            `json:"mutable-content"`
				Sound          string         `json:"sound"`
			} `json:"aps"`
			NotificationID string `json:"notification_id"`
		}
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.DisallowUnknownFields() // nothing but aps and notification_id
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("%s: payload %s: %v", tier, raw, err)
		}
		if p.Aps.MutableContent != 1 || p.NotificationID != task.NotificationID || len(p.Aps.Alert) != 1 || p.Aps.Alert["loc-key"] != MinimalAlertLocKey {
			t.Fatalf("%s: payload %s", tier, raw)
		}
		if n.PushType != apns2.PushTypeAlert || n.Expiration.IsZero() {
			t.Fatalf("%s: notification %+v", tier, n)
		}
	}
	// The full push of the same task carries the content: the search above can fail.
	raw, _ := apnsNotification(task, "abcd", "t", false).MarshalJSON()
	if !strings.Contains(string(raw), "Title-secret") || !strings.Contains(string(raw), "Body-secret") {
		t.Fatalf("full payload lacks the content: %s", raw)
	}
}

func TestFCMMinimalPushIsADataMessageWithOnlyTheNotificationID(t *testing.T) {
	task, personal := personalTask()
	now := time.Now()
	for _, platform := range []string{"android", "web"} {
		m := fcmMessage(task, "tok", platform, now, true)
		raw, err := json.Marshal(m) // the message as the Admin SDK sends it
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range personal {
			if strings.Contains(string(raw), s) {
				t.Fatalf("%s: minimal message holds %q: %s", platform, s, raw)
			}
		}
		if m.Notification != nil || len(m.Data) != 1 || m.Data["notification_id"] != task.NotificationID {
			t.Fatalf("%s: not a data-only message with the id alone: %s", platform, raw)
		}
		if m.Android != nil && (m.Android.CollapseKey != "" || m.Android.Notification != nil || m.Android.FCMOptions != nil || m.Android.TTL == nil) {
			t.Fatalf("%s: android block %+v", platform, m.Android)
		}
		if m.Webpush != nil && (m.Webpush.FCMOptions != nil || m.Webpush.Notification != nil || m.Webpush.Data != nil) {
			t.Fatalf("%s: webpush block %+v", platform, m.Webpush)
		}
		if m.FCMOptions != nil || m.APNS != nil {
			t.Fatalf("%s: options %s", platform, raw)
		}
	}
	raw, _ := json.Marshal(fcmMessage(task, "tok", "android", now, false))
	if !strings.Contains(string(raw), "Title-secret") || !strings.Contains(string(raw), "Body-secret") {
		t.Fatalf("full message lacks the content: %s", raw)
	}
}

func TestBuildMailTextAndHTMLAlternative(t *testing.T) {
	task := sampleTask(notify.Email)
	raw, err := buildMail(task, "Herald <noreply@herald.local>", "ada@example.com", "<x@herald.local>", "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	msg, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("Subject") != "Order" || msg.Header.Get("Message-ID") != "<x@herald.local>" || msg.Header.Get("Date") == "" {
		t.Fatalf("headers: %v", msg.Header)
	}
	body, _ := io.ReadAll(msg.Body)
	if !strings.Contains(string(body), "Shipped =E2=9C=93") {
		t.Fatalf("text body: %s", body)
	}
	task.Content.HTML = "<p>Shipped</p>"
	task.Content.Subject = "Commande expédiée"
	raw, _ = buildMail(task, "noreply@herald.local", "ada@example.com", "<y@herald.local>", "", time.Now())
	msg, _ = mail.ReadMessage(strings.NewReader(string(raw)))
	dec := new(mime.WordDecoder)
	if s, _ := dec.DecodeHeader(msg.Header.Get("Subject")); s != "Commande expédiée" {
		t.Fatalf("subject %q", s)
	}
	mt, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if mt != "multipart/alternative" {
		t.Fatalf("content type %s", mt)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var types []string
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		types = append(types, p.Header.Get("Content-Type"))
	}
	if len(types) != 2 || !strings.HasPrefix(types[0], "text/plain") || !strings.HasPrefix(types[1], "text/html") {
		t.Fatalf("parts %v", types)
	}
}

func TestSMSForm(t *testing.T) {
	f := smsForm(sampleTask(notify.SMS), "+15005550006", "+447700900123")
	if f.Get("To") != "+447700900123" || f.Get("From") != "+15005550006" || f.Get("Body") != "Your order shipped https://example.com/o/1" {
		t.Fatalf("form %v", f)
	}
}

func TestConfigValidateNamesKeys(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for key, mutate := range map[string]func(*Config){
		"tiers.transactional.push.concurrency": func(c *Config) { c.Tiers.Transactional.Push.Concurrency = 0 },
		"tiers.social.email.concurrency":       func(c *Config) { c.Tiers.Social.Email.Concurrency = 4097 },
		"tiers.marketing.sms.concurrency":      func(c *Config) { c.Tiers.Marketing.SMS.Concurrency = -1 },
		"push.apns.rate_limit.reserve": func(c *Config) {
			c.Push.APNs.RateLimit = RateLimitConfig{PerSecond: 10, Burst: 4, Reserve: 4}
		},
		"push.apns.team_id": func(c *Config) { c.Push.APNs = APNsConfig{Endpoint: "https://x", KeyID: "k", KeyFile: "f", Topic: "t"} },
		"push.apns.secondary.endpoint": func(c *Config) {
			c.Push.APNs = APNsConfig{Endpoint: "https://x", TeamID: "t", KeyID: "k", KeyFile: "f", Topic: "t", Secondary: &APNsConfig{}}
		},
		"push.fcm.endpoint":     func(c *Config) { c.Push.FCM.Endpoint = "ftp://x" },
		"email.smtp.addr":       func(c *Config) { c.Email.SMTP.Addr = "nohost" },
		"email.smtp.from":       func(c *Config) { c.Email.SMTP.Addr = "127.0.0.1:25" },
		"sms.twilio.auth_token": func(c *Config) { c.SMS.Twilio = TwilioConfig{BaseURL: "http://x", AccountSID: "AC1", From: "+1"} },
		"email.smtp.name":       func(c *Config) { c.Email.SMTP.Name = strings.Repeat("p", 65) },
		"push.apns.name":        func(c *Config) { c.Push.APNs.Name = "apns primary" },
		"push.fcm.secondary.name": func(c *Config) {
			c.Push.FCM.Secondary = &FCMConfig{Name: "fcm/2"}
		},
		"sms.twilio.name":              func(c *Config) { c.SMS.Twilio.Name = "tw\x00" },
		"breaker.consecutive_failures": func(c *Config) { c.Breaker.ConsecutiveFailures = 0 },
		"retry.delays":                 func(c *Config) { c.Retry.Delays = nil },
		"retry.max_attempts":           func(c *Config) { c.Retry.MaxAttempts = 0 },
	} {
		c := DefaultConfig()
		mutate(&c)
		var ke *config.KeyError
		if err := c.Validate(); !errors.As(err, &ke) || ke.Key != key {
			t.Errorf("%s: got %v", key, err)
		}
	}
}

// Fakes of the dispatcher's interfaces.

type fakeProvider struct {
	name string
	mu   sync.Mutex
	errs []error // answered in turn; nil once exhausted
	sent []string
}

func (f *fakeProvider) Name() string { return f.name }
func (f *fakeProvider) Send(_ context.Context, _ notify.Task, to string) (Receipt, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, to)
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		if err != nil {
			return Receipt{}, err
		}
	}
	return Receipt{MessageID: f.name + "-" + to, Status: "200"}, nil
}

type fakeLog struct {
	mu       sync.Mutex
	states   []deliverylog.State
	attempts []deliverylog.Attempt
}

func (l *fakeLog) Write(_ context.Context, s []deliverylog.State, a []deliverylog.Attempt) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.states, l.attempts = append(l.states, s...), append(l.attempts, a...)
	return nil
}

type fakeDevices struct{ gone []string }

func (d *fakeDevices) Deactivate(_ context.Context, _, platform, token string) error {
	d.gone = append(d.gone, platform+":"+token)
	return nil
}

type fakeProducer struct {
	mu     sync.Mutex
	msgs   []kafka.Message
	events []notify.EventBatch
}

func (p *fakeProducer) Send(_ context.Context, m ...kafka.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, msg := range m {
		if strings.HasSuffix(msg.Topic, ".events") { // delivery events, checked on their own
			var b notify.EventBatch
			if err := json.Unmarshal(msg.Value, &b); err != nil {
				return err
			}
			p.events = append(p.events, b)
			continue
		}
		p.msgs = append(p.msgs, msg)
	}
	return nil
}

type fixture struct {
	d    *Dispatcher
	log  *fakeLog
	devs *fakeDevices
	prod *fakeProducer
}

func newFixture(cfg Config, provs map[string][2]Provider) *fixture {
	f := &fixture{log: &fakeLog{}, devs: &fakeDevices{}, prod: &fakeProducer{}}
	f.d = newDispatcher(cfg, "zz-test-1", Deps{Deliveries: f.log, Devices: f.devs, Producer: f.prod, Logger: slog.New(slog.DiscardHandler)}, provs)
	f.d.rnd = func() float64 { return 0 }
	return f
}

func (f *fixture) lastState() string {
	if len(f.log.states) == 0 {
		return ""
	}
	return f.log.states[len(f.log.states)-1].State
}

func TestProcessPushPerDeviceOutcomes(t *testing.T) {
	apns := &fakeProvider{name: "apns", errs: []error{nil, classifyAPNs(410, "Unregistered", 0)}}
	fcm := &fakeProvider{name: "fcm", errs: []error{classifyFCM(503, "UNAVAILABLE", 20*time.Second)}}
	f := newFixture(DefaultConfig(), map[string][2]Provider{KindAPNs: {apns, nil}, KindFCM: {fcm, nil}})
	task := sampleTask(notify.Push)
	task.Target.Devices = []notify.Device{{DeviceID: "d1", Platform: "ios", Token: "aa"}, {DeviceID: "d2", Platform: "ios", Token: "bb"}, {DeviceID: "d3", Platform: "android", Token: "cc"}}
	if err := f.d.process(context.Background(), task, nil); err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]string{}
	for _, a := range f.log.attempts {
		outcomes[a.Provider+":"+a.ProviderMessageID+":"+a.Outcome] = a.ProviderStatus
	}
	if len(f.log.attempts) != 3 || f.lastState() != notify.StateDelivered {
		t.Fatalf("attempts %+v states %+v", f.log.attempts, f.log.states)
	}
	if len(f.devs.gone) != 1 || f.devs.gone[0] != "ios:bb" {
		t.Fatalf("deactivated %v", f.devs.gone)
	}
	if len(f.prod.msgs) != 1 || f.prod.msgs[0].Topic != "zz-test-1.dispatch.transactional.push.retry.1" {
		t.Fatalf("handoff %+v", f.prod.msgs)
	}
	var r Retry
	_ = json.Unmarshal(f.prod.msgs[0].Value, &r)
	if len(r.Task.Target.Devices) != 1 || r.Task.Target.Devices[0].Token != "cc" || r.Task.Attempt != 1 || !r.Delivered {
		t.Fatalf("retry %+v", r)
	}
	if wait := time.Until(r.NotBefore); wait < 19*time.Second { // Retry-After 20s beats the 5s delay
		t.Fatalf("not before in %v", wait)
	}
	// The retry delivers: state stays delivered, nothing more handed on.
	if err := f.d.process(context.Background(), r.Task, &r); err != nil {
		t.Fatal(err)
	}
	if len(f.prod.msgs) != 1 || f.lastState() != notify.StateDelivered || fcm.sent[1] != "cc" {
		t.Fatalf("after retry: %+v %+v", f.prod.msgs, f.log.states)
	}
}

func TestProcessDeadLettersAfterMaxAttempts(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Retry.MaxAttempts = 2
	sms := &fakeProvider{name: "twilio", errs: []error{classifyTwilio(500, 20500, 0), classifyTwilio(500, 20500, 0)}}
	f := newFixture(cfg, map[string][2]Provider{KindSMS: {sms, nil}})
	task := sampleTask(notify.SMS)
	task.Target.Phone = "+447700900123"
	_ = f.d.process(context.Background(), task, nil)
	var r Retry
	_ = json.Unmarshal(f.prod.msgs[0].Value, &r)
	_ = f.d.process(context.Background(), r.Task, &r)
	if len(f.prod.msgs) != 2 || f.prod.msgs[1].Topic != "zz-test-1.dispatch.sms.dlq" || f.lastState() != notify.StateDeadLettered {
		t.Fatalf("msgs %+v states %+v", f.prod.msgs, f.log.states)
	}
	if a := f.log.attempts; a[0].Outcome != "retrying" || a[1].Outcome != notify.StateDeadLettered {
		t.Fatalf("attempts %+v", a)
	}
	// Each attempt's record goes with its hand-off: dispatched twice (one event key), then
	// dead-lettered, with the number's country.
	var stages []string
	for _, b := range f.prod.events {
		for _, o := range b.Outcomes {
			stages = append(stages, o.Stage+"/"+o.Reason+"/"+o.Country)
		}
	}
	if want := []string{"dispatched//GB", "dispatched//GB", "dead_lettered/transient/GB"}; !slices.Equal(stages, want) {
		t.Fatalf("events %v, want %v", stages, want)
	}
}

func TestProcessPermanentAndExpired(t *testing.T) {
	smtp := &fakeProvider{name: "smtp", errs: []error{classifySMTPReply(550, "5.1.1", nil)}}
	f := newFixture(DefaultConfig(), map[string][2]Provider{KindSMTP: {smtp, nil}})
	task := sampleTask(notify.Email)
	task.Target.Email = "gone@example.com"
	_ = f.d.process(context.Background(), task, nil)
	if f.lastState() != notify.StateFailed || len(f.prod.msgs) != 0 || f.log.attempts[0].ProviderStatus != "550 5.1.1" {
		t.Fatalf("states %+v attempts %+v", f.log.states, f.log.attempts)
	}
	task.ExpiresAt = time.Now().Add(-time.Second)
	_ = f.d.process(context.Background(), task, nil)
	if s := f.log.states[len(f.log.states)-1]; s.State != notify.StateSuppressed || s.Reason != notify.ReasonExpired || len(smtp.sent) != 1 {
		t.Fatalf("expired: %+v", s)
	}
	// The failure's class is the failed stage's reason; the expiry is its own stage.
	var stages []string
	for _, b := range f.prod.events {
		for _, o := range b.Outcomes {
			stages = append(stages, o.Stage+"/"+o.Reason)
		}
	}
	if want := []string{"dispatched/", "failed/permanent", "expired/"}; !slices.Equal(stages, want) {
		t.Fatalf("events %v, want %v", stages, want)
	}
}

func TestBreakerOpensAndFailsOverToSecondary(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Breaker.ConsecutiveFailures = 2
	cfg.Breaker.OpenFor = 200 * time.Millisecond
	down := errors.New("connection refused")
	primary := &fakeProvider{name: "smtp", errs: []error{down, down, nil}}
	secondary := &fakeProvider{name: "smtp-secondary"}
	f := newFixture(cfg, map[string][2]Provider{KindSMTP: {primary, secondary}})
	task := sampleTask(notify.Email)
	task.Target.Email = "ada@example.com"
	for range 2 {
		_ = f.d.process(context.Background(), task, nil)
	}
	// Open now: the next send goes to the secondary, the primary is not called.
	_ = f.d.process(context.Background(), task, nil)
	if len(primary.sent) != 2 || len(secondary.sent) != 1 {
		t.Fatalf("primary %d secondary %d", len(primary.sent), len(secondary.sent))
	}
	if a := f.log.attempts[2]; a.Provider != "smtp-secondary" || a.Outcome != notify.StateDelivered {
		t.Fatalf("attempt %+v", a)
	}
	// Half-open after open_for: a probe reaches the primary again and closes it.
	time.Sleep(250 * time.Millisecond)
	_ = f.d.process(context.Background(), task, nil)
	if len(primary.sent) != 3 || f.d.routes[KindSMTP].primary.cb.State().String() != "closed" {
		t.Fatalf("primary %d state %v", len(primary.sent), f.d.routes[KindSMTP].primary.cb.State())
	}
}

func TestBreakerOpenWithoutSecondaryHandsToRetry(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Breaker.ConsecutiveFailures = 1
	cfg.Breaker.OpenFor = time.Minute
	p := &fakeProvider{name: "twilio", errs: []error{errors.New("timeout")}}
	f := newFixture(cfg, map[string][2]Provider{KindSMS: {p, nil}})
	task := sampleTask(notify.SMS)
	task.Target.Phone = "+447700900123"
	_ = f.d.process(context.Background(), task, nil)
	_ = f.d.process(context.Background(), task, nil)
	if len(p.sent) != 1 || len(f.prod.msgs) != 2 || !strings.Contains(f.log.attempts[1].Error, "breaker") {
		t.Fatalf("sent %d handed on %d attempts %+v", len(p.sent), len(f.prod.msgs), f.log.attempts)
	}
}

func TestPermanentFailuresDoNotTripTheBreaker(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Breaker.ConsecutiveFailures = 2
	gone := classifyAPNs(410, "Unregistered", 0)
	p := &fakeProvider{name: "apns", errs: []error{gone, gone, gone}}
	f := newFixture(cfg, map[string][2]Provider{KindAPNs: {p, nil}})
	task := sampleTask(notify.Push)
	task.Target.Devices = []notify.Device{{DeviceID: "d", Platform: "ios", Token: "aa"}}
	for range 3 {
		_ = f.d.process(context.Background(), task, nil)
	}
	if len(p.sent) != 3 || f.d.routes[KindAPNs].primary.cb.State().String() != "closed" {
		t.Fatalf("sent %d state %v", len(p.sent), f.d.routes[KindAPNs].primary.cb.State())
	}
}

func TestTopicsGiveEachTierItsOwnRetryLevelsAndEachChannelOneDeadLetterTopic(t *testing.T) {
	ts := Topics("eu-west-1", 3, 1)
	n := len(notify.Tiers) * RetryLevels
	if len(ts) != len(Channels)*(n+1) || ts[0].Name != "eu-west-1.dispatch.transactional.push.retry.1" ||
		ts[RetryLevels].Name != "eu-west-1.dispatch.social.push.retry.1" || ts[n-1].Name != "eu-west-1.dispatch.marketing.push.retry.3" ||
		ts[n].Name != "eu-west-1.dispatch.push.dlq" || ts[0].Partitions != 3 || ts[n].Partitions != 1 {
		t.Fatalf("%+v", ts)
	}
	seen := map[string]bool{}
	for _, tp := range ts {
		if seen[tp.Name] {
			t.Fatalf("topic %s listed twice", tp.Name)
		}
		seen[tp.Name] = true
	}
}

func TestDispatchTopicsAreNamedByTierAndChannel(t *testing.T) {
	for _, c := range []struct{ tier, channel, want string }{
		{notify.Transactional, notify.Push, "eu-west-1.dispatch.transactional.push"},
		{notify.Social, notify.Email, "eu-west-1.dispatch.social.email"},
		{notify.Marketing, notify.SMS, "eu-west-1.dispatch.marketing.sms"},
		// A task that does not say its tier, or names one Herald does not know, gets no priority.
		{"", notify.Push, "eu-west-1.dispatch.marketing.push"},
		{"urgent", notify.Push, "eu-west-1.dispatch.marketing.push"},
	} {
		if got := notify.DispatchTopic("eu-west-1", c.tier, c.channel); got != c.want {
			t.Errorf("DispatchTopic(%q, %q) = %s, want %s", c.tier, c.channel, got, c.want)
		}
	}
	if got := RetryTopic("eu-west-1", notify.Transactional, notify.Email, 2); got != "eu-west-1.dispatch.transactional.email.retry.2" {
		t.Errorf("RetryTopic = %s", got)
	}
	if got := LegacyRetryTopic("eu-west-1", notify.Email, 2); got != "eu-west-1.dispatch.email.retry.2" {
		t.Errorf("LegacyRetryTopic = %s", got)
	}
}

func TestConsumerGroupsAreNamedAsTheirTopicsAndCoverEveryTierChannelAndLevel(t *testing.T) {
	gs := ConsumerGroups("eu-west-1", 2)
	want := len(Channels)*len(notify.Tiers)*(1+2) + len(Channels)*(1+RetryLevels)
	if len(gs) != want {
		t.Fatalf("%d groups, want %d: %+v", len(gs), want, gs)
	}
	names := map[string]ConsumerGroup{}
	for _, g := range gs {
		if g.Group != g.Topic {
			t.Errorf("group %s consumes %s: groups are named as their topics", g.Group, g.Topic)
		}
		if _, dup := names[g.Group]; dup {
			t.Errorf("group %s listed twice", g.Group)
		}
		names[g.Group] = g
	}
	for name, want := range map[string]ConsumerGroup{
		"eu-west-1.dispatch.transactional.push":      {Tier: notify.Transactional, Channel: notify.Push},
		"eu-west-1.dispatch.marketing.email.retry.2": {Tier: notify.Marketing, Channel: notify.Email, Level: 2},
		"eu-west-1.dispatch.sms":                     {Channel: notify.SMS, Legacy: true},
		"eu-west-1.dispatch.push.retry.3":            {Channel: notify.Push, Level: 3, Legacy: true},
	} {
		g, ok := names[name]
		if !ok || g.Tier != want.Tier || g.Channel != want.Channel || g.Level != want.Level || g.Legacy != want.Legacy {
			t.Errorf("group %s: %+v (listed %v), want %+v", name, g, ok, want)
		}
	}
	if _, ok := names["eu-west-1.dispatch.social.push.retry.3"]; ok {
		t.Error("a retry level beyond retry.delays is listed")
	}
}

func TestReplayResetsAttempts(t *testing.T) {
	p := &fakeProducer{}
	task := sampleTask(notify.Email)
	task.Attempt = 6
	if err := Replay(context.Background(), p, nil, "eu-west-1", Retry{Task: task}); err != nil {
		t.Fatal(err)
	}
	var got notify.Task
	_ = json.Unmarshal(p.msgs[0].Value, &got)
	if p.msgs[0].Topic != "eu-west-1.dispatch.transactional.email" || got.Attempt != 0 || p.msgs[0].Key != "ada" {
		t.Fatalf("%+v %+v", p.msgs[0], got)
	}
}

// commitSession records what was marked and, at each commit, the offsets marked so far.
type commitSession struct {
	sarama.ConsumerGroupSession // only the methods below are called
	mu                          sync.Mutex
	marked                      []int64
	commits                     [][]int64
}

func (s *commitSession) MarkMessage(m *sarama.ConsumerMessage, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.marked = append(s.marked, m.Offset)
}

func (s *commitSession) Commit() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commits = append(s.commits, slices.Clone(s.marked))
}

func (s *commitSession) lastCommit() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.commits) == 0 {
		return nil
	}
	return s.commits[len(s.commits)-1]
}

// Offsets are marked in order and never past a record that did not finish; what was marked is
// committed soon after a burst's last record, not only when the next record or the session's
// end comes.
func TestMarkInOrderCommitsAfterTheLastRecordAndNeverPastAFailure(t *testing.T) {
	for _, tc := range []struct {
		name       string
		errs       []error // each record's outcome, finishing in reverse order
		wantMarked []int64
	}{
		{"all finish", []error{nil, nil, nil}, []int64{0, 1, 2}},
		{"the second does not finish", []error{nil, context.Canceled, nil}, []int64{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sess := &commitSession{}
			window := make(chan *pending, len(tc.errs))
			var failed atomic.Bool
			done := make(chan struct{})
			go func() {
				defer close(done)
				(&consumer{}).markInOrder(sess, window, &failed)
			}()
			var ps []*pending
			for i := range tc.errs {
				p := &pending{m: &sarama.ConsumerMessage{Offset: int64(i)}, done: make(chan error, 1)}
				ps = append(ps, p)
				window <- p
			}
			for i := len(ps) - 1; i >= 0; i-- { // the newest finishes first: marking must wait
				ps[i].done <- tc.errs[i]
			}
			// The window stays open: the commit must come from the marker alone.
			deadline := time.Now().Add(5 * commitEvery)
			for !slices.Equal(sess.lastCommit(), tc.wantMarked) {
				if time.Now().After(deadline) {
					t.Fatalf("committed %v within %v of the last record, want %v", sess.lastCommit(), 5*commitEvery, tc.wantMarked)
				}
				time.Sleep(10 * time.Millisecond)
			}
			close(window)
			<-done
			if !slices.Equal(sess.marked, tc.wantMarked) || failed.Load() != slices.Contains(tc.errs, context.Canceled) {
				t.Fatalf("marked %v failed=%v, want %v", sess.marked, failed.Load(), tc.wantMarked)
			}
		})
	}
}

// contentStore is a push content store that fails while down.
type contentStore struct {
	down bool
	put  []string
}

func (s *contentStore) Put(_ context.Context, t notify.Task) error {
	if s.down {
		return errors.New("no hosts available in the pool")
	}
	s.put = append(s.put, t.NotificationID+":"+t.UserID)
	return nil
}

// A content-free push goes out only once its content is stored: the app fetches it by the id
// the push carries. A store that fails makes the push a transient failure, retried, never a
// push with nothing to fetch; a full push stores nothing.
func TestMinimalPushIsSentOnlyAfterItsContentIsStored(t *testing.T) {
	for _, tc := range []struct {
		name      string
		minimal   bool
		inboxItem bool
		down      bool
		wantSent  int
		wantPut   int
		wantRetry bool
	}{
		{"minimal, store up", true, false, false, 1, 1, false},
		{"minimal, store down", true, false, true, 0, 0, true},
		{"minimal, fetched from the inbox item", true, true, true, 1, 0, false},
		{"full, store down", false, false, true, 1, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			apns := &fakeProvider{name: "apns"}
			store := &contentStore{down: tc.down}
			f := &fixture{log: &fakeLog{}, devs: &fakeDevices{}, prod: &fakeProducer{}}
			f.d = newDispatcher(DefaultConfig(), "zz-test-1", Deps{Deliveries: f.log, Devices: f.devs, Producer: f.prod, Logger: slog.New(slog.DiscardHandler),
				MinimalPush: func() bool { return tc.minimal }, PushContent: store}, map[string][2]Provider{KindAPNs: {apns, nil}})
			task := sampleTask(notify.Push)
			task.Target.Devices = []notify.Device{{DeviceID: "d1", Platform: "ios", Token: "aa"}}
			task.InboxItem = tc.inboxItem
			if err := f.d.process(context.Background(), task, nil); err != nil {
				t.Fatal(err)
			}
			if len(apns.sent) != tc.wantSent || len(store.put) != tc.wantPut {
				t.Fatalf("sent %v, stored %v", apns.sent, store.put)
			}
			retried := len(f.prod.msgs) == 1 && f.prod.msgs[0].Topic == "zz-test-1.dispatch.transactional.push.retry.1"
			if retried != tc.wantRetry {
				t.Fatalf("handed on %+v, want a retry: %v", f.prod.msgs, tc.wantRetry)
			}
		})
	}
}

// Bulk email (marketing, social) carries one-click unsubscribe (RFC 8058): List-Unsubscribe
// with the HTTPS link (and the mailbox when configured) and List-Unsubscribe-Post.
// Transactional mail carries neither; a bulk email without a link is counted.
func TestBulkEmailCarriesOneClickUnsubscribeAndTransactionalNone(t *testing.T) {
	link := "https://eu.herald.example/v1/unsubscribe/eu-west-1.c2VhbGVk"
	for _, tc := range []struct {
		name, tier, mailto, link string
		want                     []string // List-Unsubscribe values, "" for none
	}{
		{"marketing", notify.Marketing, "", link, []string{"<" + link + ">"}},
		{"social with a mailbox", notify.Social, "unsub@herald.example", link,
			[]string{"<" + link + ">", "<mailto:unsub@herald.example?subject=unsubscribe%20eu-west-1.c2VhbGVk>"}},
		{"transactional", notify.Transactional, "unsub@herald.example", link, nil},
		{"marketing without a link", notify.Marketing, "", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := newSMTP(SMTPConfig{Addr: "127.0.0.1:1", From: "noreply@herald.example", UnsubscribeMailto: tc.mailto}, "smtp", "zz-test-1",
				func(notify.Task) string { return tc.link })
			if err != nil {
				t.Fatal(err)
			}
			task := sampleTask(notify.Email)
			task.Tier = tc.tier
			before := testutil.ToFloat64(emailWithoutUnsubscribe.WithLabelValues("zz-test-1"))
			raw, err := buildMail(task, "noreply@herald.example", "ada@example.com", "<z@herald.example>", p.listUnsubscribe(task), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			m, err := mail.ReadMessage(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			got := m.Header.Get("List-Unsubscribe")
			if tc.want == nil {
				if got != "" || m.Header.Get("List-Unsubscribe-Post") != "" {
					t.Fatalf("List-Unsubscribe %q on %s mail", got, tc.tier)
				}
			} else {
				var parts []string
				for _, v := range strings.Split(got, ",") {
					parts = append(parts, strings.TrimSpace(v))
				}
				if !slices.Equal(parts, tc.want) || m.Header.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" {
					t.Fatalf("List-Unsubscribe %q, Post %q; want %q", got, m.Header.Get("List-Unsubscribe-Post"), tc.want)
				}
			}
			missing := testutil.ToFloat64(emailWithoutUnsubscribe.WithLabelValues("zz-test-1")) - before
			if wantMissing := tc.tier != notify.Transactional && tc.link == ""; (missing == 1) != wantMissing {
				t.Fatalf("counted %v emails without unsubscribe", missing)
			}
		})
	}
	if _, err := newSMTP(SMTPConfig{Addr: "127.0.0.1:1", From: "noreply@herald.example", UnsubscribeMailto: "Unsub <u@x.example>"}, "smtp", "zz", nil); err == nil {
		t.Fatal("a display name in unsubscribe_mailto was accepted")
	}
}
