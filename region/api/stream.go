package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/region/inbox"
)

// heartbeat keeps idle streams (and the proxies in front of them) from timing out.
var heartbeat = 15 * time.Second

// unreadEvery bounds how often a stream recounts the unread items: a burst of new items costs
// one count, not one per item.
var unreadEvery = time.Second

// stream serves GET /v1/users/{user_id}/notifications/stream: Server-Sent Events, one
// "notification" event per new inbox item, each with an id that a client reconnecting sends
// back as Last-Event-ID to get exactly what it missed, and an "unread_count" event (no id) when
// the stream opens and after new items, at most once per unreadEvery.
func (s *Server) stream(c *gin.Context) {
	user, ok := userParam(c)
	if !ok {
		return
	}
	var last *inbox.Cursor
	if id := c.GetHeader("Last-Event-ID"); id != "" {
		cur, err := inbox.DecodeCursor(id)
		if err != nil || cur == nil {
			writeError(c, badRequest(CodeInvalidField, "Last-Event-ID", "Last-Event-ID is not an id this stream sent"))
			return
		}
		last = cur
	}
	ctx := c.Request.Context()
	app := appOf(c)
	// Subscribe before catching up, so nothing written in between is missed; duplicates
	// between the two are dropped by comparing with the last id sent.
	live, cancel, err := s.Streams.Subscribe(ctx, app, user)
	if err != nil {
		s.failed(c, "opening the stream", err)
		return
	}
	defer cancel()

	w := c.Writer
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(it inbox.Item) error {
		cur := inbox.Cursor{At: it.CreatedAt.UTC().Truncate(time.Millisecond), ID: it.NotificationID}
		if last != nil && !cur.After(*last) {
			return nil // already sent
		}
		raw, err := json.Marshal(it)
		if err != nil {
			return err
		}
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(w, "id: %s\nevent: notification\ndata: %s\n\n", cur.Encode(), raw); err != nil {
			return err
		}
		last = &cur
		return rc.Flush()
	}
	if last != nil {
		missed, err := s.Inbox.Newer(ctx, app, user, *last, s.Now(), 1000)
		if err != nil {
			s.Logger.Warn("stream catch-up", "err", err)
			return
		}
		for _, it := range missed {
			if send(it) != nil {
				return
			}
		}
	}
	// The unread count: now, then after new items, at most once per unreadEvery (a timer
	// armed by the first item after a count).
	sendCount := func() error {
		n, more, err := s.countUnread(ctx, app, user)
		if err != nil {
			s.Logger.Warn("stream unread count", "err", err)
			return nil // the items still flow; the next count may work
		}
		raw, _ := json.Marshal(gin.H{"user_id": user, "unread_count": n, "more": more})
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(w, "event: unread_count\ndata: %s\n\n", raw); err != nil {
			return err
		}
		return rc.Flush()
	}
	if sendCount() != nil {
		return
	}
	var recount <-chan time.Time
	lastCount := time.Now()
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case it, ok := <-live:
			if !ok || send(it) != nil {
				return // shutting down, or the client went away
			}
			if recount == nil {
				recount = time.After(max(0, unreadEvery-time.Since(lastCount)))
			}
		case <-recount:
			recount, lastCount = nil, time.Now()
			if sendCount() != nil {
				return
			}
		case <-tick.C:
			_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := fmt.Fprint(w, ": heartbeat\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// countUnread counts the user's unread items, up to maxUnreadSeen (more says there are more).
func (s *Server) countUnread(ctx context.Context, app, user string) (n int, more bool, err error) {
	topicSubs, err := s.Topics.Of(ctx, app, user)
	if err != nil {
		return 0, false, err
	}
	subs := make([]inbox.Subscription, len(topicSubs))
	for i, sub := range topicSubs {
		subs[i] = inbox.Subscription{Topic: sub.Topic, Since: sub.Since}
	}
	var cur *inbox.Cursor
	for {
		items, next, err := s.Inbox.Page(ctx, app, user, subs, cur, maxPage, true, s.Now())
		if err != nil {
			return 0, false, err
		}
		n += len(items)
		if next == "" {
			return n, false, nil
		}
		if n >= maxUnreadSeen {
			return n, true, nil
		}
		cur, _ = inbox.DecodeCursor(next)
	}
}
