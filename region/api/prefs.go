package api

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/prefs"
)

func (s *Server) getPrefs(c *gin.Context) {
	user, ok := userParam(c)
	if !ok {
		return
	}
	p, err := s.Prefs.Get(c.Request.Context(), appOf(c), user)
	if err != nil {
		s.failed(c, "reading preferences", err)
		return
	}
	c.JSON(http.StatusOK, p)
}

// putPrefs replaces a user's preferences; fields left out take their defaults.
func (s *Server) putPrefs(c *gin.Context) {
	user, ok := userParam(c)
	if !ok {
		return
	}
	var b wire.Preferences
	if e := decodeStrict(http.MaxBytesReader(c.Writer, c.Request.Body, smallBodyBytes), &b, smallBodyBytes); e != nil {
		writeError(c, e)
		return
	}
	if e := b.Validate(); e != nil {
		writeError(c, fromWire(e))
		return
	}
	if !s.requireResidents(c, "user_id", []string{user}) {
		return
	}
	p := prefs.Preferences{Channels: b.Channels, Categories: b.Categories, Timezone: b.Timezone, ChannelOrder: b.ChannelOrder, HardStop: b.HardStop}
	if b.QuietHours != nil {
		p.QuietHours = &prefs.QuietHours{Start: b.QuietHours.Start, End: b.QuietHours.End}
	}
	var fe *prefs.FieldError
	if err := p.Validate(); errors.As(err, &fe) {
		writeError(c, badRequest(CodeInvalidField, fe.Field, fe.Msg))
		return
	}
	if err := s.Prefs.Put(c.Request.Context(), appOf(c), user, p); err != nil {
		s.failed(c, "storing preferences", err)
		return
	}
	// Write-invalidate: every cache drops the old preferences before this answer goes out.
	if s.PrefsCache != nil {
		if err := s.PrefsCache.Invalidate(c.Request.Context(), appOf(c), user); err != nil {
			s.failed(c, "evicting cached preferences (the new ones are stored; retry to make sure every cache drops the old)", err)
			return
		}
	}
	c.JSON(http.StatusOK, p)
}

func (s *Server) removeDevice(c *gin.Context) {
	user, ok := userParam(c)
	if !ok {
		return
	}
	removed, err := s.Devices.Remove(c.Request.Context(), appOf(c), user, c.Param("device_id"))
	if err != nil {
		s.failed(c, "removing the device", err)
		return
	}
	if !removed {
		notFound(c, "device")
		return
	}
	c.Status(http.StatusNoContent)
}
