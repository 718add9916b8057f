package gateway

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/residency"
)

// unsubscribePrefix is the path of one-click unsubscribe links (public: the token is the only
// credential).
const unsubscribePrefix = "/v1/unsubscribe/"

// maxUnsubscribeToken bounds a token: a region name, a dot, a sealed claim of bounded ids.
const maxUnsubscribeToken = 1024

// unsubscribeTokenRE is a token as a region mints it: its name, a dot, base64url.
var unsubscribeTokenRE = regexp.MustCompile(`^([a-z0-9][a-z0-9-]{0,62})\.[A-Za-z0-9_-]{16,}$`)

// unsubscribeRegion is the region that minted token (which alone can open it), when the
// policy knows it; false answers 404 the same way for every token that is not one.
func (s *Server) unsubscribeRegion(c *gin.Context) (region string, ok bool) {
	return s.tokenRegion(c, s.unsubscribeNotFound)
}

// tokenRegion is the region a sealed token's prefix names, when the policy knows it;
// otherwise notFound answers, the same for every token that is not one. A jurisdiction that
// does not let its users' requests transit other gateways gets the request redirected to its
// own.
func (s *Server) tokenRegion(c *gin.Context, notFound func(*gin.Context)) (region string, ok bool) {
	p := s.Policy.Current()
	region, j, known := regionOfToken(p, c.Param("token"))
	if !known {
		notFound(c)
		return "", false
	}
	if !p.AllowsTransit(j) && j != s.Jurisdiction {
		if u := p.GatewayURL(j); u != "" && strings.TrimRight(u, "/") != strings.TrimRight(s.PublicURL, "/") {
			c.Header("Location", strings.TrimRight(u, "/")+c.Request.URL.RequestURI())
			abort(c, http.StatusTemporaryRedirect, "redirect_jurisdiction", fmt.Sprintf("%s does not allow its users' requests to transit other jurisdictions' gateways; use %s", j, u), "")
			return "", false
		}
	}
	return region, true
}

// regionOfToken is the region a sealed token's prefix names and its jurisdiction, when the
// policy p knows it (the token itself is opened by that region only).
func regionOfToken(p *residency.Policy, token string) (region, jurisdiction string, ok bool) {
	m := unsubscribeTokenRE.FindStringSubmatch(token)
	if len(token) > maxUnsubscribeToken || m == nil || p == nil {
		return "", "", false
	}
	j, known := p.JurisdictionOfRegion(m[1])
	if !known {
		return "", "", false
	}
	return m[1], j, true
}

// unsubscribed is the region's answer.
type unsubscribed struct {
	Category     string `json:"category"`
	Channel      string `json:"channel"`
	Unsubscribed bool   `json:"unsubscribed"`
}

// unsubscribePage serves GET /v1/unsubscribe/{token}: a page saying what the link turns off,
// with the button that does it. A GET changes nothing (mail scanners follow links); the
// button posts what a one-click client posts.
func (s *Server) unsubscribePage(c *gin.Context) {
	region, ok := s.unsubscribeRegion(c)
	if !ok {
		return
	}
	resp, err := s.call(c.Request.Context(), c, region, http.MethodGet, unsubscribePrefix+c.Param("token"), "", nil)
	if err != nil {
		s.regionFailed(c, region, err)
		return
	}
	defer resp.Body.Close()
	var u unsubscribed
	switch {
	case resp.StatusCode == http.StatusNotFound:
		s.unsubscribeNotFound(c)
		return
	case resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&u) != nil:
		unavailable(c, "region_unavailable", "the unsubscribe link cannot be read right now; retry")
		return
	}
	page(c, unsubscribePageHTML, u)
}

// page answers 200 with a page of the link, never cached.
func page(c *gin.Context, t *template.Template, u unsubscribed) {
	c.Header("Cache-Control", "no-store")
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Status(http.StatusOK)
	_ = t.Execute(c.Writer, u)
}

// oneClickUnsubscribe serves POST /v1/unsubscribe/{token} (RFC 8058): the body is
// List-Unsubscribe=One-Click, as mail clients post it (or nothing). The region that minted the
// token turns the category off; the answer is JSON, or a page for a browser that asks for one.
func (s *Server) oneClickUnsubscribe(c *gin.Context) {
	region, ok := s.unsubscribeRegion(c)
	if !ok {
		return
	}
	if !oneClickBody(c) {
		return
	}
	resp, err := s.call(c.Request.Context(), c, region, http.MethodPost, unsubscribePrefix+c.Param("token"), "", nil)
	if err != nil {
		s.regionFailed(c, region, err)
		return
	}
	if resp.StatusCode == http.StatusNotFound {
		resp.Body.Close()
		s.unsubscribeNotFound(c)
		return
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(c.GetHeader("Accept"), "text/html") {
		relay(c, resp)
		return
	}
	defer resp.Body.Close()
	var u unsubscribed
	if json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&u) != nil {
		unavailable(c, "region_unavailable", "the unsubscribe was not confirmed; retry")
		return
	}
	page(c, unsubscribeDoneHTML, u)
}

// oneClickBody accepts the body RFC 8058 prescribes, List-Unsubscribe=One-Click as a form, or
// none; anything else is 400 naming the field.
func oneClickBody(c *gin.Context) bool {
	raw, err := io.ReadAll(io.LimitReader(c.Request.Body, 1025))
	if err != nil {
		abort(c, http.StatusBadRequest, wire.CodeInvalidField, "the body cannot be read", "List-Unsubscribe")
		return false
	}
	if len(raw) == 0 {
		return true
	}
	if !strings.HasPrefix(c.GetHeader("Content-Type"), "application/x-www-form-urlencoded") {
		abort(c, http.StatusUnsupportedMediaType, "unsupported_media_type", "a one-click unsubscribe posts List-Unsubscribe=One-Click as application/x-www-form-urlencoded", "Content-Type")
		return false
	}
	form, err := url.ParseQuery(string(raw))
	if err != nil || len(raw) > 1024 || len(form) != 1 || len(form["List-Unsubscribe"]) != 1 || form.Get("List-Unsubscribe") != "One-Click" {
		abort(c, http.StatusBadRequest, wire.CodeInvalidField, "the body must be List-Unsubscribe=One-Click (RFC 8058)", "List-Unsubscribe")
		return false
	}
	return true
}

// unsubscribeNotFound answers a link that is not one (forged, changed, of an erased user):
// the same 404 for all, a page for a browser, JSON otherwise.
func (s *Server) unsubscribeNotFound(c *gin.Context) {
	if c.Request.Method == http.MethodGet {
		c.Header("Content-Type", "text/html; charset=utf-8")
		c.Status(http.StatusNotFound)
		_, _ = io.WriteString(c.Writer, unsubscribeNotFoundHTML)
		c.Abort()
		return
	}
	abort(c, http.StatusNotFound, "not_found", "this unsubscribe link is not valid", "token")
}

var unsubscribePageHTML = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Unsubscribe</title></head>
<body>
{{if .Unsubscribed}}<p>You are unsubscribed from {{.Category}} {{.Channel}}.</p>
{{else}}<p>Stop receiving {{.Category}} {{.Channel}}?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">Unsubscribe</button></form>
{{end}}</body></html>
`))

var unsubscribeDoneHTML = template.Must(template.New("done").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Unsubscribed</title></head>
<body><p>You are unsubscribed from {{.Category}} {{.Channel}}.</p></body></html>
`))

const unsubscribeNotFoundHTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Link not valid</title></head>
<body><p>This unsubscribe link is not valid.</p></body></html>
`
