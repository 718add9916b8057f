package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/herald-notify/herald/gateway/directory"
	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/residency"
)

// Reasons of a routing decision, as recorded in the audit.
const (
	reasonHome     = "home"
	reasonRedirect = "redirect"
	reasonRefused  = "refused"
)

// decision is where one user's request goes.
type decision struct {
	Jurisdiction  string
	Home          string
	Region        string // "" when redirected or refused
	Reason        string // home, failover-from-<home>, redirect, refused
	RedirectTo    string // the jurisdiction's gateway URL, for redirect
	PolicyVersion int64
}

// decide routes a user of entry e under policy p: to the home region when it is healthy, else
// to the first healthy region of the same jurisdiction in policy order, else nowhere. A region
// outside the jurisdiction is never chosen, whatever is healthy. A jurisdiction that forbids
// transit is redirected to its own gateway unless this gateway is that one.
func (s *Server) decide(p *residency.Policy, e directory.Entry) decision {
	d := decision{Jurisdiction: e.Jurisdiction, Home: e.HomeRegion, PolicyVersion: p.Version}
	if !p.AllowsTransit(e.Jurisdiction) && e.Jurisdiction != s.Jurisdiction {
		if u := p.GatewayURL(e.Jurisdiction); u != "" && strings.TrimRight(u, "/") != strings.TrimRight(s.PublicURL, "/") {
			d.Reason, d.RedirectTo = reasonRedirect, u
			return d
		}
	}
	regions := p.Regions(e.Jurisdiction)
	healthy := func(r string) bool { return s.Regions.HealthyIn(r, e.Jurisdiction) }
	if slices.Contains(regions, e.HomeRegion) && healthy(e.HomeRegion) {
		d.Region, d.Reason = e.HomeRegion, reasonHome
		return d
	}
	for _, r := range regions {
		if r != e.HomeRegion && healthy(r) {
			d.Region, d.Reason = r, "failover-from-"+e.HomeRegion
			return d
		}
	}
	d.Reason = reasonRefused
	return d
}

// routeUser looks the user up and decides; it answers the error itself (404 unknown user, 307,
// 503) and returns ok=false then. Every decision, refused and redirected ones included, is
// audited.
func (s *Server) routeUser(c *gin.Context, user, field string) (decision, bool) {
	p := s.Policy.Current()
	if p == nil {
		unavailable(c, "no_policy", "the gateway has no residency policy loaded yet")
		return decision{}, false
	}
	if !wire.ValidID(user) {
		abort(c, http.StatusBadRequest, wire.CodeInvalidField, "user ids must match "+wire.IDPattern+" and not be . or ..", field)
		return decision{}, false
	}
	e, err := s.Directory.Lookup(c.Request.Context(), appOf(c), user)
	if errors.Is(err, directory.ErrNotFound) {
		abort(c, http.StatusNotFound, "unknown_user", fmt.Sprintf("user %q is not registered: PUT /v1/users/%s with its country first", user, user), field)
		return decision{}, false
	}
	if err != nil {
		s.Log.Error("directory lookup", "err", err, "request_id", reqID(c))
		unavailable(c, "directory_unavailable", "the user directory cannot be read right now; retry")
		return decision{}, false
	}
	d := s.decide(p, e)
	s.record(c, user, d)
	switch d.Reason {
	case reasonRedirect:
		u := strings.TrimRight(d.RedirectTo, "/") + c.Request.URL.RequestURI()
		c.Header("Location", u)
		abort(c, http.StatusTemporaryRedirect, "redirect_jurisdiction", fmt.Sprintf("%s does not allow its users' requests to transit other jurisdictions' gateways; use %s", d.Jurisdiction, d.RedirectTo), "")
		return d, false
	case reasonRefused:
		unavailable(c, "region_unavailable", fmt.Sprintf("no region of %s is healthy; the request was not sent anywhere else", d.Jurisdiction))
		return d, false
	}
	return d, true
}

// record audits one decision and counts it.
func (s *Server) record(c *gin.Context, user string, d decision) {
	reason := d.Reason
	if strings.HasPrefix(reason, "failover-from-") {
		reason = "failover"
	}
	metricDecisions.WithLabelValues(d.Jurisdiction, reason).Inc()
	home := d.Home
	if home == "" { // a registration redirected before it had a home: the jurisdiction's first region
		if rs := s.Policy.Current().Regions(d.Jurisdiction); len(rs) > 0 {
			home = rs[0]
		}
	}
	s.Audit.add(auditEntry{
		At: time.Now().UTC(), App: appOf(c), UserKey: s.Directory.Key(appOf(c), user), Jurisdiction: d.Jurisdiction,
		Region: d.Region, Reason: d.Reason, PolicyVersion: d.PolicyVersion, RequestID: reqID(c),
	}, home)
}

// errRegionDown means no endpoint of the region took the request (nothing reached it).
var errRegionDown = errors.New("region unreachable")

// call sends one request to a region and returns its answer. A connection that cannot be made
// marks the endpoint down and tries the region's next endpoint: nothing was sent, so it is safe
// for every method.
func (s *Server) call(ctx context.Context, c *gin.Context, region, method, path, rawQuery string, body []byte) (*http.Response, error) {
	for attempt := 0; attempt < 3; attempt++ {
		addr, ok := s.Regions.Pick(region)
		if !ok {
			return nil, fmt.Errorf("%w: %s has no healthy endpoint", errRegionDown, region)
		}
		u := url.URL{Scheme: regionScheme, Host: addr, Path: path, RawQuery: rawQuery}
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
		if err != nil {
			return nil, err
		}
		req.Header.Set(appHeader, appOf(c))
		req.Header.Set(requestIDHeader, reqID(c))
		setRegionBudget(ctx, req.Header)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		for _, h := range []string{"Accept", "Last-Event-ID"} {
			if v := c.GetHeader(h); v != "" {
				req.Header.Set(h, v)
			}
		}
		if s.RegionToken != "" {
			req.Header.Set("Authorization", "Bearer "+s.RegionToken)
		}
		otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(req.Header))
		resp, err := s.Client.Do(req)
		if err == nil {
			return resp, nil
		}
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			s.Regions.MarkDown(region, addr)
			continue
		}
		return nil, fmt.Errorf("calling %s: %w", region, err)
	}
	return nil, fmt.Errorf("%w: %s", errRegionDown, region)
}

// relay copies a region's answer to the client: status, the headers that matter, the body,
// flushed as it comes for event streams.
func relay(c *gin.Context, resp *http.Response) {
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "Retry-After", "Cache-Control", "Location"} {
		if v := resp.Header.Get(h); v != "" {
			c.Header(h, v)
		}
	}
	c.Status(resp.StatusCode)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		_, _ = io.Copy(c.Writer, resp.Body)
		return
	}
	c.Writer.WriteHeaderNow()
	c.Writer.Flush()
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := c.Writer.Write(buf[:n]); werr != nil {
				return
			}
			c.Writer.Flush()
		}
		if err != nil {
			return
		}
	}
}

// forward sends the request as it came to the decided region and relays the answer.
func (s *Server) forward(c *gin.Context, d decision, body []byte) {
	// The query as read here (httpserver.Strict refused repeats), re-encoded; a client's
	// credential stays at the gateway.
	q := c.Request.URL.Query()
	q.Del("access_token")
	query := q.Encode()
	resp, err := s.call(c.Request.Context(), c, d.Region, c.Request.Method, c.Request.URL.Path, query, body)
	if err != nil {
		s.regionFailed(c, d.Region, err)
		return
	}
	relay(c, resp)
}

func (s *Server) regionFailed(c *gin.Context, region string, err error) {
	if timedOut(c) {
		s.Log.Warn("region call did not finish within the request's deadline", "region", region, "err", err, "request_id", reqID(c))
		unavailable(c, "deadline_exceeded", "region "+region+" did not answer within the gateway's deadline; retry")
		return
	}
	if c.Request.Context().Err() != nil {
		c.Abort() // the client went away
		return
	}
	s.Log.Warn("region call failed", "region", region, "err", err, "request_id", reqID(c))
	unavailable(c, "region_unavailable", "region "+region+" did not answer; retry")
}

// readBody reads a request body up to max bytes, answering 400 itself when it cannot.
func readBody(c *gin.Context, max int64) ([]byte, bool) {
	if c.Request.Body == nil {
		return nil, true
	}
	b, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, max))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			abort(c, http.StatusBadRequest, wire.CodePayloadTooLarge, fmt.Sprintf("the body is larger than %d bytes", max), "")
			return nil, false
		}
		abort(c, http.StatusBadRequest, wire.CodeMalformedJSON, "the body could not be read", "")
		return nil, false
	}
	return b, true
}

// decodeBody reads the body into dst with the one reading every part shares (package wire),
// answering the 400 itself when it is refused.
func decodeBody(c *gin.Context, max int64, dst any) bool {
	raw, ok := readBody(c, max)
	if !ok {
		return false
	}
	return valid(c, wire.Decode(raw, dst))
}

// valid answers a refused body (or a failed Validate) and reports whether there was none.
func valid(c *gin.Context, e *wire.Error) bool {
	if e == nil {
		return true
	}
	abort(c, http.StatusBadRequest, e.Code, e.Message, e.Field)
	return false
}

// noBody accepts an empty body or {} on a route that takes none.
func noBody(c *gin.Context) bool {
	raw, ok := readBody(c, wire.MaxSmallBytes)
	if !ok {
		return false
	}
	if len(raw) == 0 {
		return true
	}
	return valid(c, wire.Decode(raw, &wire.Empty{}))
}

// byPathUser serves every route whose path names the user: /v1/users/{user_id}/... It reads
// the route's body itself and forwards what it read, never the caller's bytes.
func (s *Server) byPathUser(c *gin.Context) {
	var body []byte
	switch c.Request.Method + " " + c.FullPath() {
	case "POST /v1/users/:user_id/devices":
		var d wire.Device
		if !decodeBody(c, wire.MaxSmallBytes, &d) || !valid(c, d.Validate()) {
			return
		}
		body = wire.Encode(&d)
	case "PUT /v1/users/:user_id/preferences":
		var p wire.Preferences
		if !decodeBody(c, wire.MaxSmallBytes, &p) || !valid(c, p.Validate()) {
			return
		}
		body = wire.Encode(&p)
	default:
		if !noBody(c) {
			return
		}
	}
	if t := c.Param("topic"); t != "" && !wire.ValidTopic(t) {
		abort(c, http.StatusBadRequest, wire.CodeInvalidField, "topic names must match "+wire.TopicRE.String()+" and not be . or ..", "topic")
		return
	}
	if ch := c.Param("channel"); c.FullPath() == "/v1/users/:user_id/suppressions/:channel" && ch != "email" && ch != "sms" {
		abort(c, http.StatusBadRequest, wire.CodeInvalidField, "suppression lists are per channel: email or sms", "channel")
		return
	}
	if d := c.Param("device_id"); d != "" && !wire.ValidID(d) {
		abort(c, http.StatusBadRequest, wire.CodeInvalidField, "device ids must match "+wire.IDPattern+" and not be . or ..", "device_id")
		return
	}
	d, ok := s.routeUser(c, c.Param("user_id"), "user_id")
	if !ok {
		return
	}
	s.forward(c, d, body)
}
