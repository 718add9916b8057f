package api

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gocql/gocql"
	"github.com/google/uuid"

	"github.com/herald-notify/herald/region/deliverylog"
	"github.com/herald-notify/herald/region/inbox"
	"github.com/herald-notify/herald/region/pushstore"
)

// getInboxItem serves GET /v1/users/{user_id}/notifications/{notification_id}: one item of the user's inbox,
// as the list shows it. It is what an app's Notification Service Extension (iOS) or messaging
// service (Android) calls with a user token when a content-free push (push_content: minimal)
// brings only the notification id. An item of a topic feed is the user's only if the user
// subscribed before it was sent; anything else, and an id of another app, is 404.
func (s *Server) getInboxItem(c *gin.Context) {
	user, ok := userParam(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	id := c.Param("notification_id")
	if _, err := uuid.Parse(id); err != nil || id != strings.ToLower(id) {
		notFound(c, "inbox item")
		return
	}
	n, err := s.Deliveries.Get(ctx, id)
	if errors.Is(err, deliverylog.ErrNotFound) || (err == nil && n.AppID != appOf(c)) {
		notFound(c, "inbox item")
		return
	}
	if err != nil {
		s.failed(c, "reading the notification", err)
		return
	}
	var it inbox.Item
	it, err = s.Inbox.Own(ctx, appOf(c), user, n.AcceptedAt, n.ID)
	if errors.Is(err, gocql.ErrNotFound) && n.Topic != "" {
		it, err = s.feedItemOf(c, user, n.Topic, n.AcceptedAt, n.ID)
	}
	if errors.Is(err, gocql.ErrNotFound) && s.PushContent != nil {
		// No inbox item: a content-free push of a push-only send (or one whose in-app delivery
		// the preferences turned off) left its content in the push content store.
		pc, perr := s.PushContent.Get(ctx, appOf(c), user, n.ID)
		switch {
		case perr == nil:
			c.JSON(http.StatusOK, pc)
			return
		case !errors.Is(perr, pushstore.ErrNotFound):
			err = perr
		}
	}
	switch {
	case errors.Is(err, gocql.ErrNotFound):
		notFound(c, "inbox item")
		return
	case err != nil:
		s.failed(c, "reading the inbox item", err)
		return
	}
	c.JSON(http.StatusOK, it)
}

// feedItemOf returns the topic feed item if the user subscribed to topic before it was sent,
// gocql.ErrNotFound otherwise.
func (s *Server) feedItemOf(c *gin.Context, user, topic string, acceptedAt time.Time, id string) (inbox.Item, error) {
	subs, err := s.subscriptions(c, user)
	if err != nil {
		return inbox.Item{}, err
	}
	for _, sub := range subs {
		if sub.Topic == topic && !acceptedAt.Before(sub.Since.Truncate(time.Millisecond)) {
			return s.Inbox.FeedItem(c.Request.Context(), appOf(c), topic, acceptedAt, id)
		}
	}
	return inbox.Item{}, gocql.ErrNotFound
}
