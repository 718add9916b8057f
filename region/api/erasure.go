package api

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/region/erasure"
)

// eraseUser serves DELETE /v1/users/{user_id}: sends stop at once, the user's rows are erased
// from every regional store in the background, and the receipt tracks it.
func (s *Server) eraseUser(c *gin.Context) {
	user, ok := userParam(c)
	if !ok {
		return
	}
	e, err := s.Erasure.Request(c.Request.Context(), appOf(c), user)
	if err != nil {
		s.failed(c, "recording the erasure", err)
		return
	}
	c.JSON(http.StatusAccepted, e)
}

func (s *Server) getErasure(c *gin.Context) {
	e, err := s.Erasure.Get(c.Request.Context(), appOf(c), c.Param("id"))
	if errors.Is(err, erasure.ErrNotFound) {
		notFound(c, "erasure")
		return
	}
	if err != nil {
		s.failed(c, "reading the erasure", err)
		return
	}
	c.JSON(http.StatusOK, e)
}
