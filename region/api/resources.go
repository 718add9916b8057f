package api

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/templates"
	"github.com/herald-notify/herald/region/users"
)

// smallBodyBytes caps the bodies of the user and device endpoints.
const smallBodyBytes = 16 << 10

func (s *Server) failed(c *gin.Context, what string, err error) {
	s.Logger.Error(what, "err", err)
	unavailable(c, what+" failed; retry")
}

func (s *Server) putTemplate(c *gin.Context) {
	id := c.Param("id")
	if !wire.ValidID(id) {
		writeError(c, badRequest(CodeInvalidField, "id", "template ids must match "+idRE.String()+" and not be . or .."))
		return
	}
	var b wire.Template
	if e := decodeStrict(http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes), &b, MaxBodyBytes); e != nil {
		writeError(c, e)
		return
	}
	if e := b.Validate(); e != nil {
		writeError(c, fromWire(e))
		return
	}
	content := make(map[string]notify.Content, len(b.Content))
	for ch, ct := range b.Content {
		content[ch] = notify.Content(ct)
	}
	t := templates.Template{ID: id, Type: b.Type, Category: b.Category, Content: content, DefaultLocale: b.DefaultLocale}
	if len(b.Locales) > 0 {
		t.Locales = make(map[string]map[string]notify.Content, len(b.Locales))
		for loc, chans := range b.Locales {
			t.Locales[loc] = make(map[string]notify.Content, len(chans))
			for ch, ct := range chans {
				t.Locales[loc][ch] = notify.Content(ct)
			}
		}
	}
	var fe *templates.FieldError
	if err := templates.Check(t); errors.As(err, &fe) {
		writeError(c, badRequest(CodeInvalidTemplate, fe.Field, fe.Msg))
		return
	}
	saved, err := s.Templates.Put(c.Request.Context(), appOf(c), t)
	if err != nil {
		s.failed(c, "storing the template", err)
		return
	}
	code := http.StatusOK
	if saved.Version == 1 {
		code = http.StatusCreated
	}
	c.JSON(code, saved)
}

func (s *Server) getTemplate(c *gin.Context) {
	t, err := s.Templates.Get(c.Request.Context(), appOf(c), c.Param("id"))
	if errors.Is(err, templates.ErrNotFound) {
		notFound(c, "template")
		return
	}
	if err != nil {
		s.failed(c, "reading the template", err)
		return
	}
	c.JSON(http.StatusOK, t)
}

func (s *Server) deleteTemplate(c *gin.Context) {
	err := s.Templates.Delete(c.Request.Context(), appOf(c), c.Param("id"))
	if errors.Is(err, templates.ErrNotFound) {
		notFound(c, "template")
		return
	}
	if err != nil {
		s.failed(c, "deleting the template", err)
		return
	}
	c.Status(http.StatusNoContent)
}

func topicAndUser(c *gin.Context) (topic, user string, ok bool) {
	topic, user = c.Param("topic"), c.Param("user_id")
	if !wire.ValidTopic(topic) {
		writeError(c, badRequest(CodeInvalidField, "topic", "topic must match "+topicRE.String()+" and not be . or .."))
		return "", "", false
	}
	if user != "" && !wire.ValidID(user) {
		writeError(c, badRequest(CodeInvalidField, "user_id", "user ids must match "+idRE.String()+" and not be . or .."))
		return "", "", false
	}
	return topic, user, true
}

func (s *Server) topicInfo(c *gin.Context) {
	topic, _, ok := topicAndUser(c)
	if !ok {
		return
	}
	n, err := s.Topics.Count(c.Request.Context(), appOf(c), topic)
	if err != nil {
		s.failed(c, "counting subscribers", err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"topic": topic, "subscribers": n})
}

func (s *Server) subscribe(c *gin.Context) {
	topic, user, ok := topicAndUser(c)
	if !ok || !s.emptyBody(c) || !s.requireResidents(c, "user_id", []string{user}) {
		return
	}
	created, err := s.Topics.Subscribe(c.Request.Context(), appOf(c), topic, user)
	if err != nil {
		s.failed(c, "subscribing", err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
		s.inboxChanged(c, user) // open streams listen on the topic from now on
	}
	c.JSON(code, gin.H{"topic": topic, "user_id": user, "subscribed": true})
}

func (s *Server) unsubscribe(c *gin.Context) {
	topic, user, ok := topicAndUser(c)
	if !ok {
		return
	}
	removed, err := s.Topics.Unsubscribe(c.Request.Context(), appOf(c), topic, user)
	if err != nil {
		s.failed(c, "unsubscribing", err)
		return
	}
	if !removed {
		notFound(c, "subscription")
		return
	}
	s.inboxChanged(c, user) // open streams stop listening, and the topic's items leave the count
	c.Status(http.StatusNoContent)
}

func (s *Server) putUser(c *gin.Context) {
	user := c.Param("user_id")
	if !wire.ValidID(user) {
		writeError(c, badRequest(CodeInvalidField, "user_id", "user ids must match "+idRE.String()+" and not be . or .."))
		return
	}
	var b wire.User
	if e := decodeStrict(http.MaxBytesReader(c.Writer, c.Request.Body, smallBodyBytes), &b, smallBodyBytes); e != nil {
		writeError(c, e)
		return
	}
	if e := b.Validate(); e != nil {
		writeError(c, fromWire(e))
		return
	}
	if b.Jurisdiction == nil {
		writeError(c, badRequest(CodeMissingField, "jurisdiction", "a region registers users of its own jurisdiction only: jurisdiction is required"))
		return
	}
	if *b.Jurisdiction != s.Jurisdiction {
		s.refuseOutside(c, *b.Jurisdiction)
		return
	}
	stored, created, err := s.Users.Put(c.Request.Context(), appOf(c), user, users.Patch{Jurisdiction: s.Jurisdiction, Email: b.Email, Phone: b.Phone, Locale: b.Locale})
	if err != nil {
		s.failed(c, "storing the user", err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	c.JSON(code, gin.H{"user_id": user, "email": stored.Email, "phone": stored.Phone, "locale": stored.Locale})
}

func (s *Server) getUser(c *gin.Context) {
	u, err := s.Users.Get(c.Request.Context(), appOf(c), c.Param("user_id"))
	if errors.Is(err, users.ErrNotFound) {
		notFound(c, "user")
		return
	}
	if err != nil {
		s.failed(c, "reading the user", err)
		return
	}
	c.JSON(http.StatusOK, u)
}

func (s *Server) registerDevice(c *gin.Context) {
	user := c.Param("user_id")
	if !wire.ValidID(user) {
		writeError(c, badRequest(CodeInvalidField, "user_id", "user ids must match "+idRE.String()+" and not be . or .."))
		return
	}
	var b wire.Device
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
	d := notify.Device{DeviceID: b.DeviceID, Platform: b.Platform, Token: b.Token}
	if err := s.Devices.Register(c.Request.Context(), appOf(c), user, d); err != nil {
		s.failed(c, "registering the device", err)
		return
	}
	c.JSON(http.StatusCreated, gin.H{"user_id": user, "device_id": d.DeviceID, "platform": d.Platform})
}

func (s *Server) listDevices(c *gin.Context) {
	list, err := s.Devices.Active(c.Request.Context(), appOf(c), c.Param("user_id"))
	if err != nil {
		s.failed(c, "reading devices", err)
		return
	}
	if list == nil {
		list = []notify.Device{}
	}
	c.JSON(http.StatusOK, gin.H{"devices": list})
}
