package inbox

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/gocql/gocql"
	"golang.org/x/sync/errgroup"
)

// Buckets is how many month partitions a read looks back: rows live 90 days by default, so four
// months cover every row; a page is a bounded merge of at most this many partitions.
const Buckets = 4

// Subscription is a topic the user follows, and since when: feed items older than the
// subscription are not the user's.
type Subscription struct {
	Topic string
	Since time.Time
}

// Cursor is the position after the last item of a page: items strictly older come next.
// New items arriving meanwhile are newer, so they never shift a page.
type Cursor struct {
	At time.Time `json:"t"`
	ID string    `json:"i"`
}

// ErrBadCursor means a cursor that this server did not produce.
var ErrBadCursor = errors.New("invalid cursor")

// Encode makes the opaque cursor string.
func (c Cursor) Encode() string {
	raw, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// DecodeCursor parses an opaque cursor.
func DecodeCursor(s string) (*Cursor, error) {
	if s == "" {
		return nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, ErrBadCursor
	}
	var c Cursor
	if err := json.Unmarshal(raw, &c); err != nil || c.ID == "" || c.At.IsZero() {
		return nil, ErrBadCursor
	}
	return &c, nil
}

// before reports whether a sorts after b in the inbox order (newest first, then id descending).
func before(a, b Item) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.After(b.CreatedAt)
	}
	return a.NotificationID > b.NotificationID
}

// Page returns up to limit items of the user's inbox older than cur (or the newest), merging the
// feeds of the user's large topics, without duplicates, newest first, and the cursor of the next
// page ("" at the end).
func (in *Inbox) Page(ctx context.Context, appID, userID string, subs []Subscription, cur *Cursor, limit int, unreadOnly bool, now time.Time) ([]Item, string, error) {
	// Each source is read in pages of `limit` (a filtered source may need several), all
	// sources at once, and the merge keeps the newest `limit` overall.
	own := fmt.Sprintf("own\x00%s\x00%s\x00%t", appID, userID, unreadOnly)
	var ownItems []Item
	feeds := make([][]Item, len(subs))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		items, err := in.collect(gctx, own, limit, cur, now, func(bucket int, after *Cursor, n int) *gocql.Iter {
			q := `SELECT created_at, notification_id, tier, category, title, body, link, metadata, read_at FROM notification_log
			WHERE app_id = ? AND user_id = ? AND bucket = ?`
			args := []any{appID, userID, bucket}
			if after != nil {
				q += ` AND (created_at, notification_id) < (?, ?)`
				args = append(args, after.At, after.ID)
			}
			return in.s.Query(q+` LIMIT ?`, append(args, n)...).WithContext(gctx).Iter()
		}, scanOwn, func(it *Item) bool { return !unreadOnly || it.ReadAt == nil })
		if err != nil {
			return fmt.Errorf("reading inbox of %s: %w", userID, err)
		}
		ownItems = items
		return nil
	})
	for i, sub := range subs {
		g.Go(func() error {
			since := sub.Since.Truncate(time.Millisecond)
			items, err := in.collect(gctx, "feed\x00"+appID+"\x00"+sub.Topic, limit, cur, now, func(bucket int, after *Cursor, n int) *gocql.Iter {
				q := `SELECT created_at, notification_id, tier, category, title, body, link, metadata FROM topic_feed
				WHERE app_id = ? AND topic = ? AND bucket = ?`
				args := []any{appID, sub.Topic, bucket}
				if after != nil {
					q += ` AND (created_at, notification_id) < (?, ?)`
					args = append(args, after.At, after.ID)
				}
				return in.s.Query(q+` LIMIT ?`, append(args, n)...).WithContext(gctx).Iter()
			}, scanFeed, func(it *Item) bool { return !it.CreatedAt.Before(since) })
			if err != nil {
				return fmt.Errorf("reading topic feed %s: %w", sub.Topic, err)
			}
			feeds[i] = items
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, "", err
	}
	var all []Item
	seen := map[string]bool{}
	for _, it := range ownItems {
		it.AppID, it.UserID = appID, userID
		seen[it.NotificationID] = true
		all = append(all, it)
	}
	for i, sub := range subs {
		for _, it := range feeds[i] {
			// A feed item the user has read was copied into the user's own partition, which
			// then wins: no duplicates, and its read state shows.
			if seen[it.NotificationID] {
				continue
			}
			if unreadOnly {
				read, err := in.hasOwnRow(ctx, appID, userID, it)
				if err != nil {
					return nil, "", err
				}
				if read {
					continue
				}
			}
			seen[it.NotificationID] = true
			it.AppID, it.UserID, it.Topic = appID, userID, sub.Topic
			all = append(all, it)
		}
	}
	sort.Slice(all, func(i, j int) bool { return before(all[i], all[j]) })
	// Each source returned up to limit+1 items, so more than limit in the merge means another
	// page exists.
	if len(all) <= limit {
		return all, "", nil
	}
	all = all[:limit]
	last := all[limit-1]
	return all, Cursor{At: last.CreatedAt, ID: last.NotificationID}.Encode(), nil
}

// collect reads up to limit+1 items passing keep from one source (key names it), newest first,
// walking its month buckets from the cursor's down to the oldest one kept.
func (in *Inbox) collect(ctx context.Context, key string, limit int, cur *Cursor, now time.Time, query func(bucket int, after *Cursor, n int) *gocql.Iter, scan func(*gocql.Iter, *Item) bool, keep func(*Item) bool) ([]Item, error) {
	want := limit + 1
	start := now
	if cur != nil {
		start = cur.At
	}
	month := func(i int) int {
		return Bucket(time.Date(start.UTC().Year(), start.UTC().Month()-time.Month(i), 1, 0, 0, 0, 0, time.UTC))
	}
	// months reads months from..Buckets-1 at once, each up to n items. They are disjoint and
	// older in order, so appending them in month order keeps the inbox order.
	months := func(from, n int) ([]Item, error) {
		got := make([][]Item, Buckets-from)
		errs := make([]error, Buckets-from)
		var wg sync.WaitGroup
		for i := from; i < Buckets; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i-from], errs[i-from] = bucketItems(month(i), cur, n, query, scan, keep)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		var out []Item
		for i, items := range got {
			if from == 0 && i == 0 && cur == nil {
				in.short.set(key, len(items) < want)
			}
			out = append(out, items...)
			if len(out) >= want {
				return out[:want], nil
			}
		}
		return out, nil
	}
	// A first page of a source whose newest month was short last time reads every month in
	// one round trip. The page is the same either way (a short month means the older ones are
	// read); only the waiting differs.
	if cur == nil && Buckets > 1 && in.short.has(key) {
		return months(0, want)
	}
	// The cursor's month first: for a busy inbox it fills the page alone.
	out, err := bucketItems(month(0), cur, want, query, scan, keep)
	if cur == nil {
		in.short.set(key, err == nil && len(out) < want)
	}
	if err != nil || len(out) >= want || Buckets == 1 {
		return out, err
	}
	// A short month: the older months are read at once rather than one after another.
	older, err := months(1, want-len(out))
	if err != nil {
		return nil, err
	}
	out = append(out, older...)
	return out[:min(len(out), want)], nil
}

// shortSources remembers the sources (a user's partitions, a topic's feed) whose newest month
// held fewer items than a first page wanted when last read, so that their next first page reads
// every month in one round trip: a small inbox then answers as fast as a large one. Only the
// waiting depends on it, never the page, so a stale entry costs one read of three partitions.
type shortSources struct {
	mu sync.Mutex
	m  map[string]struct{}
}

// maxShortSources bounds the memory (a few MiB); when full it starts again empty.
const maxShortSources = 100_000

func (s *shortSources) has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[key]
	return ok
}

func (s *shortSources) set(key string, short bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !short {
		delete(s.m, key)
		return
	}
	if s.m == nil || len(s.m) >= maxShortSources {
		s.m = map[string]struct{}{}
	}
	s.m[key] = struct{}{}
}

// bucketItems reads up to want items passing keep from one month bucket, newest first, after
// cur.
func bucketItems(bucket int, cur *Cursor, want int, query func(bucket int, after *Cursor, n int) *gocql.Iter, scan func(*gocql.Iter, *Item) bool, keep func(*Item) bool) ([]Item, error) {
	var out []Item
	after := cur
	for len(out) < want {
		iter := query(bucket, after, want)
		n := 0
		var it Item
		for scan(iter, &it) {
			n++
			after = &Cursor{At: it.CreatedAt, ID: it.NotificationID}
			if keep(&it) {
				out = append(out, it)
			}
			it = Item{}
		}
		if err := iter.Close(); err != nil {
			return nil, err
		}
		if n < want {
			break // this bucket is exhausted
		}
	}
	return out, nil
}

func scanOwn(iter *gocql.Iter, it *Item) bool {
	return iter.Scan(&it.CreatedAt, &it.NotificationID, &it.Tier, &it.Category, &it.Title, &it.Body, &it.Link, &it.Metadata, &it.ReadAt)
}

func scanFeed(iter *gocql.Iter, it *Item) bool {
	return iter.Scan(&it.CreatedAt, &it.NotificationID, &it.Tier, &it.Category, &it.Title, &it.Body, &it.Link, &it.Metadata)
}

func (in *Inbox) hasOwnRow(ctx context.Context, appID, userID string, it Item) (bool, error) {
	var id string
	err := in.s.Query(`SELECT notification_id FROM notification_log WHERE app_id = ? AND user_id = ? AND bucket = ? AND created_at = ? AND notification_id = ?`,
		appID, userID, Bucket(it.CreatedAt), it.CreatedAt, it.NotificationID).WithContext(ctx).Scan(&id)
	if errors.Is(err, gocql.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Own returns the user's own inbox row of the notification id created at createdAt (the
// notification's accepted_at), gocql.ErrNotFound when the user has none.
func (in *Inbox) Own(ctx context.Context, appID, userID string, createdAt time.Time, id string) (Item, error) {
	ts := createdAt.UTC().Truncate(time.Millisecond)
	it := Item{AppID: appID}
	iter := in.s.Query(`SELECT created_at, notification_id, tier, category, title, body, link, metadata, read_at FROM notification_log
		WHERE app_id = ? AND user_id = ? AND bucket = ? AND created_at = ? AND notification_id = ?`,
		appID, userID, Bucket(ts), ts, id).WithContext(ctx).Iter()
	found := scanOwn(iter, &it)
	if err := iter.Close(); err != nil {
		return Item{}, fmt.Errorf("reading inbox item %s: %w", id, err)
	}
	if !found {
		return Item{}, gocql.ErrNotFound
	}
	return it, nil
}

// MarkRead marks one item read for the user. An item that came from a topic feed is copied into
// the user's own partition with its read time, so the merge shows it read. It reports false when
// the user has no such item.
func (in *Inbox) MarkRead(ctx context.Context, appID, userID string, it Item, at time.Time) (bool, error) {
	ts := it.CreatedAt.UTC().Truncate(time.Millisecond)
	applied, err := in.s.Query(`UPDATE notification_log USING TTL ? SET read_at = ? WHERE app_id = ? AND user_id = ? AND bucket = ? AND created_at = ? AND notification_id = ? IF EXISTS`,
		in.ttl, at, appID, userID, Bucket(ts), ts, it.NotificationID).WithContext(ctx).MapScanCAS(map[string]any{})
	if err != nil {
		return false, fmt.Errorf("marking %s read: %w", it.NotificationID, err)
	}
	if applied {
		return true, nil
	}
	if it.Topic == "" {
		return false, nil
	}
	err = in.s.Query(`INSERT INTO notification_log (app_id, user_id, bucket, created_at, notification_id, tier, category, title, body, link, metadata, read_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?`,
		appID, userID, Bucket(ts), ts, it.NotificationID, it.Tier, it.Category, it.Title, it.Body, orUnset(it.Link), unsetIfEmpty(it.Metadata), at, in.ttl).WithContext(ctx).Exec()
	if err != nil {
		return false, fmt.Errorf("marking feed item %s read: %w", it.NotificationID, err)
	}
	return true, nil
}

// FeedItem returns a topic feed item, for marking it read.
func (in *Inbox) FeedItem(ctx context.Context, appID, topic string, createdAt time.Time, id string) (Item, error) {
	ts := createdAt.UTC().Truncate(time.Millisecond)
	it := Item{AppID: appID, Topic: topic, CreatedAt: ts, NotificationID: id}
	err := in.s.Query(`SELECT tier, category, title, body, link, metadata FROM topic_feed WHERE app_id = ? AND topic = ? AND bucket = ? AND created_at = ? AND notification_id = ?`,
		appID, topic, Bucket(ts), ts, id).WithContext(ctx).Scan(&it.Tier, &it.Category, &it.Title, &it.Body, &it.Link, &it.Metadata)
	return it, err
}

// After reports whether c is newer than o in the inbox order.
func (c Cursor) After(o Cursor) bool {
	if !c.At.Equal(o.At) {
		return c.At.After(o.At)
	}
	return c.ID > o.ID
}

// Since returns the newest limit items of the user's inbox created after t, oldest first: its
// own partitions and the feeds of its topics (feed items from before the subscription left
// out; a feed item the user has read is listed once, from its own partition). This is what a
// stream that reconnects missed.
func (in *Inbox) Since(ctx context.Context, appID, userID string, subs []Subscription, t, now time.Time, limit int) ([]Item, error) {
	from := time.Date(t.UTC().Year(), t.UTC().Month(), 1, 0, 0, 0, 0, time.UTC)
	if oldest := time.Date(now.UTC().Year(), now.UTC().Month()-(Buckets-1), 1, 0, 0, 0, 0, time.UTC); from.Before(oldest) {
		from = oldest // older buckets have expired
	}
	// Each source's buckets are read newest first with the limit, so the newest limit items
	// overall are among what is read.
	read := func(q string, key string, scan func(*gocql.Iter, *Item) bool, each func(Item)) error {
		for m := from; !m.After(now.UTC()); m = m.AddDate(0, 1, 0) {
			iter := in.s.Query(q, appID, key, Bucket(m), t, limit).WithContext(ctx).Iter()
			var it Item
			for scan(iter, &it) {
				each(it)
				it = Item{}
			}
			if err := iter.Close(); err != nil {
				return err
			}
		}
		return nil
	}
	var out []Item
	own := map[string]bool{}
	err := read(`SELECT created_at, notification_id, tier, category, title, body, link, metadata, read_at FROM notification_log
		WHERE app_id = ? AND user_id = ? AND bucket = ? AND created_at > ? LIMIT ?`, userID, scanOwn, func(it Item) {
		it.AppID, it.UserID = appID, userID
		own[it.NotificationID] = true
		out = append(out, it)
	})
	if err != nil {
		return nil, fmt.Errorf("reading inbox of %s: %w", userID, err)
	}
	for _, sub := range subs {
		since := sub.Since.Truncate(time.Millisecond)
		err := read(`SELECT created_at, notification_id, tier, category, title, body, link, metadata FROM topic_feed
			WHERE app_id = ? AND topic = ? AND bucket = ? AND created_at > ? LIMIT ?`, sub.Topic, scanFeed, func(it Item) {
			if own[it.NotificationID] || it.CreatedAt.Before(since) {
				return
			}
			own[it.NotificationID] = true // a topic listed twice in subs gives one item
			it.AppID, it.UserID, it.Topic = appID, userID, sub.Topic
			out = append(out, it)
		})
		if err != nil {
			return nil, fmt.Errorf("reading topic feed %s: %w", sub.Topic, err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return before(out[i], out[j]) })
	if len(out) > limit {
		out = out[:limit]
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}
