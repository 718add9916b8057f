package gateway

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/platform/wire"
)

func (s *Server) putTemplate(c *gin.Context) {
	if !wire.ValidID(c.Param("id")) {
		abort(c, http.StatusBadRequest, wire.CodeInvalidField, "template ids must match "+wire.IDPattern+" and not be . or ..", "id")
		return
	}
	var t wire.Template
	if !decodeBody(c, wire.MaxSendBytes, &t) || !valid(c, t.Validate()) {
		return
	}
	// The regions (and the stored copy the reconciler replays) get what was read, not the bytes.
	s.Templates.change(c, wire.Encode(&t))
}

func (s *Server) deleteTemplate(c *gin.Context) { s.Templates.change(c, nil) }

// getTemplate reads the template from a region that holds its latest version.
func (s *Server) getTemplate(c *gin.Context) { s.Templates.get(c, s) }
