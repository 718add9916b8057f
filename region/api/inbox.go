package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gocql/gocql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/inbox"
	"github.com/herald-notify/herald/region/notify"
)

// Inbox limits.
const (
	defaultPage   = 20
	maxPage       = 100
	maxReadAll    = 10_000
	maxUnreadSeen = 1_000
)

func userParam(c *gin.Context) (string, bool) {
	u := c.Param("user_id")
	if !wire.ValidID(u) {
		writeError(c, badRequest(CodeInvalidField, "user_id", "user ids must match "+idRE.String()+" and not be . or .."))
		return "", false
	}
	return u, true
}

func (s *Server) subscriptions(c *gin.Context, user string) ([]inbox.Subscription, error) {
	return s.userSubscriptions(c.Request.Context(), appOf(c), user)
}

// userSubscriptions lists the user's topics, whose feeds its inbox merges.
func (s *Server) userSubscriptions(ctx context.Context, app, user string) ([]inbox.Subscription, error) {
	subs, err := s.Topics.Of(ctx, app, user)
	if err != nil {
		return nil, err
	}
	out := make([]inbox.Subscription, len(subs))
	for i, sub := range subs {
		out[i] = inbox.Subscription{Topic: sub.Topic, Since: sub.Since}
	}
	return out, nil
}

// listInbox serves GET /v1/users/{user_id}/notifications.
func (s *Server) listInbox(c *gin.Context) {
	user, ok := userParam(c)
	if !ok {
		return
	}
	limit := defaultPage
	if raw := c.Query("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > maxPage {
			writeError(c, badRequest(CodeInvalidField, "limit", "limit must be 1-100"))
			return
		}
		limit = n
	}
	unread := false
	if raw := c.Query("unread_only"); raw != "" {
		b, err := strconv.ParseBool(raw)
		if err != nil {
			writeError(c, badRequest(CodeInvalidField, "unread_only", "unread_only must be true or false"))
			return
		}
		unread = b
	}
	rawCursor, given := c.GetQuery("cursor")
	cur, err := inbox.DecodeCursor(rawCursor)
	if err == nil && given && cur == nil {
		err = inbox.ErrBadCursor // an empty cursor: leave it out for the first page
	}
	if err != nil {
		writeError(c, badRequest(CodeInvalidField, "cursor", "cursor is not one this API returned"))
		return
	}
	subs, err := s.subscriptions(c, user)
	if err != nil {
		s.failed(c, "reading subscriptions", err)
		return
	}
	items, next, err := s.Inbox.Page(c.Request.Context(), appOf(c), user, subs, cur, limit, unread, s.Now())
	if err != nil {
		s.failed(c, "reading the inbox", err)
		return
	}
	if items == nil {
		items = []inbox.Item{}
	}
	body := gin.H{"items": items, "next_cursor": nil}
	if next != "" {
		body["next_cursor"] = next
	}
	c.JSON(http.StatusOK, body)
}

// unreadCount serves GET /v1/users/{user_id}/notifications/unread-count. It counts up to 1,000
// and says so when there are more.
func (s *Server) unreadCount(c *gin.Context) {
	user, ok := userParam(c)
	if !ok {
		return
	}
	subs, err := s.subscriptions(c, user)
	if err != nil {
		s.failed(c, "reading subscriptions", err)
		return
	}
	n, more, _, err := s.countUnread(c.Request.Context(), appOf(c), user, subs)
	if err != nil {
		s.failed(c, "counting unread items", err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"user_id": user, "unread_count": n, "more": more})
}

// decodeUserRef reads {"user_id": ...}; the user must be a resident here, since marking read
// stores state about them.
func (s *Server) decodeUserRef(c *gin.Context) (string, bool) {
	var b wire.UserRef
	if e := decodeStrict(http.MaxBytesReader(c.Writer, c.Request.Body, smallBodyBytes), &b, smallBodyBytes); e != nil {
		writeError(c, e)
		return "", false
	}
	if e := b.Validate(); e != nil {
		writeError(c, fromWire(e))
		return "", false
	}
	if !s.requireResidents(c, "user_id", []string{b.UserID}) {
		return "", false
	}
	return b.UserID, true
}

// markRead serves PATCH /v1/notifications/{id}/read with {"user_id": ...}: the item must be in
// that user's inbox.
func (s *Server) markRead(c *gin.Context) {
	ctx := c.Request.Context()
	user, ok := s.decodeUserRef(c)
	if !ok {
		return
	}
	n, ok := s.notification(c)
	if !ok {
		return
	}
	id := n.ID
	it := inbox.Item{NotificationID: id, CreatedAt: n.AcceptedAt}
	if n.Topic != "" {
		// A topic-feed item is the user's only if the user subscribed before it was sent.
		subs, err := s.subscriptions(c, user)
		if err != nil {
			s.failed(c, "reading subscriptions", err)
			return
		}
		for _, sub := range subs {
			if sub.Topic != n.Topic || n.AcceptedAt.Before(sub.Since.Truncate(time.Millisecond)) {
				continue
			}
			feed, err := s.Inbox.FeedItem(ctx, appOf(c), n.Topic, n.AcceptedAt, id)
			switch {
			case err == nil:
				it = feed
			case !errors.Is(err, gocql.ErrNotFound):
				s.failed(c, "reading the topic feed", err)
				return
			}
		}
	}
	found, err := s.Inbox.MarkRead(ctx, appOf(c), user, it, s.Now())
	if err != nil {
		s.failed(c, "marking read", err)
		return
	}
	if !found {
		notFound(c, "inbox item")
		return
	}
	s.readEvents(c, user, []readItem{{id: id, app: appOf(c), tier: n.Tier, category: n.Category, created: n.AcceptedAt}})
	s.inboxChanged(c, user)
	c.JSON(http.StatusOK, gin.H{"notification_id": id, "user_id": user, "read": true})
}

// readAll serves POST /v1/notifications/read-all with {"user_id": ...}.
func (s *Server) readAll(c *gin.Context) {
	ctx := c.Request.Context()
	user, ok := s.decodeUserRef(c)
	if !ok {
		return
	}
	subs, err := s.subscriptions(c, user)
	if err != nil {
		s.failed(c, "reading subscriptions", err)
		return
	}
	now := s.Now()
	marked := 0
	var read []readItem
	for marked < maxReadAll {
		// Always the first unread page: marking moves items out of it.
		items, _, err := s.Inbox.Page(ctx, appOf(c), user, subs, nil, maxPage, true, now.Add(time.Second))
		if err != nil {
			s.failed(c, "reading the inbox", err)
			return
		}
		if len(items) == 0 {
			break
		}
		progressed := false
		for _, it := range items {
			if marked >= maxReadAll {
				break
			}
			done, err := s.Inbox.MarkRead(ctx, appOf(c), user, it, now)
			if err != nil {
				s.failed(c, "marking read", err)
				return
			}
			if done {
				marked++
				progressed = true
				read = append(read, readItem{id: it.NotificationID, app: appOf(c), tier: it.Tier, category: it.Category, created: it.CreatedAt})
			}
		}
		if !progressed {
			break
		}
	}
	s.readEvents(c, user, read)
	if marked > 0 {
		s.inboxChanged(c, user)
	}
	c.JSON(http.StatusOK, gin.H{"user_id": user, "marked": marked})
}

// inboxChanged tells the user's open streams, wherever they are, to send the unread count
// again. The read is stored already, so a failure only leaves the streams' count stale until
// their next item: logged, not failed.
func (s *Server) inboxChanged(c *gin.Context, user string) {
	if s.Streams == nil {
		return
	}
	if err := s.Streams.Changed(c.Request.Context(), appOf(c), user); err != nil {
		s.Logger.Warn("announcing reads to open streams", "err", err)
	}
}

// readItem is one inbox item a call marked read.
type readItem struct {
	id, app, tier, category string
	created                 time.Time
}

var readEventsLost = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "herald_api_read_events_unrecorded_total",
	Help: "Inbox reads whose delivery-events record could not be produced (analytics undercounts them).",
}, []string{"region"})

// readEvents produces the call's delivery events (stage read, channel in_app): one record per
// notification, all in one produce request. The read itself is already stored, so a Kafka
// failure does not fail the call: it is logged and counted, and analytics misses those reads.
func (s *Server) readEvents(c *gin.Context, user string, items []readItem) {
	if s.Producer == nil || len(items) == 0 {
		return
	}
	at := s.Now()
	msgs := make([]kafka.Message, 0, len(items))
	for _, it := range items {
		b := notify.EventBatch{App: it.app, Tier: it.tier, Category: it.category, NotificationID: it.id, DueAt: it.created, At: at,
			Outcomes: []notify.Outcome{{User: user, Channel: notify.InApp, Stage: notify.StageRead}}}
		m, ok, err := b.Message(c.Request.Context(), s.Keys, s.Region)
		if err != nil {
			s.Logger.Error("encoding read events", "err", err)
			return
		}
		if ok { // not when the reader was erased
			msgs = append(msgs, m)
		}
	}
	if err := s.Producer.Send(c.Request.Context(), msgs...); err != nil {
		readEventsLost.WithLabelValues(s.Region).Add(float64(len(items)))
		s.Logger.Warn("producing read events failed; analytics will miss these reads", "reads", len(items), "err", err)
	}
}
