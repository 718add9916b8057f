package api

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/suppress"
)

// listSuppressions answers the user's suppressed addresses: the user's current email address
// and phone number when they are on the app's suppression list, and the addresses suppressed
// while they were the user's.
func (s *Server) listSuppressions(c *gin.Context) {
	user, ok := userParam(c)
	if !ok {
		return
	}
	list, err := s.Suppressions.ForUser(c.Request.Context(), appOf(c), user)
	if err != nil {
		s.failed(c, "reading suppressions", err)
		return
	}
	if list == nil {
		list = []suppress.Entry{}
	}
	c.JSON(http.StatusOK, gin.H{"suppressions": list})
}

// removeSuppression takes the user's suppressed addresses of a channel off the list: the next
// send to them is attempted (and suppressed again if it bounces again).
func (s *Server) removeSuppression(c *gin.Context) {
	user, ok := userParam(c)
	if !ok {
		return
	}
	ch := c.Param("channel")
	if ch != notify.Email && ch != notify.SMS {
		writeError(c, badRequest(CodeInvalidField, "channel", "suppression lists are per channel: email or sms"))
		return
	}
	n, err := s.Suppressions.Remove(c.Request.Context(), appOf(c), user, ch)
	if err != nil {
		s.failed(c, "removing suppressions", err)
		return
	}
	if n == 0 {
		notFound(c, "suppression")
		return
	}
	c.Status(http.StatusNoContent)
}
