package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/herald-notify/herald/region/audit"
)

// A region enforces its own jurisdiction whatever its caller sent: it stores nothing for a user
// who is not registered here as a resident of the region's jurisdiction (users.jurisdiction),
// and says so in its metrics and its audit chain. The gateway routes each user to their home;
// this is the check that holds when the gateway, or whoever reached the region, did not.

var residencyRefusals = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "herald_region_residency_refusals_total",
	Help: "Requests a region refused because they named a user who is not a registered resident of its jurisdiction, by route.",
}, []string{"region", "route"})

// unnamedUserKey stands for the user in a refusal's audit entry: the region holds no key to name
// a user it does not serve, and does not keep the id.
var unnamedUserKey = strings.Repeat("0", 64)

// requireResidents answers 403 not_resident (and returns false) unless every user in ids is a
// registered resident of the region's jurisdiction. field names the list ("recipients") or the
// single id ("user_id").
func (s *Server) requireResidents(c *gin.Context, field string, ids []string) bool {
	missing, err := s.Users.NotResident(c.Request.Context(), appOf(c), s.Jurisdiction, ids)
	if err != nil {
		s.failed(c, "checking residency", err)
		return false
	}
	if len(missing) == 0 {
		return true
	}
	route := c.FullPath()
	residencyRefusals.WithLabelValues(s.Region, route).Inc()
	s.auditRefusal(c)
	f := field
	if len(ids) > 1 || field == "recipients" {
		f = fmt.Sprintf("%s[%d]", field, missing[0])
	}
	writeError(c, &Error{Status: http.StatusForbidden, Code: CodeNotResident, Field: f,
		Message: fmt.Sprintf("%d of the users named are not registered in %s (%s); nothing was stored", len(missing), s.Jurisdiction, s.Region)})
	return false
}

// refuseOutside answers a registration for another jurisdiction.
func (s *Server) refuseOutside(c *gin.Context, jurisdiction string) {
	residencyRefusals.WithLabelValues(s.Region, c.FullPath()).Inc()
	s.auditRefusal(c)
	writeError(c, &Error{Status: http.StatusForbidden, Code: CodeNotResident, Field: "jurisdiction",
		Message: fmt.Sprintf("region %s serves %s only, not %s; nothing was stored", s.Region, s.Jurisdiction, jurisdiction)})
}

// auditRefusal appends the refusal to the region's audit chain, naming the app and the request
// but no user.
func (s *Server) auditRefusal(c *gin.Context) {
	if s.Audit == nil {
		return
	}
	rid := c.GetHeader("X-Request-Id")
	if rid == "" || len(rid) > 128 || strings.ContainsAny(rid, " \t\r\n") {
		rid = uuid.NewString()
	}
	e := audit.Entry{ID: uuid.NewString(), At: s.Now().UTC(), App: appOf(c), UserKey: unnamedUserKey, Jurisdiction: s.Jurisdiction,
		Region: s.Region, Reason: audit.ReasonRefusedNotResident, RequestID: rid}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request.Context()), 5*time.Second)
	defer cancel()
	if _, err := s.Audit.Append(ctx, []audit.Entry{e}); err != nil {
		s.Logger.Error("auditing a residency refusal", "err", err, "request_id", rid)
	}
}
