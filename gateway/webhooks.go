package gateway

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/gateway/directory"
	"github.com/herald-notify/herald/platform/wire"
)

// webhooksPrefix is where an app manages the webhook endpoints it registered in one
// jurisdiction: /v1/jurisdictions/{jurisdiction}/webhooks/... An endpoint belongs to a
// jurisdiction (it receives the events of that jurisdiction's users, sent from their home
// regions), so its routes name it; the gateway forwards them to the jurisdiction's first healthy
// region as /v1/webhooks/..., which stores the endpoint in the database every region of the
// jurisdiction shares.
const webhooksPrefix = "/v1/jurisdictions/:jurisdiction/webhooks"

// credentialsPrefix is where an app manages its own provider credentials in one jurisdiction
// (APNs key, FCM service account, SMTP login, Twilio account): the jurisdiction's regions send
// its messages with them. Forwarded like the webhook routes, as /v1/credentials/...
const credentialsPrefix = "/v1/jurisdictions/:jurisdiction/credentials"

func (s *Server) mountWebhooks(v1 *gin.RouterGroup) {
	g := v1.Group(strings.TrimPrefix(webhooksPrefix, "/v1"))
	g.POST("/endpoints", s.byJurisdiction)
	g.GET("/endpoints", s.byJurisdiction)
	g.GET("/endpoints/:endpoint_id", s.byJurisdiction)
	g.POST("/endpoints/:endpoint_id/rotate-secret", s.byJurisdiction)
	g.POST("/endpoints/:endpoint_id/disable", s.byJurisdiction)
	g.POST("/endpoints/:endpoint_id/enable", s.byJurisdiction)
	g.GET("/endpoints/:endpoint_id/dead-letters", s.byJurisdiction)
	g.POST("/endpoints/:endpoint_id/replay", s.byJurisdiction)
	cg := v1.Group(strings.TrimPrefix(credentialsPrefix, "/v1"))
	cg.GET("", s.byJurisdiction)
	cg.PUT("/:kind", s.byJurisdiction)
	cg.GET("/:kind", s.byJurisdiction)
	cg.DELETE("/:kind", s.byJurisdiction)
}

// byJurisdiction serves the webhook and credential routes: it reads the route's body itself (forwarding what it
// read, never the caller's bytes), routes to the jurisdiction's first healthy region (never a
// region of another jurisdiction; a jurisdiction that forbids transit through this gateway is
// redirected to its own, as user routes are, since dead letters name users) and relays the answer.
func (s *Server) byJurisdiction(c *gin.Context) {
	var body []byte
	switch c.Request.Method + " " + c.FullPath() {
	case "POST " + webhooksPrefix + "/endpoints":
		var e wire.WebhookEndpoint
		if !decodeBody(c, wire.MaxSmallBytes, &e) || !valid(c, e.Validate()) {
			return
		}
		body = wire.Encode(&e)
	case "POST " + webhooksPrefix + "/endpoints/:endpoint_id/replay":
		raw, ok := readBody(c, wire.MaxSendBytes)
		if !ok {
			return
		}
		var r wire.WebhookReplay
		if len(raw) > 0 && !valid(c, wire.Decode(raw, &r)) {
			return
		}
		if !valid(c, r.Validate()) {
			return
		}
		body = wire.Encode(&r)
	case "POST " + webhooksPrefix + "/endpoints/:endpoint_id/rotate-secret":
		raw, ok := readBody(c, wire.MaxSmallBytes)
		if !ok {
			return
		}
		var r wire.WebhookRotate // left out: the default overlap, which the region applies
		if len(raw) > 0 && !valid(c, wire.Decode(raw, &r)) {
			return
		}
		if !valid(c, r.Validate()) {
			return
		}
		body = wire.Encode(&r)
	case "PUT " + credentialsPrefix + "/:kind":
		raw, ok := readBody(c, wire.MaxSmallBytes)
		if !ok {
			return
		}
		cred, e := wire.DecodeCredential(c.Param("kind"), raw)
		if !valid(c, e) {
			return
		}
		body = wire.Encode(cred.Body())
	default:
		if !noBody(c) {
			return
		}
	}
	if kind, ok := c.Params.Get("kind"); ok && !wire.ValidCredentialKind(kind) {
		abort(c, http.StatusBadRequest, wire.CodeInvalidField, "kind must be one of "+strings.Join(wire.CredentialKinds, ", "), "kind")
		return
	}
	if id := c.Param("endpoint_id"); id != "" && !wire.ValidID(id) {
		abort(c, http.StatusBadRequest, wire.CodeInvalidField, "endpoint ids must match "+wire.IDPattern+" and not be . or ..", "endpoint_id")
		return
	}
	p := s.Policy.Current()
	if p == nil {
		unavailable(c, "no_policy", "the gateway has no residency policy loaded yet")
		return
	}
	j := c.Param("jurisdiction")
	regions := p.Regions(j)
	if !wire.ValidJurisdiction(j) || len(regions) == 0 {
		abort(c, http.StatusNotFound, "unknown_jurisdiction", fmt.Sprintf("the residency policy has no jurisdiction %q (GET /v1/regions lists them)", j), "jurisdiction")
		return
	}
	d := s.decide(p, directory.Entry{Jurisdiction: j, HomeRegion: regions[0]})
	switch d.Reason {
	case reasonRedirect:
		c.Header("Location", strings.TrimRight(d.RedirectTo, "/")+c.Request.URL.RequestURI())
		abort(c, http.StatusTemporaryRedirect, "redirect_jurisdiction", fmt.Sprintf("%s does not allow its requests to transit other jurisdictions' gateways; use %s", j, d.RedirectTo), "")
		return
	case reasonRefused:
		unavailable(c, "region_unavailable", fmt.Sprintf("no region of %s is healthy; the request was not sent anywhere else", j))
		return
	}
	path := "/v1" + strings.TrimPrefix(c.Request.URL.Path, "/v1/jurisdictions/"+j)
	resp, err := s.call(c.Request.Context(), c, d.Region, c.Request.Method, path, c.Request.URL.Query().Encode(), body)
	if err != nil {
		s.regionFailed(c, d.Region, err)
		return
	}
	relay(c, resp)
}
