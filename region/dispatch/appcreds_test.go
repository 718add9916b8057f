package dispatch

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/credentials"
	"github.com/herald-notify/herald/region/notify"
)

// fakeCredentials is a CredentialLoader over a map, counting its reads, failing while err is set.
type fakeCredentials struct {
	mu    sync.Mutex
	creds map[string]credentials.Loaded // app/kind
	reads int
	err   error
}

func (f *fakeCredentials) Load(_ context.Context, app, jurisdiction, kind string) (credentials.Loaded, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.err != nil {
		return credentials.Loaded{}, f.err
	}
	if jurisdiction != "EU" {
		return credentials.Loaded{}, fmt.Errorf("asked for jurisdiction %q", jurisdiction)
	}
	l, ok := f.creds[app+"/"+kind]
	if !ok {
		return credentials.Loaded{}, credentials.ErrNotFound
	}
	return l, nil
}

func (f *fakeCredentials) set(app string, version int64, sid, token string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creds[app+"/"+wire.CredentialTwilio] = credentials.Loaded{Version: version, Credential: wire.Credential{Kind: wire.CredentialTwilio,
		Twilio: &wire.TwilioCredential{AccountSID: sid, AuthToken: token, From: "+15005550007"}}}
}

// accountStub answers Twilio's Messages API and keeps, per request, the account of its path
// and of its basic auth, and the From number.
func accountStub(t *testing.T) (*httptest.Server, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		_ = r.ParseForm()
		path := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/2010-04-01/Accounts/"), "/Messages.json")
		mu.Lock()
		got = append(got, path+" "+user+":"+pass+" "+r.PostForm.Get("From"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"sid": "SM1", "status": "queued"}`))
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), got...) }
}

type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *stepClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const (
	sidA, tokA = "AC0000000000000000000000000000000a", "0000000000000000000000000000000a"
	sidB, tokB = "AC0000000000000000000000000000000b", "0000000000000000000000000000000b"
)

func appFixture(t *testing.T, cfg Config, loader CredentialLoader) (*fixture, func() []string, *stepClock) {
	t.Helper()
	srv, got := accountStub(t)
	cfg.SMS.Twilio = TwilioConfig{BaseURL: srv.URL, AccountSID: "AC00000000000000000000000000000000", AuthToken: "region-token", From: "+15005550006"}
	f := &fixture{log: &fakeLog{}, devs: &fakeDevices{}, prod: &fakeProducer{}}
	f.d = newDispatcher(cfg, "zz-test-1", Deps{Deliveries: f.log, Devices: f.devs, Producer: f.prod, Logger: slog.New(slog.DiscardHandler),
		Credentials: loader, Jurisdiction: "EU"}, map[string][2]Provider{KindSMS: {newTwilio(cfg.SMS.Twilio, "twilio", nil), nil}})
	clk := &stepClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	f.d.now, f.d.rnd = clk.now, func() float64 { return 0 }
	return f, got, clk
}

func textOf(app string) notify.Task {
	t := sampleTask(notify.SMS)
	t.AppID, t.Target.Phone = app, "+447700900123"
	t.NotificationID = app + "-" + fmt.Sprint(time.Now().UnixNano())
	return t
}

func TestEachAppsTextsGoThroughItsOwnAccountAndNeverAnothers(t *testing.T) {
	loader := &fakeCredentials{creds: map[string]credentials.Loaded{}}
	loader.set("app-a", 1, sidA, tokA)
	loader.set("app-b", 2, sidB, tokB)
	f, got, _ := appFixture(t, DefaultConfig(), loader)
	for _, app := range []string{"app-a", "app-b", "app-c", "app-a", "APP-A", "app-a\x00"} {
		if err := f.d.process(context.Background(), textOf(app), nil); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		sidA + " " + sidA + ":" + tokA + " +15005550007",
		sidB + " " + sidB + ":" + tokB + " +15005550007",
		"AC00000000000000000000000000000000 AC00000000000000000000000000000000:region-token +15005550006", // app-c stored none: the region's account
		sidA + " " + sidA + ":" + tokA + " +15005550007",
		"AC00000000000000000000000000000000 AC00000000000000000000000000000000:region-token +15005550006", // another app id, not a case variant of app-a
		"AC00000000000000000000000000000000 AC00000000000000000000000000000000:region-token +15005550006",
	}
	if g := got(); strings.Join(g, "\n") != strings.Join(want, "\n") {
		t.Fatalf("sent as\n%s\nwant\n%s", strings.Join(g, "\n"), strings.Join(want, "\n"))
	}
	providers := []string{}
	for _, a := range f.log.attempts {
		providers = append(providers, a.Provider)
	}
	if strings.Join(providers, ",") != "app-twilio,app-twilio,twilio,app-twilio,twilio,twilio" {
		t.Fatalf("attempts' providers %v", providers)
	}
	if loader.reads != 5 { // app-a once (cached), app-b, app-c, APP-A, app-a\x00
		t.Fatalf("%d reads of the store, want 5", loader.reads)
	}
}

func TestARotatedCredentialIsUsedFromTheNextRefreshAndADeletedOneFallsBackToTheRegion(t *testing.T) {
	loader := &fakeCredentials{creds: map[string]credentials.Loaded{}}
	loader.set("app-a", 1, sidA, tokA)
	cfg := DefaultConfig()
	f, got, clk := appFixture(t, cfg, loader)
	send := func() string {
		t.Helper()
		if err := f.d.process(context.Background(), textOf("app-a"), nil); err != nil {
			t.Fatal(err)
		}
		g := got()
		return strings.Fields(g[len(g)-1])[0]
	}
	if s := send(); s != sidA {
		t.Fatalf("sent as %s", s)
	}
	loader.set("app-a", 7, sidB, tokB) // rotated to another account
	clk.add(cfg.AppCredentials.Refresh - time.Millisecond)
	if s := send(); s != sidA {
		t.Fatalf("within the refresh, sent as %s", s)
	}
	clk.add(time.Millisecond)
	if s := send(); s != sidB {
		t.Fatalf("after the refresh, sent as %s, want the rotated account", s)
	}
	loader.mu.Lock()
	delete(loader.creds, "app-a/"+wire.CredentialTwilio)
	loader.mu.Unlock()
	clk.add(cfg.AppCredentials.Refresh)
	if s := send(); s != "AC00000000000000000000000000000000" {
		t.Fatalf("after the delete, sent as %s, want the region's account", s)
	}
}

func TestACredentialThatCannotBeReadIsNeverReplacedByTheRegionsAccount(t *testing.T) {
	loader := &fakeCredentials{creds: map[string]credentials.Loaded{}, err: errors.New("postgres: connection refused")}
	loader.set("app-a", 1, sidA, tokA)
	cfg := DefaultConfig()
	f, got, clk := appFixture(t, cfg, loader)
	loads := func(result string) float64 {
		return testutil.ToFloat64(appCredentialLoads.WithLabelValues("zz-test-1", wire.CredentialTwilio, result))
	}
	errors0, stale0 := loads("error"), loads("stale")
	// Nothing read yet: the text is retried, sent with no account.
	task := textOf("app-a")
	if err := f.d.process(context.Background(), task, nil); err != nil {
		t.Fatal(err)
	}
	if len(got()) != 0 || len(f.prod.msgs) != 1 || !strings.Contains(f.prod.msgs[0].Topic, ".retry.") {
		t.Fatalf("sent %v, produced %d records (want one retry)", got(), len(f.prod.msgs))
	}
	// Read once, then the store fails: the credential read before keeps sending.
	loader.mu.Lock()
	loader.err = nil
	loader.mu.Unlock()
	if err := f.d.process(context.Background(), textOf("app-a"), nil); err != nil {
		t.Fatal(err)
	}
	loader.mu.Lock()
	loader.err = errors.New("postgres: connection refused")
	loader.mu.Unlock()
	clk.add(cfg.AppCredentials.Refresh)
	if err := f.d.process(context.Background(), textOf("app-a"), nil); err != nil {
		t.Fatal(err)
	}
	for _, g := range got() {
		if !strings.HasPrefix(g, sidA+" ") {
			t.Fatalf("sent as %s while the store failed", g)
		}
	}
	if len(got()) != 2 {
		t.Fatalf("sent %v", got())
	}
	// What HeraldAppCredentialsUnusable and the operator see: one read with nothing cached
	// failed (the text held), one served from the cache.
	if e, s := loads("error")-errors0, loads("stale")-stale0; e != 1 || s != 1 {
		t.Fatalf("loads counted error +%v stale +%v, want +1 each", e, s)
	}
}

func TestARequiredKindWithoutTheAppsCredentialFailsAndAnUnusableOneFails(t *testing.T) {
	loader := &fakeCredentials{creds: map[string]credentials.Loaded{}}
	cfg := DefaultConfig()
	cfg.AppCredentials.Required = []string{wire.CredentialTwilio}
	f, got, _ := appFixture(t, cfg, loader)
	if err := f.d.process(context.Background(), textOf("app-c"), nil); err != nil {
		t.Fatal(err)
	}
	if len(got()) != 0 || f.lastState() != notify.StateFailed || f.log.attempts[len(f.log.attempts)-1].Error == "" ||
		!strings.Contains(f.log.attempts[len(f.log.attempts)-1].Error, "no_credentials") {
		t.Fatalf("sent %v, state %q, attempts %+v", got(), f.lastState(), f.log.attempts)
	}
	// A stored credential that no longer validates (a row written by hand) sends nothing.
	loader.mu.Lock()
	loader.creds["app-d/"+wire.CredentialTwilio] = credentials.Loaded{Version: 3, Credential: wire.Credential{Kind: wire.CredentialTwilio,
		Twilio: &wire.TwilioCredential{AccountSID: "ACnope", AuthToken: tokA, From: "+15005550007"}}}
	loader.mu.Unlock()
	if err := f.d.process(context.Background(), textOf("app-d"), nil); err != nil {
		t.Fatal(err)
	}
	if len(got()) != 0 || f.lastState() != notify.StateFailed || !strings.Contains(f.log.attempts[len(f.log.attempts)-1].Error, "credential_unusable") {
		t.Fatalf("sent %v, state %q, attempts %+v", got(), f.lastState(), f.log.attempts[len(f.log.attempts)-1])
	}
}

func TestTheAppRouteCacheStaysBoundedAndConcurrentSendsReadTheStoreOnce(t *testing.T) {
	loader := &fakeCredentials{creds: map[string]credentials.Loaded{}}
	loader.set("app-a", 1, sidA, tokA)
	cfg := DefaultConfig()
	cfg.AppCredentials.MaxCached = 8
	f, _, _ := appFixture(t, cfg, loader)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.d.routeFor(context.Background(), "app-a", KindSMS); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if loader.reads != 1 {
		t.Fatalf("%d reads for 50 concurrent sends of one app", loader.reads)
	}
	for i := range 100 {
		if _, err := f.d.routeFor(context.Background(), fmt.Sprintf("app-%d", i), KindSMS); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(f.d.apps.entries); n > cfg.AppCredentials.MaxCached {
		t.Fatalf("%d cached routes, max %d", n, cfg.AppCredentials.MaxCached)
	}
}

// An app's SMTP credential sends as the app: its login, its From, and its DKIM key (d= its
// domain), verified against its own record; an app that brings no DKIM key is signed by the
// region's, as before.
func TestAnAppsEmailIsSentAsTheAppAndSignedWithItsOwnDKIMKey(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	regionKey, regionRecord := writeKey(t, rk, &rk.PublicKey)
	ak, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(ak)
	pub, _ := x509.MarshalPKIXPublicKey(&ak.PublicKey)
	appRecord := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)
	cfg := DefaultConfig()
	cfg.Email.SMTP = SMTPConfig{Addr: "127.0.0.1:2525", Username: "region", Password: "pw", From: "noreply@herald.example",
		DKIM: DKIMConfig{Domain: "herald.example", Selector: "herald", KeyFile: regionKey}}
	f := newFixture(cfg, nil)
	f.d.apps = &appRoutes{d: f.d, cfg: cfg.AppCredentials, loader: &fakeCredentials{}, juris: "EU", entries: map[appKey]*appEntry{}}
	lookup := func(name string) ([]string, error) {
		switch name {
		case "s1._domainkey.acme.example":
			return []string{appRecord}, nil
		case "herald._domainkey.herald.example":
			return []string{regionRecord}, nil
		}
		return nil, fmt.Errorf("no record %s", name)
	}
	task := sampleTask(notify.Email)
	for _, c := range []struct {
		name, domain string
		dkim         *wire.DKIMKey
	}{
		{"its own key", "acme.example", &wire.DKIMKey{Domain: "acme.example", Selector: "s1", PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))}},
		{"no key: the region's", "herald.example", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			cred := wire.Credential{Kind: wire.CredentialSMTP, SMTP: &wire.SMTPCredential{From: "Acme <no-reply@mail.acme.example>", Username: "acme", Password: "secret", DKIM: c.dkim}}
			rt, err := f.d.appRoute("app-a", KindSMTP, cred)
			if err != nil {
				t.Fatal(err)
			}
			sp := rt.primary.p.(*appProvider).Provider.(*smtpProvider)
			if sp.Name() != "app-smtp" || sp.cfg.Username != "acme" || sp.cfg.Password != "secret" || sp.cfg.From != cred.SMTP.From || rt.secondary != nil {
				t.Fatalf("provider %s as %q from %q, secondary %v", sp.Name(), sp.cfg.Username, sp.cfg.From, rt.secondary)
			}
			msg, _ := buildMail(task, sp.cfg.From, "ada@example.com", "<1@acme.example>", "", time.Now())
			signed, err := sp.dkim.sign(msg)
			if err != nil {
				t.Fatal(err)
			}
			vs, err := dkim.VerifyWithOptions(bytes.NewReader(signed), &dkim.VerifyOptions{LookupTXT: lookup})
			if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != c.domain {
				t.Fatalf("verification %+v %v", vs, err)
			}
		})
	}
}
