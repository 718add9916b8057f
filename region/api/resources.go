package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"regexp"
	"slices"

	"github.com/gin-gonic/gin"

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

// templateBody is the body of PUT /v1/templates/{id}.
type templateBody struct {
	Type     string                    `json:"type"`
	Category string                    `json:"category"`
	Content  map[string]notify.Content `json:"content"`
}

func (s *Server) putTemplate(c *gin.Context) {
	id := c.Param("id")
	if !idRE.MatchString(id) {
		writeError(c, badRequest(CodeInvalidField, "id", "template ids must match "+idRE.String()))
		return
	}
	var b templateBody
	if e := decodeStrict(http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes), &b, MaxBodyBytes); e != nil {
		writeError(c, e)
		return
	}
	if !slices.Contains(notify.Tiers, b.Type) {
		writeError(c, badRequest(CodeInvalidType, "type", fmt.Sprintf("unknown type %q (transactional, social or marketing)", b.Type)))
		return
	}
	if !categoryRE.MatchString(b.Category) {
		writeError(c, badRequest(CodeInvalidField, "category", "category must match "+categoryRE.String()))
		return
	}
	t := templates.Template{ID: id, Type: b.Type, Category: b.Category, Content: b.Content}
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
	if !topicRE.MatchString(topic) {
		writeError(c, badRequest(CodeInvalidField, "topic", "topic must match "+topicRE.String()))
		return "", "", false
	}
	if user != "" && !idRE.MatchString(user) {
		writeError(c, badRequest(CodeInvalidField, "user_id", "user ids must match "+idRE.String()))
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
	if !ok {
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

var phoneRE = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// userBody is the body of PUT /v1/users/{user_id}: the contact points the region delivers to.
type userBody struct {
	Email  string `json:"email"`
	Phone  string `json:"phone"`
	Locale string `json:"locale"`
}

func (s *Server) putUser(c *gin.Context) {
	user := c.Param("user_id")
	if !idRE.MatchString(user) {
		writeError(c, badRequest(CodeInvalidField, "user_id", "user ids must match "+idRE.String()))
		return
	}
	var b userBody
	if e := decodeStrict(http.MaxBytesReader(c.Writer, c.Request.Body, smallBodyBytes), &b, smallBodyBytes); e != nil {
		writeError(c, e)
		return
	}
	if b.Email != "" {
		if a, err := mail.ParseAddress(b.Email); err != nil || a.Address != b.Email {
			writeError(c, badRequest(CodeInvalidField, "email", "email must be a plain address like ada@example.com"))
			return
		}
	}
	if b.Phone != "" && !phoneRE.MatchString(b.Phone) {
		writeError(c, badRequest(CodeInvalidField, "phone", "phone must be E.164, like +4915112345678"))
		return
	}
	if len(b.Locale) > 35 {
		writeError(c, badRequest(CodeInvalidField, "locale", "locale must be a BCP 47 tag"))
		return
	}
	created, err := s.Users.Put(c.Request.Context(), appOf(c), users.Contact{UserID: user, Email: b.Email, Phone: b.Phone, Locale: b.Locale})
	if err != nil {
		s.failed(c, "storing the user", err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	c.JSON(code, gin.H{"user_id": user, "email": b.Email, "phone": b.Phone, "locale": b.Locale})
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

var (
	apnsTokenRE = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	fcmTokenRE  = regexp.MustCompile(`^[A-Za-z0-9_:.-]{20,}$`)
)

// deviceBody is the body of POST /v1/users/{user_id}/devices.
type deviceBody struct {
	Platform string `json:"platform"`
	Token    string `json:"token"`
	DeviceID string `json:"device_id"`
}

func (s *Server) registerDevice(c *gin.Context) {
	user := c.Param("user_id")
	if !idRE.MatchString(user) {
		writeError(c, badRequest(CodeInvalidField, "user_id", "user ids must match "+idRE.String()))
		return
	}
	var b deviceBody
	if e := decodeStrict(http.MaxBytesReader(c.Writer, c.Request.Body, smallBodyBytes), &b, smallBodyBytes); e != nil {
		writeError(c, e)
		return
	}
	switch b.Platform {
	case "ios":
		if !apnsTokenRE.MatchString(b.Token) {
			writeError(c, badRequest(CodeInvalidField, "token", "an APNs device token is 64 hexadecimal characters"))
			return
		}
	case "android", "web":
		if !fcmTokenRE.MatchString(b.Token) || len(b.Token) > 4096 {
			writeError(c, badRequest(CodeInvalidField, "token", "an FCM registration token is 20-4096 characters of [A-Za-z0-9_:.-]"))
			return
		}
	default:
		writeError(c, badRequest(CodeInvalidField, "platform", `platform must be "ios", "android" or "web"`))
		return
	}
	if !idRE.MatchString(b.DeviceID) {
		writeError(c, badRequest(CodeInvalidField, "device_id", "device_id must match "+idRE.String()))
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
