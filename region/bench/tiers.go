package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/userkeys"
	"github.com/herald-notify/herald/sim"
)

// tierTarget is the bound on a transactional push while a marketing backlog drains.
const tierTarget = time.Second

// tierIsolation is the tier-isolation phase of `herald-dev bench dispatch`: n marketing iOS pushes
// are queued on the marketing push dispatch topic (as fan-out would put them there, each to its
// own device), and while the dispatcher drains them, a transactional push to a user with an
// iPhone is sent through the API every `every`. Each probe is measured from the start of its
// POST /v1/notifications (accept, fan-out, dispatch) to the APNs simulator's record of it.
//
// shared queues the backlog on the transactional push topic instead, in front of the probes'
// tasks, as the layout before tiers did (one topic and pool per channel): the comparison.
func (b *dispatchBench) tierIsolation(ctx context.Context, e *env, n int, every time.Duration, shared bool) ([]Result, error) {
	topic := notify.DispatchTopic(b.cfg.Name, notify.Marketing, notify.Push)
	if shared {
		topic = notify.DispatchTopic(b.cfg.Name, notify.Transactional, notify.Push)
	}
	lag, closeLag, err := b.lagOf(topic)
	if err != nil {
		return nil, err
	}
	defer closeLag()
	// The probe users, each with an iPhone (bulk-loaded into the devices table).
	const maxProbes = 20_000
	run := randLetters(4)
	probeUser := func(i int) string { return fmt.Sprintf("otp-%s-%d", run, i) }
	probeToken := func(i int) string { return fmt.Sprintf("%064x", []byte(fmt.Sprintf("%-32.32s", probeUser(i)))) }
	var users []string
	var rows [][]any
	for i := range maxProbes {
		users = append(users, probeUser(i))
		rows = append(rows, []any{e.app, "iphone-" + probeUser(i), probeUser(i), "ios", probeToken(i)})
	}
	if _, err := e.pg.CopyFrom(ctx, pgx.Identifier{"devices"}, []string{"app_id", "device_id", "user_id", "platform", "token"}, pgx.CopyFromRows(rows)); err != nil {
		return nil, fmt.Errorf("registering probe devices: %w", err)
	}
	if err := e.admit(ctx, users); err != nil {
		return nil, err
	}
	// Probes before the backlog: the path warm (connections, consumer groups), then idle.
	if _, err := b.probePush(ctx, e, probeUser(0), probeToken(0)); err != nil {
		return nil, fmt.Errorf("warm-up probe: %w", err)
	}
	const idleProbes = 50
	var idle []time.Duration
	for i := 1; i <= idleProbes; i++ {
		d, err := b.probePush(ctx, e, probeUser(maxProbes-i), probeToken(maxProbes-i))
		if err != nil {
			return nil, fmt.Errorf("idle probe: %w", err)
		}
		idle = append(idle, d)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(every):
		}
	}

	// The backlog, generated batch by batch (a million tasks do not sit in memory at once).
	ring, err := e.cfg.Keyring()
	if err != nil {
		return nil, err
	}
	keys := userkeys.New(e.pg, ring)
	start := time.Now()
	const batch, writers = 500, 8
	work := make(chan int)
	errc := make(chan error, writers)
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msgs := make([]kafka.Message, 0, batch)
			users := make([]string, 0, batch)
			for lo := range work {
				msgs, users = msgs[:0], users[:0]
				for i := lo; i < min(lo+batch, n); i++ {
					users = append(users, fmt.Sprintf("mk%s-%d", run, i))
				}
				// Sealed for each user, as fan-out seals them: the users' keys are created
				// here, as fan-out would have, and the dispatcher reads them to open each task.
				if _, err := keys.For(ctx, b.app, users); err != nil {
					errc <- err
					return
				}
				now := time.Now()
				for _, user := range users {
					t := notify.Task{NotificationID: "n-mk" + run, AppID: b.app, Tier: notify.Marketing, Category: "promo",
						UserID: user, Channel: notify.Push, AcceptedAt: now, ExpiresAt: now.Add(24 * time.Hour),
						Content: notify.Content{Title: "Sale", Body: "A marketing push"},
						Target:  notify.Target{Devices: []notify.Device{{DeviceID: "iphone", Platform: "ios", Token: fmt.Sprintf("%064x", []byte(fmt.Sprintf("%-32.32s", user)))}}}}
					m, err := notify.TaskMessage(ctx, keys, topic, t)
					if err != nil {
						errc <- err
						return
					}
					msgs = append(msgs, m)
				}
				if err := b.prod.Send(ctx, msgs...); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	for lo := 0; lo < n; lo += batch {
		select {
		case work <- lo:
		case err := <-errc:
			close(work)
			wg.Wait()
			return nil, err
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		return nil, err
	default:
	}
	produced := time.Since(start)

	// Probes while the backlog drains: until the marketing group has committed every task.
	var (
		lats   []time.Duration
		mu     sync.Mutex
		pwg    sync.WaitGroup
		failed atomic.Int64
		probes int
		ps     []probe
		during int // probes sent while the backlog was still above a tenth of n
	)
	var drained time.Duration
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 1; ; i++ {
		left, err := lag(ctx)
		if err != nil {
			return nil, err
		}
		if left == 0 {
			drained = time.Since(start)
			break
		}
		if i >= maxProbes-idleProbes {
			return nil, fmt.Errorf("backlog not drained after %d probes (%d left)", maxProbes, left)
		}
		if left > int64(n/10) {
			during++
		}
		probes++
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			p, err := b.probeOne(ctx, e, probeUser(i), probeToken(i))
			if err != nil {
				failed.Add(1)
				e.log.Warn("tier probe failed", "user", probeUser(i), "err", err)
				return
			}
			mu.Lock()
			lats = append(lats, p.record.Sub(p.start))
			ps = append(ps, p)
			mu.Unlock()
		}()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
	pwg.Wait()
	if f := failed.Load(); f > 0 {
		return nil, fmt.Errorf("%d of %d transactional probes never reached the APNs simulator", f, probes)
	}
	accept, fanout, disp := e.stages(ctx, ps)
	p99 := percentile(lats, 0.99)
	note := fmt.Sprintf("%d probes, one every %s (%d while over a tenth of the backlog was left)", probes, every, during)
	if p99 < tierTarget {
		note += "; met"
	} else {
		note += "; NOT MET"
	}
	return []Result{
		{"OTP push accept -> APNs record p50 / p99, idle", fmtLat(idle), "", fmt.Sprintf("%d probes, one at a time", idleProbes)},
		{"marketing iOS pushes queued on " + topic[len(b.cfg.Name)+1:], fmt.Sprint(n), "", fmt.Sprintf("produced in %s", produced.Round(time.Millisecond))},
		{"marketing backlog drained (first produce -> committed)", drained.Round(100 * time.Millisecond).String(), "", fmt.Sprintf("%.0f pushes/s", float64(n)/drained.Seconds())},
		{"OTP push accept -> APNs record p50 / p99 while it drains", fmtLat(lats), "p99 < " + tierTarget.String(), note},
		{"OTP push accept -> APNs record, slowest", percentile(lats, 1).Round(time.Millisecond).String(), "", ""},
		{"  of which request -> accepted, p50 / p99", fmtLat(accept), "", "by the notification's accepted_at"},
		{"  of which accepted -> fan-out done, p50 / p99", fmtLat(fanout), "", "fanout_done_at"},
		{"  of which fan-out done -> APNs record, p50 / p99", fmtLat(disp), "", "dispatch"},
	}, nil
}

// probe is one transactional push measured: from its request's start to the APNs record, and
// the notification's id.
type probe struct {
	start, record time.Time
	id            string
}

// stages splits probes' times by the notification's accepted_at and fanout_done_at (the
// region's clock, this machine's): accept, fan-out, dispatch to the APNs record.
func (e *env) stages(ctx context.Context, ps []probe) (accept, fanout, dispatch []time.Duration) {
	for _, p := range ps {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.base+"/v1/notifications/"+url.PathEscape(p.id)+"/status", nil)
		req.Header.Set("X-Herald-App", e.app)
		resp, err := e.http.Do(req)
		if err != nil {
			continue
		}
		var st struct {
			Notification struct {
				AcceptedAt   time.Time  `json:"accepted_at"`
				FanoutDoneAt *time.Time `json:"fanout_done_at"`
			} `json:"notification"`
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil || st.Notification.FanoutDoneAt == nil {
			continue
		}
		n := st.Notification
		accept = append(accept, n.AcceptedAt.Sub(p.start))
		fanout = append(fanout, n.FanoutDoneAt.Sub(n.AcceptedAt))
		dispatch = append(dispatch, p.record.Sub(*n.FanoutDoneAt))
	}
	return accept, fanout, dispatch
}

// probePush sends one transactional push to user through the API and waits for the APNs
// simulator's record of it, returning the time from the request's start to that record.
func (b *dispatchBench) probePush(ctx context.Context, e *env, user, token string) (time.Duration, error) {
	p, err := b.probeOne(ctx, e, user, token)
	return p.record.Sub(p.start), err
}

func (b *dispatchBench) probeOne(ctx context.Context, e *env, user, token string) (probe, error) {
	start := time.Now()
	out, err := e.post(ctx, "/v1/notifications", map[string]any{"type": notify.Transactional, "category": "otp", "title": "Your code",
		"body": "123456 is your code", "recipients": []string{user}, "channels": []string{notify.Push}})
	if err != nil {
		return probe{}, err
	}
	id := fmt.Sprint(out["notification_id"])
	deadline := time.Now().Add(2 * time.Minute)
	for {
		recs, err := b.recordsTo(ctx, "apns", token)
		if err != nil {
			return probe{}, err
		}
		for _, r := range recs {
			if r.ID != "" {
				return probe{start: start, record: r.ReceivedAt, id: id}, nil
			}
		}
		if time.Now().After(deadline) {
			return probe{}, fmt.Errorf("no APNs record for %s after 2 minutes (status: %s)", user, e.status(ctx, fmt.Sprint(out["notification_id"])))
		}
		select {
		case <-ctx.Done():
			return probe{}, ctx.Err()
		case <-time.After(100 * time.Millisecond): // the record holds its own arrival time
		}
	}
}

// recordsTo is the simulator's records of requests to one recipient.
func (b *dispatchBench) recordsTo(ctx context.Context, name, to string) ([]sim.Record, error) {
	return b.simRecords(ctx, name, url.Values{"to": {to}})
}

// lagOf returns a function giving the records of topic its consumer group (named as the topic)
// has not committed, and a function closing its client.
func (b *dispatchBench) lagOf(topic string) (func(context.Context) (int64, error), func(), error) {
	sc, err := b.cfg.Kafka.Sarama()
	if err != nil {
		return nil, nil, err
	}
	cl, err := sarama.NewClient(b.cfg.Kafka.Brokers, sc)
	if err != nil {
		return nil, nil, err
	}
	admin, err := sarama.NewClusterAdminFromClient(cl)
	if err != nil {
		cl.Close()
		return nil, nil, err
	}
	parts, err := cl.Partitions(topic)
	if err != nil {
		cl.Close()
		return nil, nil, err
	}
	lag := func(context.Context) (int64, error) {
		committed, err := admin.ListConsumerGroupOffsets(topic, map[string][]int32{topic: parts})
		if err != nil {
			return 0, err
		}
		var n int64
		for _, p := range parts {
			end, err := cl.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil {
				return 0, err
			}
			done := int64(0)
			if blk := committed.GetBlock(topic, p); blk != nil {
				done = max(0, blk.Offset)
			}
			n += max(0, end-done)
		}
		return n, nil
	}
	return lag, func() { cl.Close() }, nil
}

// percentile is the p-quantile (0..1) of ls, 0 without samples.
func percentile(ls []time.Duration, p float64) time.Duration {
	if len(ls) == 0 {
		return 0
	}
	s := slices.Clone(ls)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// status is the delivery status of a notification, as the API reports it (for errors).
func (e *env) status(ctx context.Context, id string) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.base+"/v1/notifications/"+url.PathEscape(id)+"/status", nil)
	req.Header.Set("X-Herald-App", e.app)
	resp, err := e.http.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var body json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return fmt.Sprintf("%d %s", resp.StatusCode, body)
}
