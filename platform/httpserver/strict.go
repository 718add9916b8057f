package httpserver

import (
	"mime"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/platform/apierr"
)

// Codes of the request-hygiene refusals every Herald API answers.
const (
	CodeHeadersTooLarge      = "headers_too_large"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeNotFound             = "not_found"
	CodeInvalidField         = "invalid_field"
)

// MaxHeaderBytes is what an API takes of a request's line and headers; above it the answer is
// 431 headers_too_large in JSON. The server itself reads up to serverHeaderBytes before net/http
// answers a plain-text 431 on its own.
const (
	MaxHeaderBytes    = 32 << 10
	serverHeaderBytes = 1 << 20
)

// Strict refuses, before any route, what no route takes: headers over MaxHeaderBytes (431), a
// query string that does not parse or names a parameter twice (400: the gateway and a region
// could take different ones), and a body that is not application/json (415). Every refusal is
// Herald's JSON error.
func Strict(c *gin.Context) { strict(c, nil) }

// Allow lets a body of one of MediaTypes through Strict under a path prefix (and a method, when
// given), besides JSON.
type Allow struct {
	Method, Prefix string
	MediaTypes     []string
}

// FormsUnder allows application/x-www-form-urlencoded bodies (what RFC 8058 one-click
// unsubscribe and Twilio's callbacks post) under a prefix.
func FormsUnder(prefix string) Allow {
	return Allow{Prefix: prefix, MediaTypes: []string{"application/x-www-form-urlencoded"}}
}

// YAMLUnder allows YAML bodies (application/yaml, application/x-yaml, text/yaml) for one
// method under a prefix: where a file an app keeps in its repository is sent as it is.
func YAMLUnder(method, prefix string) Allow {
	return Allow{Method: method, Prefix: prefix, MediaTypes: []string{"application/yaml", "application/x-yaml", "text/yaml"}}
}

// StrictAllowing is Strict, except for the bodies allows lets through.
func StrictAllowing(allows ...Allow) gin.HandlerFunc {
	return func(c *gin.Context) { strict(c, allows) }
}

func strict(c *gin.Context, allows []Allow) {
	r := c.Request
	n := len(r.Method) + len(r.RequestURI)
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	if n > MaxHeaderBytes {
		refuse(c, http.StatusRequestHeaderFieldsTooLarge, CodeHeadersTooLarge, "the request line and headers are over 32768 bytes", "")
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		refuse(c, http.StatusBadRequest, CodeInvalidField, "the query string is not valid URL encoding", "query")
		return
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if len(q[k]) > 1 {
			refuse(c, http.StatusBadRequest, CodeInvalidField, "query parameter "+k+" is given more than once", k)
			return
		}
	}
	if r.ContentLength > 0 || r.ContentLength < 0 && len(r.TransferEncoding) > 0 {
		mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		allowed := err == nil && slices.ContainsFunc(allows, func(a Allow) bool {
			return (a.Method == "" || a.Method == r.Method) && strings.HasPrefix(r.URL.Path, a.Prefix) && slices.Contains(a.MediaTypes, mt)
		})
		if err == nil && params["charset"] != "" && !strings.EqualFold(params["charset"], "utf-8") || !allowed && (err != nil || mt != "application/json") {
			refuse(c, http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "request bodies are JSON: send Content-Type: application/json", "Content-Type")
			return
		}
	}
}

// Engine is a gin engine that answers what no route serves in JSON: an unknown path 404
// not_found, a known path with another method 405 method_not_allowed with Allow.
func Engine() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.NoRoute(func(c *gin.Context) {
		refuse(c, http.StatusNotFound, CodeNotFound, "no such route: "+c.Request.Method+" "+c.Request.URL.Path, "")
	})
	r.NoMethod(func(c *gin.Context) {
		refuse(c, http.StatusMethodNotAllowed, CodeMethodNotAllowed, c.Request.Method+" is not served on "+c.Request.URL.Path+"; allowed: "+c.Writer.Header().Get("Allow"), "")
	})
	return r
}

func refuse(c *gin.Context, status int, code, msg, field string) {
	apierr.Write(c.Writer, status, code, msg, field)
	c.Abort()
}
