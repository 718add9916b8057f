package api

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/herald-notify/herald/region/unsubscribe"
)

var unsubscribes = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "herald_unsubscribes_total",
	Help: "One-click unsubscribes applied (a category turned off on a channel for a user), by whether they changed the preferences.",
}, []string{"region", "changed"})

// Unsubscribed is the answer to an unsubscribe link: what it turns off, and whether it is off.
type Unsubscribed struct {
	Category     string `json:"category"`
	Channel      string `json:"channel"`
	Unsubscribed bool   `json:"unsubscribed"`
}

// unsubscribeClaim opens the link's token (minted by this region only) and checks that its
// user is still a resident: anything else is 404, the same for a forged token, another
// region's, and an erased user's, so the answer tells a guesser nothing.
func (s *Server) unsubscribeClaim(c *gin.Context) (unsubscribe.Claim, bool) {
	if s.Unsubscribe == nil {
		notFound(c, "unsubscribe link")
		return unsubscribe.Claim{}, false
	}
	claim, err := s.Unsubscribe.Open(c.Param("token"))
	if err != nil {
		notFound(c, "unsubscribe link")
		return unsubscribe.Claim{}, false
	}
	missing, err := s.Users.NotResident(c.Request.Context(), claim.App, s.Jurisdiction, []string{claim.User})
	if err != nil {
		s.failed(c, "checking residency", err)
		return unsubscribe.Claim{}, false
	}
	if len(missing) > 0 {
		notFound(c, "unsubscribe link")
		return unsubscribe.Claim{}, false
	}
	return claim, true
}

// unsubscribeInfo serves GET /v1/unsubscribe/{token}: what the link turns off and whether it
// is off already. It changes nothing: mail scanners fetch links.
func (s *Server) unsubscribeInfo(c *gin.Context) {
	claim, ok := s.unsubscribeClaim(c)
	if !ok {
		return
	}
	p, err := s.Prefs.Get(c.Request.Context(), claim.App, claim.User)
	if err != nil {
		s.failed(c, "reading preferences", err)
		return
	}
	on, set := p.Categories[claim.Category][claim.Channel]
	c.JSON(http.StatusOK, Unsubscribed{Category: claim.Category, Channel: claim.Channel, Unsubscribed: set && !on})
}

// oneClickUnsubscribe serves POST /v1/unsubscribe/{token} (RFC 8058 one-click, forwarded by
// the gateway without a body): the link's category is turned off on its channel for the user,
// at once (the preference caches are told), and answering it again changes nothing.
func (s *Server) oneClickUnsubscribe(c *gin.Context) {
	if !s.emptyBody(c) {
		return
	}
	claim, ok := s.unsubscribeClaim(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	changed, err := s.Prefs.TurnOff(ctx, claim.App, claim.User, claim.Category, claim.Channel)
	if err != nil {
		s.failed(c, "unsubscribing", err)
		return
	}
	if s.PrefsCache != nil {
		if err := s.PrefsCache.Invalidate(ctx, claim.App, claim.User); err != nil {
			s.failed(c, "unsubscribing", errors.Join(errors.New("the preference caches were not told"), err))
			return
		}
	}
	label := "false"
	if changed {
		label = "true"
	}
	unsubscribes.WithLabelValues(s.Region, label).Inc()
	c.JSON(http.StatusOK, Unsubscribed{Category: claim.Category, Channel: claim.Channel, Unsubscribed: true})
}
