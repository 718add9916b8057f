package analytics

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/herald-notify/herald/platform/health"
)

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func operatorRouter(t *testing.T) (*api, *gin.Engine) {
	t.Helper()
	cfg := validConfig(t)
	tokens, err := cfg.regionTokens()
	if err != nil {
		t.Fatal(err)
	}
	a := newAPI(cfg, credentials{regions: tokens, operator: testOperatorToken}, nil, slog.New(slog.DiscardHandler))
	return a, a.router(health.New(nil))
}

func serve(r http.Handler, method, path string, edit func(*http.Request)) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	if edit != nil {
		edit(req)
	}
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	return w
}

func bearer(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

// The query API and every dashboard page but the sign-in answer 401 (JSON, WWW-Authenticate)
// to a request without the operator token, with a wrong one, or with a region's token.
func TestQueriesAndDashboardRefuseAnyoneButTheOperator(t *testing.T) {
	_, r := operatorRouter(t)
	regionsBefore := counterValue(metricRejections.WithLabelValues("unauthorized"))
	noneBefore, tokenBefore := counterValue(metricOperatorRefusals.WithLabelValues("none")), counterValue(metricOperatorRefusals.WithLabelValues("token"))
	paths := []string{"/v1/meta", "/v1/funnel", "/v1/dropoff", "/v1/latency", "/v1/cost", "/v1/series",
		"/v1/funnel?region=eu-west-1", "/dashboard/", "/dashboard/index.html", "/dashboard/app.js",
		"/dashboard/vendor/chart.umd.min.js", "/dashboard//login.html", "/dashboard/login.html/../index.html"}
	creds := []struct {
		name string
		edit func(*http.Request)
	}{
		{"none", nil},
		{"an empty bearer", bearer("")},
		{"a wrong token", bearer("not-the-operator-token-0123456789abcdef")},
		{"a region's token", bearer("0123456789abcdef-eu")},
		{"the operator token with a suffix", bearer(testOperatorToken + "x")},
		{"the operator token's prefix", bearer(testOperatorToken[:len(testOperatorToken)-1])},
		{"the operator token in another case", bearer(strings.ToUpper(testOperatorToken))},
		{"the operator token as Basic", func(r *http.Request) { r.SetBasicAuth("operator", testOperatorToken) }},
		{"the operator token without the scheme", func(r *http.Request) { r.Header.Set("Authorization", testOperatorToken) }},
		{"a forged session cookie", func(r *http.Request) {
			r.AddCookie(&http.Cookie{Name: sessionCookie, Value: "9999999999.AAAA"})
		}},
		{"the operator token as the cookie", func(r *http.Request) {
			r.AddCookie(&http.Cookie{Name: sessionCookie, Value: testOperatorToken})
		}},
	}
	for _, cr := range creds {
		for _, p := range paths {
			w := serve(r, "GET", p, cr.edit)
			if w.Code != http.StatusUnauthorized {
				t.Errorf("%s, GET %s: %d, want 401", cr.name, p, w.Code)
				continue
			}
			var body struct{ Error struct{ Code string } }
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error.Code != "unauthorized" {
				t.Errorf("%s, GET %s: body %q", cr.name, p, w.Body.String())
			}
			if !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer ") {
				t.Errorf("%s, GET %s: no WWW-Authenticate", cr.name, p)
			}
			if strings.Contains(w.Body.String(), "eu-west-1") || strings.Contains(w.Body.String(), "<html") {
				t.Errorf("%s, GET %s: the 401 shows content: %q", cr.name, p, w.Body.String())
			}
		}
	}
	// Counted apart from the regions' refusals, which an alert watches.
	if got := counterValue(metricRejections.WithLabelValues("unauthorized")); got != regionsBefore {
		t.Errorf("operator refusals counted as the regions' unauthorized: %v -> %v", regionsBefore, got)
	}
	if counterValue(metricOperatorRefusals.WithLabelValues("none")) <= noneBefore || counterValue(metricOperatorRefusals.WithLabelValues("token")) <= tokenBefore {
		t.Error("herald_analytics_operator_refusals_total did not count the refusals")
	}
	// The right token: the page and the metadata (the queries, which need the database, are
	// checked against a real one in TestQueryAPIAnswersTheOperatorOnly).
	for _, p := range []string{"/v1/meta", "/dashboard/", "/dashboard/app.js"} {
		if w := serve(r, "GET", p, bearer(testOperatorToken)); w.Code != http.StatusOK {
			t.Errorf("operator, GET %s: %d", p, w.Code)
		}
	}
	// The sign-in page is open, and holds no data.
	for _, p := range []string{"/dashboard/login.html", "/dashboard/login.js", "/dashboard/app.css"} {
		w := serve(r, "GET", p, nil)
		if w.Code != http.StatusOK || strings.Contains(w.Body.String(), "eu-west-1") {
			t.Errorf("GET %s without a token: %d", p, w.Code)
		}
	}
	if w := serve(r, "GET", "/", nil); w.Code != http.StatusFound || w.Header().Get("Location") != "/dashboard/login.html" {
		t.Errorf("GET /: %d to %q", w.Code, w.Header().Get("Location"))
	}
}

// The dashboard's sign-in trades the operator token for an HttpOnly, SameSite=Strict cookie
// that opens the queries and pages until it expires or is signed out; nothing else gets one.
func TestDashboardSignInSetsASessionCookieOnlyForTheOperatorToken(t *testing.T) {
	a, r := operatorRouter(t)
	now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	a.sessions.now = func() time.Time { return now }
	for _, tok := range []string{"", "0123456789abcdef-eu", "not-the-operator-token-0123456789abcdef"} {
		w := serve(r, "POST", "/v1/session", bearer(tok))
		if w.Code != http.StatusUnauthorized || w.Header().Get("Set-Cookie") != "" {
			t.Errorf("sign-in with %q: %d, cookie %q", tok, w.Code, w.Header().Get("Set-Cookie"))
		}
	}
	w := serve(r, "POST", "/v1/session", bearer(testOperatorToken))
	if w.Code != http.StatusOK {
		t.Fatalf("sign-in: %d %s", w.Code, w.Body.String())
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != sessionCookie || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode ||
		cookies[0].MaxAge != int((8*time.Hour)/time.Second) || cookies[0].Path != "/" {
		t.Fatalf("cookie %+v", cookies)
	}
	if strings.Contains(cookies[0].Value, testOperatorToken) {
		t.Error("the cookie holds the operator token")
	}
	withCookie := func(v string) func(*http.Request) {
		return func(r *http.Request) { r.AddCookie(&http.Cookie{Name: sessionCookie, Value: v}) }
	}
	session := cookies[0].Value
	for _, p := range []string{"/v1/meta", "/dashboard/"} {
		if w := serve(r, "GET", p, withCookie(session)); w.Code != http.StatusOK {
			t.Errorf("GET %s with the session: %d", p, w.Code)
		}
	}
	if w := serve(r, "GET", "/v1/session", withCookie(session)); !strings.Contains(w.Body.String(), `"signed_in":true`) {
		t.Errorf("GET /v1/session signed in: %s", w.Body.String())
	}
	if w := serve(r, "GET", "/v1/session", nil); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"signed_in":false`) {
		t.Errorf("GET /v1/session signed out: %d %s", w.Code, w.Body.String())
	}
	// Over HTTPS (behind the operators' proxy) the cookie is Secure.
	w = serve(r, "POST", "/v1/session", func(r *http.Request) {
		bearer(testOperatorToken)(r)
		r.Header.Set("X-Forwarded-Proto", "https")
	})
	if c := w.Result().Cookies(); len(c) != 1 || !c[0].Secure {
		t.Errorf("cookie over https: %+v", c)
	}
	// Tampered, expired, or issued under another operator token: refused.
	exp, mac, _ := strings.Cut(session, ".")
	other := newSessions("another-operator-token-0123456789abcdef", 8*time.Hour, a.sessions.now)
	otherSession, _ := other.issue()
	for name, v := range map[string]string{
		"a later expiry with the old MAC": "9" + exp + "." + mac,
		"a flipped MAC":                   exp + "." + strings.Map(func(r rune) rune { return map[bool]rune{true: 'B', false: 'A'}[r == 'A'] }, mac),
		"no MAC":                          exp,
		"another token's session":         otherSession,
		"empty":                           "",
	} {
		if w := serve(r, "GET", "/v1/meta", withCookie(v)); w.Code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, w.Code)
		}
	}
	now = now.Add(8*time.Hour + time.Second)
	if w := serve(r, "GET", "/v1/meta", withCookie(session)); w.Code != http.StatusUnauthorized {
		t.Errorf("an expired session: %d, want 401", w.Code)
	}
	// Signing out clears the cookie.
	w = serve(r, "DELETE", "/v1/session", withCookie(session))
	if c := w.Result().Cookies(); w.Code != http.StatusNoContent || len(c) != 1 || c[0].MaxAge >= 0 || c[0].Value != "" {
		t.Errorf("sign-out: %d, cookies %+v", w.Code, c)
	}
}

func TestSessionsAreValidUntilTheirExpiryOnly(t *testing.T) {
	now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	s := newSessions(testOperatorToken, time.Hour, func() time.Time { return now })
	v, exp := s.issue()
	if !exp.Equal(now.Add(time.Hour)) {
		t.Errorf("expiry %v", exp)
	}
	for _, tc := range []struct {
		at   time.Duration
		want bool
	}{{0, true}, {59 * time.Minute, true}, {time.Hour - time.Second, true}, {time.Hour, false}, {48 * time.Hour, false}} {
		s.now = func() time.Time { return now.Add(tc.at) }
		if got := s.valid(v); got != tc.want {
			t.Errorf("at +%v: valid = %v, want %v", tc.at, got, tc.want)
		}
	}
	// A session (validly signed) reaching further than one lifetime ahead is not believed.
	s.now = func() time.Time { return now.Add(-time.Hour) }
	if s.valid(v) {
		t.Error("a session expiring two lifetimes ahead was accepted")
	}
}
