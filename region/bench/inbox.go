package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/herald-notify/herald/platform/cassandra"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/redis"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/inbox"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/prefs"
)

// InboxOptions size `herald-dev bench inbox`.
type InboxOptions struct {
	BigRows int // rows of the large user's inbox
	Pages   int // pages read per user
	Lookups int // preference lookups per phase
	Streams int // idle streams opened for the memory measure
	Keep    bool
}

// Inbox measures inbox pages for a user with BigRows rows beside one with 10, preference
// lookups through the cache, and the memory of idle streams, and prints a table.
func Inbox(ctx context.Context, base region.Config, o InboxOptions, out io.Writer, log *slog.Logger) error {
	c, err := privateRegion(base, []string{region.RoleAPI})
	if err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	fmt.Fprintf(out, "bench inbox: private region %s\n", c.Name)
	if err := region.Migrate(ctx, c, log); err != nil {
		return err
	}
	if !o.Keep {
		defer drop(c, log)
	}
	cass, err := cassandra.Connect(ctx, c.Cassandra)
	if err != nil {
		return err
	}
	defer cass.Close()
	pg, err := postgres.Connect(ctx, c.Postgres)
	if err != nil {
		return err
	}
	defer pg.Close()
	rdb, err := redis.Connect(ctx, c.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()

	// Rows, newest last, one millisecond apart, all in this month's partition.
	in := inbox.New(cass, 24*time.Hour)
	load := func(user string, n int) error {
		start := time.Now().Add(-time.Duration(n) * time.Millisecond)
		var wg sync.WaitGroup
		errc := make(chan error, 1)
		sem := make(chan struct{}, 64)
		for i := 0; i < n; i++ {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				it := inbox.Item{AppID: "bench", UserID: user, NotificationID: fmt.Sprintf("n-%09d", i), CreatedAt: start.Add(time.Duration(i) * time.Millisecond),
					Tier: notify.Social, Category: "bench", Title: "Bench", Body: "An inbox row"}
				if err := in.Write(ctx, it); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}()
		}
		wg.Wait()
		select {
		case err := <-errc:
			return err
		default:
			return nil
		}
	}
	t0 := time.Now()
	if err := load("big", o.BigRows); err != nil {
		return err
	}
	if err := load("small", 10); err != nil {
		return err
	}
	fmt.Fprintf(out, "  loaded %d + 10 inbox rows in %s\n", o.BigRows, time.Since(t0).Round(time.Second))

	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- region.Run(rctx, c, log, "bench") }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			log.Warn("bench region stopped with an error", "err", err)
		}
	}()
	e, err := newEnv(c, log, 8)
	if err != nil {
		return err
	}
	if err := e.waitReady(ctx); err != nil {
		return err
	}

	var rows []Result
	for _, user := range []string{"big", "small"} {
		lats, err := e.pages(ctx, user, o.Pages)
		if err != nil {
			return err
		}
		rows = append(rows, Result{fmt.Sprintf("inbox page (limit 20), user with %s rows, p50 / p99", map[string]string{"big": fmt.Sprint(o.BigRows), "small": "10"}[user]),
			fmtLat(lats), "p99 < 20ms", fmt.Sprintf("%d pages, following cursors", len(lats))})
	}

	cache := prefs.NewCache(pg, rdb, c.Redis.Prefix, 5*time.Minute, log)
	for _, phase := range []string{"postgres + redis fill (cold)", "in-process (warm)"} {
		start := time.Now()
		for i := 0; i < o.Lookups; i += 100 {
			users := make([]string, 0, 100)
			for j := i; j < i+100 && j < o.Lookups; j++ {
				users = append(users, fmt.Sprintf("u%d", j))
			}
			if _, err := cache.Many(ctx, "bench", users); err != nil {
				return err
			}
		}
		rows = append(rows, Result{"preference lookups/s, " + phase, fmt.Sprintf("%.0f", float64(o.Lookups)/time.Since(start).Seconds()), "", "batches of 100 users, as fan-out asks"})
	}

	cost, err := e.streamMemory(ctx, o.Streams)
	if err != nil {
		return err
	}
	goroutines := math.Round(cost.goroutines*100) / 100
	if goroutines == 0 {
		goroutines = 0 // not -0, from a goroutine of the process that ended meanwhile
	}
	rows = append(rows,
		Result{"Go heap + stacks per idle stream (server side)", fmt.Sprintf("%.1f KiB", cost.heapStack/1024),
			"", fmt.Sprintf("%d streams open; x10,000 = %.0f MiB", cost.open, cost.heapStack*10_000/(1<<20))},
		Result{"goroutines per idle stream (server side)", fmt.Sprintf("%.2f", goroutines), "", ""})

	return printResults(out, rows)
}

// pages reads n pages of a user's inbox, following cursors (wrapping at the end).
func (e *env) pages(ctx context.Context, user string, n int) ([]time.Duration, error) {
	var lats []time.Duration
	cursor := ""
	for i := 0; i < n; i++ {
		url := e.base + "/v1/users/" + user + "/notifications?limit=20"
		if cursor != "" {
			url += "&cursor=" + cursor
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		req.Header.Set("X-Herald-App", "bench")
		start := time.Now()
		resp, err := e.http.Do(req)
		if err != nil {
			return nil, err
		}
		var body struct {
			NextCursor *string `json:"next_cursor"`
		}
		err = jsonDecode(resp.Body, &body)
		resp.Body.Close()
		lats = append(lats, time.Since(start))
		if err != nil || resp.StatusCode != 200 {
			return nil, fmt.Errorf("page: %d %v", resp.StatusCode, err)
		}
		cursor = ""
		if body.NextCursor != nil {
			cursor = *body.NextCursor
		}
	}
	return lats, nil
}

// streamCost is what the idle streams cost the process.
type streamCost struct {
	open       int
	heapStack  float64 // bytes of Go heap and stacks per stream
	goroutines float64 // goroutines per stream
}

// streamMemory opens n idle streams and measures the growth of Go heap, stacks and goroutines
// per stream. The client side of each stream is a bare TCP connection that sends the request,
// reads the response head and then nothing: it costs the process a socket and no goroutine or
// buffer, so the growth is the server's.
func (e *env) streamMemory(ctx context.Context, n int) (streamCost, error) {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < uint64(2*n+1000) {
		lim.Cur = min(lim.Max, uint64(2*n+1000))
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		n = min(n, int(lim.Cur-1000)/2)
	}
	measure := func() (uint64, int) {
		runtime.GC()
		runtime.GC() // the second pass frees what the first one's finalizers released
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse + m.StackInuse, runtime.NumGoroutine()
	}
	addr := strings.TrimPrefix(e.base, "https://")
	tc, err := clientTLS(e.cfg)
	if err != nil {
		return streamCost{}, err
	}
	memBefore, gBefore := measure()
	conns := make([]net.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	// Opened by a few workers at once: each open reads the unread count, so one at a time would
	// take minutes.
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for w := 0; w < 16; w++ {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || gctx.Err() != nil {
					return nil
				}
				c, err := openIdleStream(gctx, addr, tc, fmt.Sprintf("s%d", i))
				if err != nil {
					return fmt.Errorf("opening stream %d: %w", i, err)
				}
				conns[i] = c
			}
		})
	}
	if err := g.Wait(); err != nil {
		return streamCost{}, err
	}
	time.Sleep(2 * time.Second) // every stream has sent its first count and gone idle
	memAfter, gAfter := measure()
	return streamCost{open: n, heapStack: float64(int64(memAfter)-int64(memBefore)) / float64(n),
		goroutines: float64(gAfter-gBefore) / float64(n)}, nil
}

// openIdleStream sends a stream request over a new TLS connection and reads until the end of
// the response head, which must be a 200.
func openIdleStream(ctx context.Context, addr string, tc *tls.Config, user string) (net.Conn, error) {
	d := tls.Dialer{Config: tc}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(c, "GET /v1/users/%s/notifications/stream HTTP/1.1\r\nHost: bench\r\nX-Herald-App: bench\r\n\r\n", user); err != nil {
		c.Close()
		return nil, err
	}
	var head []byte
	buf := make([]byte, 512)
	for !bytes.Contains(head, []byte("\r\n\r\n")) {
		k, err := c.Read(buf)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("reading the response head: %w", err)
		}
		head = append(head, buf[:k]...)
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 200 ")) {
		c.Close()
		return nil, fmt.Errorf("stream answered %q", bytes.SplitN(head, []byte("\r\n"), 2)[0])
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
