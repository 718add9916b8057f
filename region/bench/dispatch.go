package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/sim"
)

// DispatchOptions size `herald-dev bench dispatch`.
type DispatchOptions struct {
	Push, Email, SMS int           // tasks per channel in the throughput phase (0 skips the channel)
	Probes           int           // paced single tasks per channel in the latency phase
	ProbeEvery       time.Duration // interval between them
	// TierBacklog marketing iOS pushes are queued for the tier-isolation phase, which sends a
	// transactional push through the API every TierProbeEvery while they drain (0 skips it).
	TierBacklog    int
	TierProbeEvery time.Duration
	// TierShared queues the backlog on the transactional topic: the layout before tiers.
	TierShared bool
	Keep       bool
}

// iOSTarget is the target for one dispatcher process.
const iOSTarget = 3000.0

// dispatchChannel is one measured channel: its dispatch channel, simulator and target maker.
type dispatchChannel struct {
	label, channel, sim string
	n                   int
	target              func(t *notify.Task, tag string) string // sets the target, returns the sim's record "to"
}

// Dispatch runs the dispatch benchmark: a private region with only the dispatch role, its
// providers pointed at an in-process simulator on free ports, tasks produced straight to the
// dispatch topics, and each measured at the simulator's record of it.
func Dispatch(ctx context.Context, base region.Config, o DispatchOptions, out io.Writer, log *slog.Logger) error {
	roles := []string{region.RoleDispatch}
	if o.TierBacklog > 0 {
		// The tier phase sends its transactional pushes through the API and fan-out.
		roles = append(roles, region.RoleAPI, region.RoleFanout)
	}
	c, err := privateRegion(base, roles)
	if err != nil {
		return err
	}

	// The simulators: free ports, fresh credentials, never the local stack's.
	dir, err := os.MkdirTemp("", "herald-bench-sim-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sc := sim.DefaultConfig(dir)
	sc.Webhook.Listen = "127.0.0.1:0"
	sc.Admin.Listen, sc.APNs.Listen, sc.FCM.Listen, sc.SMTP.Listen, sc.SMS.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	// The tier phase looks its probes up while the backlog drains: it does not keep every record.
	sc.Records.Capacity = max(o.Push, o.Email, o.SMS, min(o.TierBacklog, 50_000)) + o.Probes + 1000
	sc.Records.MaxPayloadBytes = 256
	sc.Drain = 0 // do not wait for the dispatcher's idle HTTP/2 connections at the end
	if err := sc.Validate(); err != nil {
		return err
	}
	// The simulator logs nothing here: its only noise is the shutdown of APNs connections the
	// dispatcher keeps open, after the measurements.
	s, err := sim.New(sc, slog.New(slog.DiscardHandler), "bench")
	if err != nil {
		return err
	}
	simCtx, stopSim := context.WithCancel(context.Background())
	simDone := make(chan error, 1)
	go func() { simDone <- s.Run(simCtx) }()
	defer func() {
		stopSim()
		if err := <-simDone; err != nil {
			log.Warn("simulators stopped with an error", "err", err)
		}
	}()
	info := s.Info()

	// Every provider of the full path, with a Redis rate limit configured far above the load
	// so each send still takes its token from Redis.
	rl := dispatch.RateLimitConfig{PerSecond: 1_000_000, Burst: 100_000}
	d := &c.Dispatch
	d.Push.APNs = dispatch.APNsConfig{Endpoint: info.APNs.URL, TeamID: info.APNs.TeamID, KeyID: info.APNs.KeyID,
		KeyFile: info.APNs.KeyFile, Topic: "com.herald.bench", CAFile: info.CAFile, RateLimit: rl}
	d.Push.FCM = dispatch.FCMConfig{Endpoint: info.FCM.Endpoint, CredentialsFile: info.FCM.CredentialsFile, RateLimit: rl}
	d.Email.SMTP = dispatch.SMTPConfig{Addr: info.SMTP.Addr, Username: sc.SMTP.Username, Password: sc.SMTP.Password,
		From: "Herald <noreply@herald.local>", CAFile: info.CAFile, RateLimit: rl}
	d.SMS.Twilio = dispatch.TwilioConfig{BaseURL: info.SMS.URL, AccountSID: sc.SMS.AccountSID, AuthToken: sc.SMS.AuthToken,
		From: "+15005550006", RateLimit: rl}
	if err := c.Validate(); err != nil {
		return err
	}
	fmt.Fprintf(out, "bench dispatch: private region %s, roles %v, simulators on %s (APNs), %s (SMTP), %s (SMS); concurrency per partition (transactional / marketing) push %d / %d, email %d / %d, sms %d / %d\n",
		c.Name, roles, info.APNs.URL, info.SMTP.Addr, info.SMS.URL, d.Tiers.Transactional.Push.Concurrency, d.Tiers.Marketing.Push.Concurrency,
		d.Tiers.Transactional.Email.Concurrency, d.Tiers.Marketing.Email.Concurrency, d.Tiers.Transactional.SMS.Concurrency, d.Tiers.Marketing.SMS.Concurrency)
	if err := region.Migrate(ctx, c, log); err != nil {
		return err
	}
	if !o.Keep {
		defer drop(c, log)
	}
	prod, err := kafka.NewProducer(c.Kafka)
	if err != nil {
		return err
	}
	defer prod.Close()

	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- region.Run(rctx, c, log, "bench") }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			log.Warn("bench region stopped with an error", "err", err)
		}
	}()
	e, err := newEnv(c, log, 2)
	if err != nil {
		return err
	}
	if err := e.waitReady(ctx); err != nil {
		return err
	}
	b := &dispatchBench{cfg: c, prod: prod, admin: info.Admin, http: e.http, app: "bench"}

	channels := []dispatchChannel{
		{"iOS push (APNs)", notify.Push, "apns", o.Push, func(t *notify.Task, tag string) string {
			tok := fmt.Sprintf("%064x", []byte(fmt.Sprintf("%-32.32s", tag)))
			t.Target.Devices = []notify.Device{{DeviceID: "iphone", Platform: "ios", Token: tok}}
			return tok
		}},
		{"email (SMTP)", notify.Email, "smtp", o.Email, func(t *notify.Task, tag string) string {
			t.Target.Email = tag + "@example.com"
			return t.Target.Email
		}},
		{"SMS (Twilio)", notify.SMS, "sms", o.SMS, func(t *notify.Task, tag string) string {
			t.Target.Phone = fmt.Sprintf("+1555%09d", b.next())
			return t.Target.Phone
		}},
	}
	var results []Result
	add := func(r ...Result) {
		results = append(results, r...)
		for _, x := range r {
			fmt.Fprintf(out, "  %-52s %s  %s\n", x.Name, x.Value, x.Note)
		}
	}
	for _, ch := range channels {
		if ch.n <= 0 {
			continue
		}
		// Warm up: connections, provider tokens, consumer group assignment.
		if _, err := b.run(ctx, ch, "w", 20, 0, 0); err != nil {
			return fmt.Errorf("%s warm-up: %w", ch.label, err)
		}
		r, err := b.run(ctx, ch, "t", ch.n, 8, 0)
		if err != nil {
			return fmt.Errorf("%s throughput: %w", ch.label, err)
		}
		rate := float64(ch.n) / r.span.Seconds()
		target, note := "", fmt.Sprintf("%d tasks, produced in %s", ch.n, r.produced.Round(time.Millisecond))
		if ch.channel == notify.Push {
			target = fmt.Sprintf(">= %.0f", iOSTarget)
			if rate >= iOSTarget {
				note += "; met"
			} else {
				note += "; NOT MET"
			}
		}
		add(Result{ch.label + " sends/s (first produce -> last record)", fmt.Sprintf("%.0f", rate), target, note},
			Result{ch.label + " produce -> record p50 / p99, in the burst", fmtLat(r.lats), "", "queueing included"})
		if o.Probes > 0 {
			// The simulator has every record of the burst, but the dispatcher may still be
			// writing the last outcomes, and its consumer resuming from the backpressure: the
			// paced tasks are meant for an idle dispatcher.
			if err := b.waitIdle(ctx, ch.channel); err != nil {
				return fmt.Errorf("%s: waiting for the burst to be committed: %w", ch.label, err)
			}
			p, err := b.run(ctx, ch, "p", o.Probes, 1, o.ProbeEvery)
			if err != nil {
				return fmt.Errorf("%s latency: %w", ch.label, err)
			}
			add(Result{ch.label + " produce -> record p50 / p99, paced", fmtLat(p.lats), "", fmt.Sprintf("%d tasks, one every %s", o.Probes, o.ProbeEvery)})
		}
	}
	if o.TierBacklog > 0 {
		pg, err := postgres.Connect(ctx, c.Postgres)
		if err != nil {
			return err
		}
		defer pg.Close()
		e.app, e.pg = b.app, pg
		r, err := b.tierIsolation(ctx, e, o.TierBacklog, cmp.Or(o.TierProbeEvery, 100*time.Millisecond), o.TierShared)
		if err != nil {
			return fmt.Errorf("tier isolation: %w", err)
		}
		add(r...)
	}

	return printResults(out, results)
}

type dispatchBench struct {
	cfg   region.Config
	prod  *kafka.Producer
	admin string
	http  *http.Client
	app   string
	mu    sync.Mutex
	seq   int
}

func (b *dispatchBench) next() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	return b.seq
}

type runResult struct {
	span, produced time.Duration
	lats           []time.Duration
}

// run produces n tasks of ch (in batches of 500 from writers goroutines, or one at a time every
// pace when pace > 0), waits for the simulator to record every one of them, and returns the time
// from the first produce to the last record and each task's produce -> record latency. A task's
// produce time is when Kafka acknowledged it; a record's time is when the simulator received
// the request, before it does any work, so its own service time is not counted.
func (b *dispatchBench) run(ctx context.Context, ch dispatchChannel, phase string, n, writers int, pace time.Duration) (runResult, error) {
	before, err := b.simSeq(ctx, ch.sim)
	if err != nil {
		return runResult{}, err
	}
	run := randLetters(4)
	tasks := make([]notify.Task, n)
	msgs := make([]kafka.Message, n)
	tos := make([]string, n)
	now := time.Now()
	for i := range tasks {
		user := fmt.Sprintf("b%s%s-%d", phase, run, i)
		t := notify.Task{NotificationID: "n-" + user, AppID: b.app, Tier: notify.Transactional, Category: "bench",
			UserID: user, Channel: ch.channel, AcceptedAt: now, ExpiresAt: now.Add(time.Hour),
			Content: notify.Content{Title: "Bench", Body: "A benchmark notification", Subject: "Bench", Text: "A benchmark notification."}}
		tos[i] = ch.target(&t, user)
		tasks[i] = t
		raw, _ := json.Marshal(t)
		msgs[i] = kafka.Message{Topic: notify.DispatchTopic(b.cfg.Name, t.Tier, ch.channel), Key: user, Value: raw}
	}
	producedAt := make([]time.Time, n)
	start := time.Now()
	if pace > 0 {
		for i := range msgs {
			if err := b.prod.Send(ctx, msgs[i]); err != nil {
				return runResult{}, err
			}
			producedAt[i] = time.Now()
			select {
			case <-ctx.Done():
				return runResult{}, ctx.Err()
			case <-time.After(pace):
			}
		}
	} else {
		const batch = 500
		var wg sync.WaitGroup
		errc := make(chan error, writers)
		work := make(chan int)
		for w := 0; w < max(writers, 1); w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for lo := range work {
					hi := min(lo+batch, n)
					if err := b.prod.Send(ctx, msgs[lo:hi]...); err != nil {
						errc <- err
						return
					}
					at := time.Now()
					for i := lo; i < hi; i++ {
						producedAt[i] = at
					}
				}
			}()
		}
		for lo := 0; lo < n; lo += batch {
			work <- lo
		}
		close(work)
		wg.Wait()
		select {
		case err := <-errc:
			return runResult{}, err
		default:
		}
	}
	produced := time.Since(start)

	// Wait until the simulator has seen as many requests as tasks were produced, then match.
	deadline := time.Now().Add(5*time.Minute + time.Duration(n)*time.Millisecond)
	for {
		seq, err := b.simSeq(ctx, ch.sim)
		if err != nil {
			return runResult{}, err
		}
		if seq-before >= uint64(n) {
			break
		}
		if time.Now().After(deadline) {
			return runResult{}, fmt.Errorf("%s recorded %d of %d requests", ch.sim, seq-before, n)
		}
		select {
		case <-ctx.Done():
			return runResult{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	recs, err := b.records(ctx, ch.sim, 0)
	if err != nil {
		return runResult{}, err
	}
	index := make(map[string]int, n)
	for i, to := range tos {
		index[to] = i
	}
	got := make([]time.Time, n)
	failed := 0
	for _, r := range recs {
		i, ok := index[r.To]
		if !ok || r.Seq <= before {
			continue
		}
		if r.ID == "" {
			failed++
			continue
		}
		if got[i].IsZero() {
			got[i] = r.ReceivedAt
		}
	}
	res := runResult{produced: produced}
	var last time.Time
	missing := 0
	for i := range got {
		if got[i].IsZero() {
			missing++
			continue
		}
		if got[i].After(last) {
			last = got[i]
		}
		res.lats = append(res.lats, got[i].Sub(producedAt[i]))
	}
	if missing > 0 {
		return res, fmt.Errorf("%s: %d of %d tasks without a successful record (%d failed requests)", ch.sim, missing, n, failed)
	}
	res.span = last.Sub(start)
	return res, nil
}

// waitIdle returns once the dispatcher has committed every record of the channel's dispatch
// topic (its consumer group's offsets at the partitions' ends), that is once every task's
// outcome is recorded.
func (b *dispatchBench) waitIdle(ctx context.Context, channel string) error {
	topic := notify.DispatchTopic(b.cfg.Name, notify.Transactional, channel)
	sc, err := b.cfg.Kafka.Sarama()
	if err != nil {
		return err
	}
	cl, err := sarama.NewClient(b.cfg.Kafka.Brokers, sc)
	if err != nil {
		return err
	}
	defer cl.Close()
	admin, err := sarama.NewClusterAdminFromClient(cl)
	if err != nil {
		return err
	}
	parts, err := cl.Partitions(topic)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		committed, err := admin.ListConsumerGroupOffsets(topic, map[string][]int32{topic: parts}) // the group is named as the topic
		if err != nil {
			return err
		}
		lag := int64(0)
		for _, p := range parts {
			end, err := cl.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil {
				return err
			}
			done := int64(0) // nothing committed yet: -1 or no block
			if blk := committed.GetBlock(topic, p); blk != nil {
				done = max(0, blk.Offset)
			}
			lag += max(0, end-done)
		}
		if lag == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d records of %s still uncommitted after a minute", lag, topic)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// simSeq is the sequence number of the simulator's newest record: how many requests it has
// answered since it started.
func (b *dispatchBench) simSeq(ctx context.Context, name string) (uint64, error) {
	recs, err := b.records(ctx, name, 1)
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	return recs[0].Seq, nil
}

func (b *dispatchBench) records(ctx context.Context, name string, limit int) ([]sim.Record, error) {
	return b.simRecords(ctx, name, url.Values{"limit": {strconv.Itoa(limit)}})
}

// simRecords is the simulator's records API (/sim/{name}/messages) with the query q.
func (b *dispatchBench) simRecords(ctx context.Context, name string, q url.Values) ([]sim.Record, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/sim/%s/messages?%s", b.admin, name, q.Encode()), nil)
	resp, err := b.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("sim records %s: %d", name, resp.StatusCode)
	}
	var out struct {
		Messages []sim.Record `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	return out.Messages, nil
}
