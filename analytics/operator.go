package analytics

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/platform/apierr"
)

// The query API and the dashboard answer operators only: a request carries the operator token
// (Authorization: Bearer <operator.token>), or the session cookie the dashboard's sign-in
// (POST /v1/session with that token) sets. A region's token is not an operator's.

// sessionCookie is the dashboard's session cookie.
const sessionCookie = "herald_analytics_session"

// sessions issues and checks the dashboard's session cookies. A session is its expiry and a
// MAC over it under a key derived from the operator token, so it needs no server state (every
// replica checks it alike) and changing the operator token ends every session.
type sessions struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

func newSessions(operatorToken string, ttl time.Duration, now func() time.Time) sessions {
	m := hmac.New(sha256.New, []byte(operatorToken))
	m.Write([]byte("herald-analytics/dashboard-session/v1"))
	return sessions{key: m.Sum(nil), ttl: ttl, now: now}
}

func (s sessions) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// issue returns a new session's cookie value and its expiry.
func (s sessions) issue() (string, time.Time) {
	exp := s.now().Add(s.ttl).Truncate(time.Second)
	payload := strconv.FormatInt(exp.Unix(), 10)
	return payload + "." + base64.RawURLEncoding.EncodeToString(s.mac(payload)), exp
}

// valid reports whether v is a session this operator token issued and that has not expired.
func (s sessions) valid(v string) bool {
	payload, sig, ok := strings.Cut(v, ".")
	if !ok {
		return false
	}
	exp, err := strconv.ParseInt(payload, 10, 64)
	if err != nil {
		return false
	}
	now := s.now().Unix()
	if now >= exp || exp > now+int64(s.ttl/time.Second)+60 {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	return err == nil && hmac.Equal(got, s.mac(payload))
}

// isOperatorToken compares tok with the operator token in constant time (of their digests, so
// not even the length shows).
func (a *api) isOperatorToken(tok string) bool {
	if tok == "" || a.operator == "" {
		return false
	}
	got, want := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(a.operator))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// isOperator reports whether r carries the operator token or a valid session cookie.
func (a *api) isOperator(r *http.Request) bool {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		return ok && a.isOperatorToken(tok)
	}
	ck, err := r.Cookie(sessionCookie)
	return err == nil && a.operator != "" && a.sessions.valid(ck.Value)
}

// operatorOnly is the middleware of requireOperator.
func (a *api) operatorOnly(c *gin.Context) { a.requireOperator(c) }

// requireOperator reports whether the request is an operator's; if not, it answers 401 and
// aborts the request.
func (a *api) requireOperator(c *gin.Context) bool {
	if a.isOperator(c.Request) {
		return true
	}
	a.refuseOperator(c, "the operator token is required: Authorization: Bearer <operator token>, or sign in at /dashboard/login.html")
	return false
}

// refuseOperator answers 401 to a request without the operator's credential, counted apart
// from the regions' refusals (herald_analytics_operator_refusals_total by what was sent).
func (a *api) refuseOperator(c *gin.Context, message string) {
	sent := "none"
	if c.GetHeader("Authorization") != "" {
		sent = "token"
	} else if _, err := c.Request.Cookie(sessionCookie); err == nil {
		sent = "session"
	}
	metricOperatorRefusals.WithLabelValues(sent).Inc()
	c.Header("WWW-Authenticate", `Bearer realm="herald-analytics-operator"`)
	c.Header("Cache-Control", "no-store")
	apierr.Write(c.Writer, http.StatusUnauthorized, "unauthorized", message, "")
	c.Abort()
}

// signIn is POST /v1/session: the operator token in exchange for the dashboard's session
// cookie (HttpOnly, SameSite=Strict; Secure over HTTPS). The token must come in the header, so
// no other site can sign a browser in.
func (a *api) signIn(c *gin.Context) {
	tok, _ := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if !a.isOperatorToken(tok) {
		a.log.Warn("dashboard sign-in refused", "remote", c.ClientIP())
		a.refuseOperator(c, "the operator token is required: Authorization: Bearer <operator token>")
		return
	}
	value, exp := a.sessions.issue()
	http.SetCookie(c.Writer, a.cookie(c.Request, value, int(a.sessions.ttl/time.Second)))
	a.log.Info("dashboard sign-in", "remote", c.ClientIP(), "expires_at", exp)
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"signed_in": true, "expires_at": exp.UTC()})
}

// session is GET /v1/session: whether the request is signed in (never a 401, so the sign-in
// page can ask before it shows its form).
func (a *api) session(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"signed_in": a.isOperator(c.Request)})
}

// signOut is DELETE /v1/session: it clears the cookie.
func (a *api) signOut(c *gin.Context) {
	http.SetCookie(c.Writer, a.cookie(c.Request, "", -1))
	c.Status(http.StatusNoContent)
}

func (a *api) cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: sessionCookie, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https",
	}
}
