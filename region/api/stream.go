package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/region/inbox"
)

// unreadEvery bounds how often a stream recounts the unread items: a burst of new items or reads
// costs one count, not one per item.
var unreadEvery = time.Second

// streamWriteTimeout bounds one write to a stream's client: a client that reads nothing for
// this long is dropped, and resumes from its Last-Event-ID when it reconnects.
const streamWriteTimeout = 10 * time.Second

// maxCatchUp is how many missed items a resuming stream is sent at most (the newest).
const maxCatchUp = 1000

// countSlots bounds the unread counts this process runs at once: one large-topic item makes
// the open stream of every subscriber recount, and those counts queue here rather than all
// reach Postgres and Cassandra together.
var countSlots = make(chan struct{}, 32)

// stream serves GET /v1/users/{user_id}/notifications/stream: Server-Sent Events, one
// "notification" event per new inbox item (the user's own, and the feed items of its large
// topics), each with an id that a client reconnecting sends back as Last-Event-ID to get
// exactly what it missed, and an "unread_count" event (no id) when the stream opens, after new
// items and after reads elsewhere, at most once per unreadEvery.
//
// Once the stream is open the handler returns: the connection is taken over (hijacked), and
// the inbox hub hands the stream what arrives on a goroutine that lives only while there is
// something to write. An idle stream costs its socket and a few small structs, not goroutines
// and the HTTP server's buffers.
func (s *Server) stream(c *gin.Context) {
	user, ok := userParam(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	app := appOf(c)
	var pos inbox.Position
	resume := false
	if id := c.GetHeader("Last-Event-ID"); id != "" {
		p, err := inbox.ParsePosition(id)
		if err != nil {
			writeError(c, badRequest(CodeInvalidField, "Last-Event-ID", "Last-Event-ID is not an id this stream sent"))
			return
		}
		pos, resume = p, true
	}
	subs, err := s.subscriptions(c, user)
	if err != nil {
		s.failed(c, "reading subscriptions", err)
		return
	}
	st := &sseStream{srv: s, app: app, user: user, sent: inbox.Sent{Position: pos}}
	st.setSubs(subs)
	// Subscribe before catching up, so nothing written in between is missed; an item both
	// bring is sent once.
	live, err := s.Streams.Open(ctx, app, user, st.topics(), st.serve)
	if errors.Is(err, inbox.ErrStopped) {
		unavailable(c, "the region is shutting down; reconnect")
		return
	}
	if err != nil {
		s.failed(c, "opening the stream", err)
		return
	}
	st.live = live
	if !resume {
		// A new stream sends what is written from now on: the subscription is in place.
		st.sent = inbox.Sent{Position: inbox.NewPosition(s.Now())}
	}
	conn, err := hijackSSE(c)
	if errors.Is(err, errNoTakeover) {
		live.Close()
		s.failed(c, "opening the stream", err)
		return
	}
	if err != nil {
		live.Close() // the client went away; the connection is closed
		return
	}
	st.conn = conn
	if resume {
		missed, err := s.Inbox.Since(ctx, app, user, subs, st.sent.Floor(), s.Now(), maxCatchUp)
		if err != nil {
			s.Logger.Warn("stream catch-up", "err", err)
			st.end()
			return
		}
		for _, it := range missed {
			if _, err := st.send(it); err != nil {
				st.end()
				return
			}
		}
	}
	// An id without data: EventSource keeps it as the last event id and dispatches nothing, so
	// a client that reconnects before its first item still resumes from here.
	if st.conn.write([]byte("id: "+st.sent.String()+"\n\n")) != nil {
		st.end()
		return
	}
	inInbox, err := st.writeCount(ctx, subs)
	if err != nil {
		st.end()
		return
	}
	if !resume {
		// Items in the inbox already, whose announcement may still be on its way, are the
		// client's through its inbox listing: not sent as new.
		st.sent.Seen(inInbox)
	}
	live.Start()
}

// sseStream is one open stream after its handler returned. Its fields are used by the handler
// until Start, then only by serve, which the hub never runs twice at once.
type sseStream struct {
	srv       *Server
	app, user string
	conn      *sseConn
	live      *inbox.Stream
	sent      inbox.Sent
	subs      map[string]time.Time // topic -> subscribed since (ms)
	countDue  bool
	timerSet  bool
	lastCount time.Time
	ended     bool
}

func (st *sseStream) setSubs(subs []inbox.Subscription) {
	st.subs = nil
	for _, sub := range subs {
		if st.subs == nil {
			st.subs = make(map[string]time.Time, len(subs))
		}
		st.subs[sub.Topic] = sub.Since.Truncate(time.Millisecond)
	}
}

func (st *sseStream) topics() []string {
	out := make([]string, 0, len(st.subs))
	for t := range st.subs {
		out = append(out, t)
	}
	return out
}

// serve handles what the hub hands the stream.
func (st *sseStream) serve(b inbox.Batch) {
	if st.ended {
		return
	}
	if b.Closing || b.Overflow {
		st.end() // the client reconnects and catches up from its Last-Event-ID
		return
	}
	if b.Woken {
		st.timerSet = false
	}
	wrote := false
	for _, it := range b.Items {
		// As stored and listed; a feed item of a topic (no user) is the user's only if it
		// subscribed before it.
		it.CreatedAt = it.CreatedAt.UTC().Truncate(time.Millisecond)
		if it.UserID == "" {
			since, ok := st.subs[it.Topic]
			if !ok || it.CreatedAt.Before(since) {
				continue
			}
			it.UserID = st.user
		}
		sent, err := st.send(it)
		if err != nil {
			st.end()
			return
		}
		wrote = wrote || sent
	}
	if b.Changed {
		st.countDue = true
	}
	if st.countDue && !st.timerSet {
		if wait := unreadEvery - time.Since(st.lastCount); wait > 0 {
			st.timerSet = true
			time.AfterFunc(wait, st.live.Wake)
		} else if st.recount() != nil {
			st.end()
			return
		}
	}
	if b.Heartbeat && !wrote {
		if st.conn.write([]byte(": heartbeat\n\n")) != nil {
			st.end()
		}
	}
}

// send writes an item unless the stream sent it already, and reports whether it did.
func (st *sseStream) send(it inbox.Item) (bool, error) {
	it.CreatedAt = it.CreatedAt.UTC().Truncate(time.Millisecond) // as stored and listed
	if !st.sent.Admit(it) {
		return false, nil
	}
	raw, err := json.Marshal(it)
	if err != nil {
		return false, err
	}
	st.countDue = true
	return true, st.conn.write(fmt.Appendf(nil, "id: %s\nevent: notification\ndata: %s\n\n", st.sent.String(), raw))
}

// recount reads the user's topics again (its stream then follows topics joined or left since
// it opened) and writes the unread count.
func (st *sseStream) recount() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	countSlots <- struct{}{}
	defer func() { <-countSlots }()
	subs, err := st.srv.userSubscriptions(ctx, st.app, st.user)
	if err != nil {
		st.srv.Logger.Warn("stream unread count", "err", err)
		st.countDue, st.lastCount = false, time.Now()
		return nil // items still flow; the next count may work
	}
	st.setSubs(subs)
	if err := st.live.SetTopics(ctx, st.topics()); err != nil {
		st.srv.Logger.Warn("stream topics", "err", err)
	}
	_, err = st.writeCount(ctx, subs)
	return err
}

// writeCount counts the unread items and writes the count; it returns the newest unread
// items it read.
func (st *sseStream) writeCount(ctx context.Context, subs []inbox.Subscription) ([]inbox.Item, error) {
	st.countDue, st.lastCount = false, time.Now()
	n, more, newest, err := st.srv.countUnread(ctx, st.app, st.user, subs)
	if err != nil {
		st.srv.Logger.Warn("stream unread count", "err", err)
		return nil, nil // items still flow; the next count may work
	}
	raw, _ := json.Marshal(gin.H{"user_id": st.user, "unread_count": n, "more": more})
	return newest, st.conn.write(fmt.Appendf(nil, "event: unread_count\ndata: %s\n\n", raw))
}

func (st *sseStream) end() {
	if st.ended {
		return
	}
	st.ended = true
	st.live.Close()
	st.conn.close()
}

// sseConn is a stream's connection after the handler took it over from the HTTP server.
type sseConn struct {
	conn    net.Conn
	chunked bool
}

// errNoTakeover means the connection cannot be taken over (HTTP/2): nothing was written.
var errNoTakeover = errors.New("streams need HTTP/1.x")

// hijackSSE takes the connection over and writes the response head: 200, the event-stream
// headers (and those set before, by middleware), chunked for HTTP/1.1, and Connection: close,
// since nothing follows a stream on its connection. An error other than errNoTakeover means
// the connection was taken over and is closed.
func hijackSSE(c *gin.Context) (*sseConn, error) {
	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Connection", "close")
	r := c.Request
	chunked := r.ProtoAtLeast(1, 1)
	if chunked {
		h.Set("Transfer-Encoding", "chunked")
	}
	conn, _, err := http.NewResponseController(c.Writer).Hijack()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoTakeover, err)
	}
	_ = conn.SetDeadline(time.Time{}) // the server's read timeout no longer applies
	head := fmt.Appendf(nil, "HTTP/%d.%d 200 OK\r\n", r.ProtoMajor, r.ProtoMinor)
	for k, vs := range h {
		for _, v := range vs {
			head = fmt.Appendf(head, "%s: %s\r\n", k, v)
		}
	}
	head = append(head, "\r\n"...)
	_ = conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if _, err := conn.Write(head); err != nil {
		conn.Close()
		return nil, err
	}
	return &sseConn{conn: conn, chunked: chunked}, nil
}

func (w *sseConn) write(p []byte) error {
	b := p
	if w.chunked {
		b = fmt.Appendf(make([]byte, 0, len(p)+12), "%x\r\n", len(p))
		b = append(append(b, p...), "\r\n"...)
	}
	_ = w.conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	_, err := w.conn.Write(b)
	return err
}

// close ends the response (the last chunk) and the connection.
func (w *sseConn) close() {
	if w.chunked {
		_ = w.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = w.conn.Write([]byte("0\r\n\r\n"))
	}
	w.conn.Close()
}

// countUnread counts the user's unread items (its inbox and the feeds of subs), up to
// maxUnreadSeen (more says there are more), and returns the first page it read: the newest
// unread items.
func (s *Server) countUnread(ctx context.Context, app, user string, subs []inbox.Subscription) (n int, more bool, newest []inbox.Item, err error) {
	var cur *inbox.Cursor
	for {
		items, next, err := s.Inbox.Page(ctx, app, user, subs, cur, maxPage, true, s.Now())
		if err != nil {
			return 0, false, nil, err
		}
		if cur == nil {
			newest = items
		}
		n += len(items)
		if next == "" {
			return n, false, newest, nil
		}
		if n >= maxUnreadSeen {
			return n, true, newest, nil
		}
		cur, _ = inbox.DecodeCursor(next)
	}
}
