// Package bench measures a region's write path against the real local servers: in-app
// deliveries per second end to end beside the raw Cassandra insert rate of the same rows,
// transactional latency when idle and while a marketing backlog drains, and a large topic send.
// It runs a private region in process (its own database, keyspace, topics and key prefix) and
// drops its stores at the end.
package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/IBM/sarama"
	"github.com/gocql/gocql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/platform/cassandra"
	"github.com/herald-notify/herald/platform/pki"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/redis"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/inbox"
	"github.com/herald-notify/herald/region/notify"
)

// Options size the benchmark.
type Options struct {
	Events           int // throughput phase: events ...
	Recipients       int // ... of this many in-app recipients each
	RawRows          int // raw Cassandra insert phase (0: as many as the throughput phase delivers)
	RawWriters       int
	Probes           int // transactional probes per latency phase
	ProbeEvery       time.Duration
	Backlog          int // marketing deliveries queued before the backlog phase
	TopicSubscribers int // subscribers of the large topic (0 skips the phase)
	Keep             bool
}

// printResults prints the benchmark's table.
func printResults(out io.Writer, results []Result) error {
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEASURE\tVALUE\tTARGET\tNOTE")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Value, r.Target, r.Note)
	}
	return tw.Flush()
}

// Result is one row of the printed table.
type Result struct {
	Name, Value, Target, Note string
}

type env struct {
	cfg  region.Config
	base string
	app  string
	pg   *pgxpool.Pool
	cass *gocql.Session
	log  *slog.Logger
	http *http.Client
}

// Pipeline runs the benchmark and prints a table to out.
func Pipeline(ctx context.Context, base region.Config, o Options, out io.Writer, log *slog.Logger) error {
	c, err := privateRegion(base, region.AllRoles())
	if err != nil {
		return err
	}
	c.Postgres.MaxConns = 30
	if err := c.Validate(); err != nil {
		return err
	}
	fmt.Fprintf(out, "bench pipeline: private region %s (database and keyspace %s)\n", c.Name, c.Postgres.Database)
	e, done, err := startPrivate(ctx, c, o.Keep, log)
	if err != nil {
		return err
	}
	defer done()

	var results []Result
	add := func(r ...Result) {
		results = append(results, r...)
		for _, x := range r {
			fmt.Fprintf(out, "  %-52s %s\n", x.Name, x.Value)
		}
	}

	// The ceiling is the faster of single rows and the batches fan-out writes (the region
	// picks 10 rows per batch on a one-node cluster, or inbox_batch from its config), each
	// measured on as many rows as the throughput phase writes: a short burst ends before the
	// memtable flushes and the collections that a run of the pipeline's length pays for.
	rawRows := o.RawRows
	if rawRows <= 0 {
		rawRows = o.Events * o.Recipients
	}
	rawNote := fmt.Sprintf("%d rows, %d writers", rawRows, o.RawWriters)
	// Unmeasured warm-up: a Cassandra started minutes ago is still compiling its write path,
	// and the first phase would pay for it alone (5,947 single rows/s cold, 24,000 warm).
	if _, err := e.rawInsert(ctx, min(rawRows, warmupRows), o.RawWriters, rawBatch, o.Recipients); err != nil {
		return err
	}
	rawSingle, err := e.rawInsert(ctx, rawRows, o.RawWriters, 1, o.Recipients)
	if err != nil {
		return err
	}
	add(Result{"raw Cassandra insert, inbox rows/s, single rows", fmt.Sprintf("%.0f", rawSingle), "", rawNote})
	rawBatched, err := e.rawInsert(ctx, rawRows, o.RawWriters, rawBatch, o.Recipients)
	if err != nil {
		return err
	}
	add(Result{fmt.Sprintf("raw Cassandra insert, inbox rows/s, batches of %d", rawBatch), fmt.Sprintf("%.0f", rawBatched), "", rawNote})
	raw := max(rawSingle, rawBatched)

	rate, err := e.throughput(ctx, o.Events, o.Recipients)
	if err != nil {
		return err
	}
	add(Result{"in-app deliveries/s end to end (accept -> inbox row)", fmt.Sprintf("%.0f", rate), ">= 5000", fmt.Sprintf("%d events x %d recipients", o.Events, o.Recipients)},
		Result{"end to end / raw insert", fmt.Sprintf("%.0f%%", 100*rate/raw), ">= 50%", "of the faster raw insert"})

	idle, err := e.probe(ctx, "idle", o.Probes, o.ProbeEvery, nil)
	if err != nil {
		return err
	}
	add(Result{"transactional accept -> inbox, idle, p50 / p99", fmtLat(idle), "p99 < 1s", fmt.Sprintf("%d probes", len(idle))})

	if o.Backlog > 0 {
		drained, under, err := e.backlog(ctx, o)
		if err != nil {
			return err
		}
		add(Result{"transactional p50 / p99 while the marketing backlog drains", fmtLat(under), "p99 < 1s", fmt.Sprintf("%d probes", len(under))},
			Result{"marketing backlog drain", drained, "", fmt.Sprintf("%d deliveries", o.Backlog)})
	}
	if o.TopicSubscribers > 0 {
		took, lat, err := e.bigTopic(ctx, o)
		if err != nil {
			return err
		}
		add(Result{"topic send: every push task on its dispatch topic", took, "< 60s", fmt.Sprintf("%d subscribers", o.TopicSubscribers)},
			Result{"transactional p50 / p99 during the topic send", fmtLat(lat), "p99 < 1s", fmt.Sprintf("%d probes", len(lat))})
	}

	return printResults(out, results)
}

// startPrivate migrates the private region c, connects to its Postgres and Cassandra, runs it
// in process and waits until it is ready. done stops it, closes the stores and drops them
// unless keep.
func startPrivate(ctx context.Context, c region.Config, keep bool, log *slog.Logger) (e *env, done func(), err error) {
	var undo []func()
	cleanup := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	if err := region.Migrate(ctx, c, log); err != nil {
		return nil, nil, err
	}
	if !keep {
		undo = append(undo, func() { drop(c, log) })
	}
	pg, err := postgres.Connect(ctx, c.Postgres)
	if err != nil {
		return nil, nil, err
	}
	undo = append(undo, pg.Close)
	cass, err := cassandra.Connect(ctx, c.Cassandra)
	if err != nil {
		return nil, nil, err
	}
	undo = append(undo, cass.Close)
	rctx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- region.Run(rctx, c, log, "bench") }()
	undo = append(undo, func() {
		stop()
		if err := <-ran; err != nil {
			log.Warn("bench region stopped with an error", "err", err)
		}
	})
	if e, err = newEnv(c, log, 64); err != nil {
		return nil, nil, err
	}
	e.app, e.pg, e.cass = "bench", pg, cass
	if err := e.waitReady(ctx); err != nil {
		return nil, nil, err
	}
	return e, cleanup, nil
}

// privateRegion derives, from the store settings of base, a region of its own (name, database,
// keyspace, topics, key prefix) listening on a free port, running roles.
func privateRegion(base region.Config, roles []string) (region.Config, error) {
	c := base
	c.Name = "zz-bench" + randLetters(6) + "-1"
	c.Jurisdiction = "EU"
	// Its own database and keyspace, never the jurisdiction's (it drops them at the end), on a
	// single data centre.
	store := "herald_" + strings.ReplaceAll(c.Name, "-", "_")
	c.Cassandra.Keyspace, c.Postgres.Database, c.Redis.Prefix = store, store, ""
	c.Cassandra.Replication, c.Cassandra.LocalDC = nil, ""
	c.Roles = roles
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return region.Config{}, err
	}
	c.Listen = ln.Addr().String()
	ln.Close()
	// Its own CA too: the bench calls it as the gateway would, over mutual TLS, with a client
	// certificate no other process holds.
	dir, err := os.MkdirTemp("", "herald-bench-pki-")
	if err != nil {
		return region.Config{}, err
	}
	d := pki.Dir(dir)
	if _, err := d.Ensure(pki.Plan{Servers: []string{"region"}, Hosts: []string{"127.0.0.1"}, Clients: []string{"bench"},
		CAValidity: 24 * time.Hour, LeafValidity: 24 * time.Hour}, time.Now()); err != nil {
		return region.Config{}, err
	}
	c.TLS = region.TLSConfig{CertFile: d.CertFile("region"), KeyFile: d.KeyFile("region"), ClientCAFile: d.CAFile()}
	return c, nil
}

// clientTLS is the bench's client side of c's mutual TLS (privateRegion made both).
func clientTLS(c region.Config) (*tls.Config, error) {
	return pki.Dir(filepath.Dir(c.TLS.CertFile)).Client("bench").TLS()
}

// newEnv is the bench's view of the running private region c: its https:// base and a client
// with the bench's certificate, keeping up to idle connections.
func newEnv(c region.Config, log *slog.Logger, idle int) (*env, error) {
	tc, err := clientTLS(c)
	if err != nil {
		return nil, err
	}
	return &env{cfg: c, base: "https://" + c.Listen, log: log,
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, MaxIdleConnsPerHost: idle}}}, nil
}

func randLetters(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = 'a' + b[i]%26
	}
	return string(b)
}

func drop(c region.Config, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if c.TLS.CertFile != "" {
		_ = os.RemoveAll(filepath.Dir(c.TLS.CertFile))
	}
	if conn, err := pgx.Connect(ctx, c.Postgres.URL); err == nil {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+c.Postgres.Database+" WITH (FORCE)"); err != nil {
			log.Warn("dropping bench database", "err", err)
		}
		conn.Close(ctx)
	}
	if err := cassandra.DropKeyspace(ctx, c.Cassandra, c.Cassandra.Keyspace); err != nil {
		log.Warn("dropping bench keyspace", "err", err)
	}
	if rdb, err := redis.Connect(ctx, c.Redis); err == nil {
		iter := rdb.Scan(ctx, 0, c.Redis.Prefix+"*", 1000).Iterator()
		var batch []string
		for iter.Next(ctx) {
			if batch = append(batch, iter.Val()); len(batch) == 1000 {
				rdb.Unlink(ctx, batch...)
				batch = batch[:0]
			}
		}
		if len(batch) > 0 {
			rdb.Unlink(ctx, batch...)
		}
		rdb.Close()
	}
	sc, _ := c.Kafka.Sarama()
	if admin, err := sarama.NewClusterAdmin(c.Kafka.Brokers, sc); err == nil {
		for _, t := range c.Topics() {
			_ = admin.DeleteTopic(t.Name)
		}
		admin.Close()
	}
}

func (e *env) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := e.http.Get(e.base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("bench region not ready")
}

func (e *env) post(ctx context.Context, path string, body any) (map[string]any, error) {
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, "POST", e.base+path, bytes.NewReader(raw))
	req.Header.Set("X-Herald-App", e.app)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("POST %s: %d %v", path, resp.StatusCode, out)
	}
	return out, nil
}

func (e *env) send(ctx context.Context, tier string, users []string, channels []string) (string, error) {
	out, err := e.post(ctx, "/v1/notifications", map[string]any{"type": tier, "category": "bench", "title": "Bench", "body": "A benchmark notification",
		"recipients": users, "channels": channels})
	if err != nil {
		return "", err
	}
	return out["notification_id"].(string), nil
}

// admit registers users as residents of the bench region's jurisdiction, as the gateway's
// registration does (a region refuses sends to anyone else).
func (e *env) admit(ctx context.Context, ids []string) error {
	if _, err := e.pg.Exec(ctx, `INSERT INTO users (app_id, user_id, jurisdiction) SELECT $1, u, $3 FROM unnest($2::text[]) u ON CONFLICT DO NOTHING`,
		e.app, ids, e.cfg.Jurisdiction); err != nil {
		return fmt.Errorf("registering bench users: %w", err)
	}
	return nil
}

// sendMany sends n in-app events of tier to recipients, 16 requests at a time, and returns
// their ids.
func (e *env) sendMany(ctx context.Context, n int, tier string, recipients []string) ([]string, error) {
	if err := e.admit(ctx, recipients); err != nil {
		return nil, err
	}
	ids := make([]string, n)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	sem := make(chan struct{}, 16)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			id, err := e.send(ctx, tier, recipients, []string{notify.InApp})
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, err
	}
	return ids, nil
}

// rawBatch is the batch size of the batched raw insert phase.
const rawBatch = 10

// warmupRows are written, unmeasured, before the raw phases.
const warmupRows = 50_000

// rawInsert writes n inbox rows straight to Cassandra with the region's own writer, batch
// rows at a time per writer: the rows of the throughput phase (users partitions, the region's
// TTL, the same content), under other user ids.
func (e *env) rawInsert(ctx context.Context, n, writers, batch, users int) (float64, error) {
	in := inbox.New(e.cass, e.cfg.LogTTL)
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			items := make([]inbox.Item, 0, batch)
			for {
				last := next.Add(int64(batch))
				first := last - int64(batch) + 1
				if first > int64(n) {
					return
				}
				items = items[:0]
				for i := first; i <= min(last, int64(n)); i++ {
					items = append(items, inbox.Item{AppID: "raw", UserID: fmt.Sprintf("raw-%d", i%int64(max(1, users))), NotificationID: fmt.Sprintf("raw-%d-%d", batch, i), CreatedAt: time.Now(),
						Tier: notify.Social, Category: "bench", Title: "Bench", Body: "A benchmark notification"})
				}
				if err := in.WriteBatch(ctx, items); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return 0, err
	default:
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// waitFanout waits until every id has its fan-out recorded, returning the last completion time.
// It asks about one id at a time, in the order they were sent, and sleeps only while the oldest
// one is pending: the reads are the bench's, not the pipeline's, and polling every pending id
// on a timer read the notifications table up to 16,000 times during a 400-event phase, load
// the raw phase does not carry. Each completion time is read from its row, so when the poll
// notices does not change the result.
func (e *env) waitFanout(ctx context.Context, ids []string, limit time.Duration) (time.Time, error) {
	var last time.Time
	deadline := time.Now().Add(limit)
	for i := 0; i < len(ids); {
		var at time.Time
		err := e.cass.Query(`SELECT fanout_done_at FROM notifications WHERE notification_id = ?`, ids[i]).WithContext(ctx).Scan(&at)
		if err == nil && !at.IsZero() {
			if at.After(last) {
				last = at
			}
			i++
			continue
		}
		if time.Now().After(deadline) {
			return last, fmt.Errorf("%d of %d events not fanned out after %s", len(ids)-i, len(ids), limit)
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return last, nil
}

func users(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

// throughput sends events of in-app recipients as fast as the API takes them and measures
// deliveries per second from the first accept to the last fan-out completion.
func (e *env) throughput(ctx context.Context, events, recipients int) (float64, error) {
	start := time.Now()
	ids, err := e.sendMany(ctx, events, notify.Social, users("tp", recipients))
	if err != nil {
		return 0, err
	}
	last, err := e.waitFanout(ctx, ids, 10*time.Minute)
	if err != nil {
		return 0, err
	}
	return float64(events*recipients) / last.Sub(start).Seconds(), nil
}

// probe sends single-recipient transactional in-app notifications every interval and measures
// accept -> inbox row from the row itself: its created_at is the accept time, and WRITETIME is
// when fan-out wrote it (both from this machine's clock). while, if set, ends the phase early
// when it returns false.
func (e *env) probe(ctx context.Context, phase string, n int, every time.Duration, while func() bool) ([]time.Duration, error) {
	var sent []string
	all := make([]string, n)
	for i := range all {
		all[i] = fmt.Sprintf("probe-%s-%d", phase, i)
	}
	if err := e.admit(ctx, all); err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		if while != nil && !while() {
			break
		}
		u := all[i]
		if _, err := e.send(ctx, notify.Transactional, []string{u}, []string{notify.InApp}); err != nil {
			return nil, err
		}
		sent = append(sent, u)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(every):
		}
	}
	var lats []time.Duration
	deadline := time.Now().Add(2 * time.Minute)
	bucket := inbox.Bucket(time.Now())
	for _, u := range sent {
		for {
			var created time.Time
			var wt int64
			err := e.cass.Query(`SELECT created_at, WRITETIME(title) FROM notification_log WHERE app_id = ? AND user_id = ? AND bucket = ?`,
				e.app, u, bucket).WithContext(ctx).Scan(&created, &wt)
			if err == nil {
				lats = append(lats, time.UnixMicro(wt).Sub(created))
				break
			}
			if time.Now().After(deadline) {
				return lats, fmt.Errorf("probe %s never reached the inbox", u)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return lats, nil
}

// backlog queues o.Backlog marketing deliveries (events of 1,000 recipients), then probes
// transactional latency while they drain.
func (e *env) backlog(ctx context.Context, o Options) (string, []time.Duration, error) {
	per := 1000
	events := (o.Backlog + per - 1) / per
	start := time.Now()
	ids, err := e.sendMany(ctx, events, notify.Marketing, users("mk", per))
	if err != nil {
		return "", nil, err
	}
	queued := time.Since(start)
	var drained atomic.Bool
	var last time.Time
	var werr error
	waitDone := make(chan struct{})
	go func() {
		defer close(waitDone)
		last, werr = e.waitFanout(ctx, ids, 30*time.Minute)
		drained.Store(true)
	}()
	lats, err := e.probe(ctx, "backlog", o.Probes*10, o.ProbeEvery, func() bool { return !drained.Load() })
	<-waitDone
	if err != nil {
		return "", nil, err
	}
	if werr != nil {
		return "", nil, werr
	}
	took := last.Sub(start)
	return fmt.Sprintf("%s (%.0f deliveries/s; queued in %s)", took.Round(time.Second), float64(events*per)/took.Seconds(), queued.Round(time.Millisecond)), lats, nil
}

// bigTopic subscribes o.TopicSubscribers users with one Android device each, sends one push to
// the topic, and measures the time until every push task is on the push dispatch topic.
func (e *env) bigTopic(ctx context.Context, o Options) (string, []time.Duration, error) {
	n := o.TopicSubscribers
	setup := time.Now()
	subs := make([][]any, 0, n)
	devs := make([][]any, 0, n)
	for i := 0; i < n; i++ {
		u := fmt.Sprintf("sub-%07d", i)
		subs = append(subs, []any{e.app, "big", u})
		devs = append(devs, []any{e.app, "dev-" + u, u, "android", "fcmtoken-" + hex.EncodeToString([]byte(u))})
	}
	if _, err := e.pg.CopyFrom(ctx, pgx.Identifier{"topic_subscriptions"}, []string{"app_id", "topic", "user_id"}, pgx.CopyFromRows(subs)); err != nil {
		return "", nil, fmt.Errorf("loading subscribers: %w", err)
	}
	if _, err := e.pg.CopyFrom(ctx, pgx.Identifier{"devices"}, []string{"app_id", "device_id", "user_id", "platform", "token"}, pgx.CopyFromRows(devs)); err != nil {
		return "", nil, fmt.Errorf("loading devices: %w", err)
	}
	// Fresh statistics, as autovacuum would gather soon after a bulk load: without them the
	// planner does not know the tables are large and scans them whole.
	if _, err := e.pg.Exec(ctx, `ANALYZE topic_subscriptions, devices`); err != nil {
		return "", nil, fmt.Errorf("analyzing: %w", err)
	}
	e.log.Info("bench topic loaded", "subscribers", n, "took", time.Since(setup))
	pushTopic := notify.DispatchTopic(e.cfg.Name, notify.Social, notify.Push) // a social send
	before, err := e.topicCount(pushTopic)
	if err != nil {
		return "", nil, err
	}
	start := time.Now()
	if _, err := e.post(ctx, "/v1/notifications", map[string]any{"type": "social", "category": "bench", "title": "Big", "body": "To a big topic",
		"topic": "big", "channels": []string{notify.Push}}); err != nil {
		return "", nil, err
	}
	var done atomic.Bool
	var took time.Duration
	var werr error
	waitDone := make(chan struct{})
	go func() {
		defer close(waitDone)
		defer done.Store(true)
		for {
			c, err := e.topicCount(pushTopic)
			if err != nil {
				werr = err
				return
			}
			if c-before >= int64(n) {
				took = time.Since(start)
				return
			}
			if time.Since(start) > 10*time.Minute {
				werr = fmt.Errorf("only %d of %d push tasks after 10 minutes", c-before, n)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	lats, err := e.probe(ctx, "topic", o.Probes*10, o.ProbeEvery, func() bool { return !done.Load() })
	<-waitDone
	if err != nil {
		return "", nil, err
	}
	if werr != nil {
		return "", nil, werr
	}
	return took.Round(100 * time.Millisecond).String(), lats, nil
}

func (e *env) topicCount(topic string) (int64, error) {
	sc, _ := e.cfg.Kafka.Sarama()
	cl, err := sarama.NewClient(e.cfg.Kafka.Brokers, sc)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	parts, err := cl.Partitions(topic)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, p := range parts {
		off, err := cl.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return 0, err
		}
		n += off
	}
	return n, nil
}

func fmtLat(ls []time.Duration) string {
	if len(ls) == 0 {
		return "no samples"
	}
	s := append([]time.Duration(nil), ls...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	pct := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return fmt.Sprintf("%s / %s", pct(0.50).Round(time.Millisecond), pct(0.99).Round(time.Millisecond))
}
