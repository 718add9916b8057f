//go:build integration

package region_test

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-notify/herald/analytics/wire"
	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/deadletter"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/export"
	"github.com/herald-notify/herald/region/notify"
)

// counterValue reads a counter of the process's default registry (the region runs in-process)
// with the given labels, 0 when it has none yet.
func counterValue(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// seriesExists reports whether the default registry has a series of name with labels.
func seriesExists(t *testing.T, name string, labels map[string]string) bool {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			return true
		}
	}
	return false
}

func (r *running) deadLetters(stage, reason string) float64 {
	return counterValue(r.t, "herald_dead_letters_total", map[string]string{"region": r.cfg.Name, "stage": stage, "reason": reason})
}

// letters lists a stage's dead letters.
func (r *running) letters(stage string) []deadletter.Listed {
	r.t.Helper()
	ls, err := deadletter.List(r.t.Context(), r.cfg.Kafka, r.cfg.Name, stage, 1000)
	if err != nil {
		r.t.Fatalf("listing %s: %v", stage, err)
	}
	return ls
}

// waitLetters waits up to d for a stage's dead-letter topic to hold n letters.
func (r *running) waitLetters(stage string, n int, d time.Duration) []deadletter.Listed {
	r.t.Helper()
	var ls []deadletter.Listed
	poll.Until(r.t, d, func() error {
		if ls = r.letters(stage); len(ls) < n {
			return fmt.Errorf("%s: %d dead letters, want %d", stage, len(ls), n)
		}
		return nil
	})
	return ls
}

// produce puts records on the region's topics, returning their offsets.
func (r *running) produce(msgs ...kafka.Message) {
	r.t.Helper()
	p, err := kafka.NewProducer(r.cfg.Kafka)
	if err != nil {
		r.t.Fatal(err)
	}
	defer p.Close()
	for _, m := range msgs {
		if err := p.Send(r.t.Context(), m); err != nil {
			r.t.Fatal(err)
		}
	}
}

// deliveredWithin waits for a recipient x channel to be delivered and fails past d from since.
func (r *running) deliveredWithin(id, user, channel string, since time.Time, d time.Duration) time.Duration {
	r.t.Helper()
	for {
		code, st := r.call("GET", "/v1/notifications/"+id+"/status", nil, r.app)
		if got, _ := stateOf(st, user, channel); code == 200 && got == "delivered" {
			return time.Since(since)
		}
		if time.Since(since) > d {
			r.t.Fatalf("%s to %s/%s not delivered within %s of the record behind the poison: %d %v", id, user, channel, d, code, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *running) sendTo(user, tier string, channels []string, body string, sendAt *time.Time) string {
	r.t.Helper()
	req := map[string]any{"type": tier, "category": "c", "title": "T", "body": body, "recipients": []string{user}, "channels": channels}
	if sendAt != nil {
		req["send_at"] = sendAt.UTC().Format(time.RFC3339)
	}
	code, b := r.call("POST", "/v1/notifications", req, r.app)
	if code != 202 {
		r.t.Fatalf("send: %d %v", code, b)
	}
	return b["notification_id"].(string)
}

// withPoisonRoles runs the exporter too (its central is unreachable: only its consumer matters).
func withPoisonRoles(t *testing.T) func(*region.Config) {
	return func(c *region.Config) {
		c.Roles = append(region.AllRoles(), region.RoleExporter)
		c.Export = export.DefaultConfig()
		c.Export.CentralURL, c.Export.Token = "https://127.0.0.1:9", "poison-test-token-0123456789"
		cc := testenv.Exporter(t, c.Name)
		c.Export.TLS = export.TLSConfig{CAFile: cc.CAFile, CertFile: cc.CertFile, KeyFile: cc.KeyFile}
	}
}

// checkLetter checks a dead letter's stage, reason and origin.
func checkLetter(t *testing.T, l deadletter.Listed, stage, reason, originTopic string) {
	t.Helper()
	if l.Stage != stage || l.Reason != reason || l.Origin.Topic != originTopic || l.Error == "" || l.At.IsZero() {
		t.Errorf("letter %d/%d: stage %s reason %s origin %s error %q, want %s %s %s", l.Partition, l.Offset, l.Stage, l.Reason,
			l.Origin.Topic, l.Error, stage, reason, originTopic)
	}
}

// Each stage sets a poison record aside on its dead-letter topic, with the error and its
// origin, counts it, and handles the next record of the same partition (every test topic has
// one partition) within 5 s; an erased user's record is still dropped, not dead-lettered; a
// replay puts the letters back on their origin topics once.
func TestPoisonRecordsOfEveryStageGoAsideAndTheNextRecordOfThePartitionFlows(t *testing.T) {
	r := startRegion(t, simDispatch(t), withPoisonRoles(t))
	ctx := t.Context()
	name := r.cfg.Name
	if code, b := r.call("PUT", "/v1/users/ada", map[string]any{"email": "ada@example.org"}, r.app); code != 201 {
		t.Fatalf("put user: %d %v", code, b)
	}
	keys := r.keys()
	garbage := []byte("{\"id\": \"x\x00\", not json")

	t.Run("fanout", func(t *testing.T) {
		stage := deadletter.FanoutStage(notify.Social)
		topic := region.IngressTopic(name, notify.Social)
		undecodable, badData := r.deadLetters(stage, deadletter.ReasonUndecodable), r.deadLetters(stage, deadletter.ReasonBadData)
		// The case: a scheduled send with a NUL in its body (the API accepted it then;
		// it refuses it now, so the record is put on the topic as that API did), which Postgres
		// refuses to store (jsonb: SQLSTATE 22P05) on every attempt.
		tomorrow := time.Now().Add(24 * time.Hour)
		nul := "n-nul-" + testenv.Suffix()
		nulEvent, _, err := notify.EventMessage(ctx, keys, topic, notify.Event{ID: nul, AppID: r.app, Tier: notify.Social, Category: "c",
			Content: map[string]notify.Content{notify.InApp: {Title: "T", Body: "before\x00after"}}, Recipients: []string{"ada"},
			Channels: []string{"in_app"}, SendAt: &tomorrow, AcceptedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		r.produce(kafka.Message{Topic: topic, Key: "k", Value: garbage}, nulEvent)
		start := time.Now()
		next := r.sendTo("ada", notify.Social, []string{"in_app"}, "next", nil)
		took := r.deliveredWithin(next, "ada", "in_app", start, 5*time.Second)
		t.Logf("next social notification delivered %s after the two poison records", took.Round(time.Millisecond))
		ls := r.waitLetters(stage, 2, 10*time.Second)
		if len(ls) != 2 {
			t.Fatalf("%d dead letters, want 2", len(ls))
		}
		checkLetter(t, ls[0], stage, deadletter.ReasonUndecodable, topic)
		checkLetter(t, ls[1], stage, deadletter.ReasonBadData, topic)
		if !bytes.Equal(ls[0].Value, garbage) || ls[0].Origin.Partition != 0 || ls[1].Origin.Offset <= ls[0].Origin.Offset || ls[0].Origin.Time.IsZero() {
			t.Errorf("undecodable letter does not keep the record and its origin: %+v", ls[0])
		}
		if !bytes.Contains([]byte(ls[1].Error), []byte("22P05")) || !envelope.IsSealed(ls[1].Value) || bytes.Contains(ls[1].Value, []byte("ada")) ||
			bytes.Contains(ls[1].Value, []byte("before")) || ls[1].Class != deadletter.Permanent || ls[1].Attempts != 1 {
			t.Errorf("NUL letter: class %s attempts %d error %q, sealed %v", ls[1].Class, ls[1].Attempts, ls[1].Error, envelope.IsSealed(ls[1].Value))
		}
		if ev, _, err := notify.DecodeEvent(ctx, keys, ls[1].Value); err != nil || ev.ID != nul {
			t.Errorf("NUL letter opens to %q (%v), want %s", ev.ID, err, nul)
		}
		if d := r.deadLetters(stage, deadletter.ReasonUndecodable) - undecodable; d != 1 {
			t.Errorf("herald_dead_letters_total undecodable +%v, want +1", d)
		}
		if d := r.deadLetters(stage, deadletter.ReasonBadData) - badData; d != 1 {
			t.Errorf("herald_dead_letters_total bad_data +%v, want +1", d)
		}
	})

	t.Run("scheduler", func(t *testing.T) {
		stage := deadletter.StageScheduler
		undecodable, invalid := r.deadLetters(stage, deadletter.ReasonUndecodable), r.deadLetters(stage, deadletter.ReasonInvalid)
		var badShape, badTier int64
		// Due a minute ago, so they come first: an event whose id is a number, and a known
		// event on a tier that does not exist.
		if err := r.pg.QueryRow(ctx, `INSERT INTO scheduled_sends (app_id, notification_id, tier, due_at, event, reason)
			VALUES ($1, 'p-shape', 'social', now() - interval '1 minute', jsonb_build_object('id', 7, 'app_id', $1::text, 'recipients', jsonb_build_array('ada')), 'send_at')
			RETURNING id`, r.app).Scan(&badShape); err != nil {
			t.Fatal(err)
		}
		if err := r.pg.QueryRow(ctx, `INSERT INTO scheduled_sends (app_id, notification_id, tier, due_at, event, reason)
			VALUES ($1, 'p-tier', 'bogus', now() - interval '1 minute', jsonb_build_object('id', 'p-tier', 'app_id', $1::text, 'tier', 'bogus', 'recipients', jsonb_build_array('ada')), 'send_at')
			RETURNING id`, r.app).Scan(&badTier); err != nil {
			t.Fatal(err)
		}
		due := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
		next := r.sendTo("ada", notify.Social, []string{"in_app"}, "due soon", &due)
		took := r.deliveredWithin(next, "ada", "in_app", due, 5*time.Second)
		t.Logf("scheduled notification delivered %s after it was due, behind two poison rows", took.Round(time.Millisecond))
		ls := r.waitLetters(stage, 2, 10*time.Second)
		if len(ls) != 2 {
			t.Fatalf("%d dead letters, want 2", len(ls))
		}
		slices.SortFunc(ls, func(a, b deadletter.Listed) int { return int(a.Origin.Offset - b.Origin.Offset) })
		checkLetter(t, ls[0], stage, deadletter.ReasonUndecodable, region.IngressTopic(name, notify.Social))
		checkLetter(t, ls[1], stage, deadletter.ReasonInvalid, region.IngressTopic(name, "bogus"))
		if ls[0].Origin.Offset != badShape || ls[1].Origin.Offset != badTier || ls[0].Origin.Partition != -1 {
			t.Errorf("origins %+v %+v, want rows %d %d", ls[0].Origin, ls[1].Origin, badShape, badTier)
		}
		for _, l := range ls {
			if !envelope.IsSealed(l.Value) || bytes.Contains(l.Value, []byte(`"ada"`)) { // quoted: base64 never writes a quote
				t.Errorf("row %d dead-lettered unsealed: %s", l.Origin.Offset, l.Value)
			}
		}
		var left int
		if err := r.pg.QueryRow(ctx, `SELECT count(*) FROM scheduled_sends WHERE id = ANY($1)`, []int64{badShape, badTier}).Scan(&left); err != nil || left != 0 {
			t.Errorf("%d poison rows left in scheduled_sends (%v)", left, err)
		}
		if d := r.deadLetters(stage, deadletter.ReasonUndecodable) - undecodable; d != 1 {
			t.Errorf("undecodable +%v, want +1", d)
		}
		if d := r.deadLetters(stage, deadletter.ReasonInvalid) - invalid; d != 1 {
			t.Errorf("invalid +%v, want +1", d)
		}
	})

	t.Run("dispatch", func(t *testing.T) {
		stage := deadletter.DispatchStage(notify.Email)
		main, retry1 := notify.DispatchTopic(name, notify.Social, notify.Email), dispatch.RetryTopic(name, notify.Social, notify.Email, 1)
		undecodable, invalid := r.deadLetters(stage, deadletter.ReasonUndecodable), r.deadLetters(stage, deadletter.ReasonInvalid)
		noID, err := notify.TaskMessage(ctx, keys, main, notify.Task{AppID: r.app, UserID: "ada", Channel: notify.Email, Tier: notify.Social,
			Target: notify.Target{Email: "ada@example.org"}})
		if err != nil {
			t.Fatal(err)
		}
		r.produce(kafka.Message{Topic: main, Key: "k", Value: garbage}, noID, kafka.Message{Topic: retry1, Key: "k", Value: garbage})
		start := time.Now()
		next := r.sendTo("ada", notify.Social, []string{"email"}, "next email", nil)
		took := r.deliveredWithin(next, "ada", "email", start, 5*time.Second)
		t.Logf("next email delivered %s after the poison tasks", took.Round(time.Millisecond))
		ls := r.waitLetters(stage, 3, 10*time.Second)
		if len(ls) != 3 {
			t.Fatalf("%d dead letters, want 3", len(ls))
		}
		slices.SortFunc(ls, func(a, b deadletter.Listed) int {
			if a.Origin.Topic != b.Origin.Topic {
				return len(a.Origin.Topic) - len(b.Origin.Topic) // the dispatch topic before its retry level
			}
			return int(a.Origin.Offset - b.Origin.Offset)
		})
		checkLetter(t, ls[0], stage, deadletter.ReasonUndecodable, main)
		checkLetter(t, ls[1], stage, deadletter.ReasonInvalid, main)
		checkLetter(t, ls[2], stage, deadletter.ReasonUndecodable, retry1)
		if !envelope.IsSealed(ls[1].Value) || bytes.Contains(ls[1].Value, []byte("ada@example.org")) {
			t.Errorf("invalid task dead-lettered unsealed")
		}
		if d := r.deadLetters(stage, deadletter.ReasonUndecodable) - undecodable; d != 2 {
			t.Errorf("undecodable +%v, want +2", d)
		}
		if d := r.deadLetters(stage, deadletter.ReasonInvalid) - invalid; d != 1 {
			t.Errorf("invalid +%v, want +1", d)
		}
	})

	t.Run("export", func(t *testing.T) {
		stage := deadletter.StageExport
		topic := notify.EventsTopic(name)
		undecodable, badData := r.deadLetters(stage, deadletter.ReasonUndecodable), r.deadLetters(stage, deadletter.ReasonBadData)
		batch := func(id, category string) kafka.Message {
			m, ok, err := notify.EventBatch{App: r.app, Tier: notify.Social, Category: category, NotificationID: id, At: time.Now(), DueAt: time.Now(),
				Outcomes: []notify.Outcome{{User: "ada", Channel: notify.InApp, Stage: wire.StageDelivered}}}.Message(ctx, keys, name)
			if err != nil || !ok {
				t.Fatal(ok, err)
			}
			return m
		}
		// Postgres refuses a NUL in a text column (SQLSTATE 22021).
		r.produce(kafka.Message{Topic: topic, Key: "k", Value: garbage}, batch("p-nul", "a\x00b"))
		start := time.Now()
		r.produce(batch("p-next", "c"))
		poll.Until(t, 5*time.Second, func() error {
			var n int
			if err := r.pg.QueryRow(ctx, `SELECT count(*) FROM analytics_events WHERE event_key LIKE 'p-next|%'`).Scan(&n); err != nil || n != 1 {
				return fmt.Errorf("%d rows of the next record (%v)", n, err)
			}
			return nil
		})
		t.Logf("next delivery events stored %s after the poison records", time.Since(start).Round(time.Millisecond))
		ls := r.waitLetters(stage, 2, 10*time.Second)
		if len(ls) != 2 {
			t.Fatalf("%d dead letters, want 2", len(ls))
		}
		checkLetter(t, ls[0], stage, deadletter.ReasonUndecodable, topic)
		checkLetter(t, ls[1], stage, deadletter.ReasonBadData, topic)
		if !bytes.Contains([]byte(ls[1].Error), []byte("22021")) || !envelope.IsSealed(ls[1].Value) {
			t.Errorf("NUL category letter: %q sealed %v", ls[1].Error, envelope.IsSealed(ls[1].Value))
		}
		if d := r.deadLetters(stage, deadletter.ReasonUndecodable) - undecodable; d != 1 {
			t.Errorf("undecodable +%v, want +1", d)
		}
		if d := r.deadLetters(stage, deadletter.ReasonBadData) - badData; d != 1 {
			t.Errorf("bad_data +%v, want +1", d)
		}
	})

	t.Run("webhooks", func(t *testing.T) {
		stage := deadletter.StageWebhooks
		topic := notify.EventsTopic(name)
		if code, b := r.call("POST", "/v1/webhooks/endpoints", map[string]any{"url": "https://hooks.example.org/poison"}, r.app); code != 201 {
			t.Fatalf("create endpoint: %d %v", code, b)
		}
		undecodable := r.deadLetters(stage, deadletter.ReasonUndecodable)
		poison := []byte("{\"webhooks\": poison " + testenv.Suffix())
		next := func(i int) kafka.Message {
			m, ok, err := notify.EventBatch{App: r.app, Tier: notify.Social, Category: "c", NotificationID: fmt.Sprintf("w-next-%d", i), At: time.Now(), DueAt: time.Now(),
				Outcomes: []notify.Outcome{{User: "ada", Channel: notify.InApp, Stage: wire.StageDelivered}}}.Message(ctx, keys, name)
			if err != nil || !ok {
				t.Fatal(ok, err)
			}
			m.Key = "w-key" // the poison record's partition
			return m
		}
		// Records until one's delivery is stored (the consumer may hold the endpoint lists of
		// before the endpoint for endpoint_cache_ttl), then the poison record, then records on
		// the same partition until one's delivery is stored: the partition flows past it.
		i := 0
		deliveriesAfter := func(before int) func() error {
			return func() error {
				i++
				r.produce(next(i))
				var n int
				if err := r.pg.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries WHERE app_id = $1 AND user_id = 'ada'`, r.app).Scan(&n); err != nil || n <= before {
					return fmt.Errorf("%d deliveries, want more than %d (%v)", n, before, err)
				}
				return nil
			}
		}
		poll.Until(t, 30*time.Second, deliveriesAfter(0))
		var seen int
		if err := r.pg.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries WHERE app_id = $1 AND user_id = 'ada'`, r.app).Scan(&seen); err != nil {
			t.Fatal(err)
		}
		r.produce(kafka.Message{Topic: topic, Key: "w-key", Value: poison})
		poll.Until(t, 30*time.Second, deliveriesAfter(seen+1))
		poll.Until(t, 10*time.Second, func() error {
			for _, l := range r.letters(stage) {
				if bytes.Equal(l.Value, poison) {
					checkLetter(t, l, stage, deadletter.ReasonUndecodable, topic)
					return nil
				}
			}
			return fmt.Errorf("the poison record is not on %s", deadletter.Topic(name, stage))
		})
		if d := r.deadLetters(stage, deadletter.ReasonUndecodable) - undecodable; d < 1 {
			t.Errorf("undecodable +%v, want at least +1", d)
		}
	})

	t.Run("export: a transient failure that clears is retried without a dead letter", func(t *testing.T) {
		letters := len(r.letters(deadletter.StageExport))
		retries := func() float64 {
			return counterValue(t, "herald_export_outcomes_total", map[string]string{"region": name, "result": "retry"})
		}
		before := retries()
		if _, err := r.pg.Exec(ctx, `ALTER TABLE analytics_events RENAME TO analytics_events_away`); err != nil {
			t.Fatal(err)
		}
		m, ok, err := notify.EventBatch{App: r.app, Tier: notify.Social, Category: "c", NotificationID: "p-transient", At: time.Now(), DueAt: time.Now(),
			Outcomes: []notify.Outcome{{User: "ada", Channel: notify.InApp, Stage: wire.StageDelivered}}}.Message(ctx, keys, name)
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		r.produce(m)
		poll.Until(t, 10*time.Second, func() error {
			if n := retries() - before; n < 2 {
				return fmt.Errorf("exporter retried %v times", n)
			}
			return nil
		})
		if _, err := r.pg.Exec(ctx, `ALTER TABLE analytics_events_away RENAME TO analytics_events`); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, 15*time.Second, func() error {
			var n int
			if err := r.pg.QueryRow(ctx, `SELECT count(*) FROM analytics_events WHERE event_key LIKE 'p-transient|%'`).Scan(&n); err != nil || n != 1 {
				return fmt.Errorf("%d rows (%v)", n, err)
			}
			return nil
		})
		if n := len(r.letters(deadletter.StageExport)); n != letters {
			t.Fatalf("a transient failure that cleared was dead-lettered: %d letters, had %d", n, letters)
		}
	})

	t.Run("erased records are dropped, not dead-lettered", func(t *testing.T) {
		if code, b := r.call("PUT", "/v1/users/eve", map[string]any{"email": "eve@example.org"}, r.app); code != 201 {
			t.Fatalf("put user: %d %v", code, b)
		}
		ev, _, err := notify.EventMessage(ctx, keys, region.IngressTopic(name, notify.Social),
			notify.Event{ID: "n-eve", AppID: r.app, Tier: notify.Social, Category: "c", Recipients: []string{"eve"}, Channels: []string{"in_app"}, AcceptedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		task, err := notify.TaskMessage(ctx, keys, notify.DispatchTopic(name, notify.Social, notify.Email), notify.Task{NotificationID: "n-eve", AppID: r.app,
			UserID: "eve", Channel: notify.Email, Tier: notify.Social, Target: notify.Target{Email: "eve@example.org"}})
		if err != nil {
			t.Fatal(err)
		}
		code, b := r.call("DELETE", "/v1/users/eve", nil, r.app)
		if code != 202 {
			t.Fatalf("erase: %d %v", code, b)
		}
		id := b["erasure_id"].(string)
		poll.Until(t, 60*time.Second, func() error {
			if code, b := r.call("GET", "/v1/erasures/"+id, nil, r.app); code != 200 || b["state"] != "done" {
				return fmt.Errorf("erasure %d %v", code, b)
			}
			return nil
		})
		fanoutLetters, dispatchLetters := len(r.letters(deadletter.FanoutStage(notify.Social))), len(r.letters(deadletter.DispatchStage(notify.Email)))
		dropped := counterValue(t, "herald_erased_records_dropped_total", map[string]string{"stage": "fanout"}) +
			counterValue(t, "herald_erased_records_dropped_total", map[string]string{"stage": "dispatch"})
		r.produce(ev, task)
		start := time.Now()
		next := r.sendTo("ada", notify.Social, []string{"in_app", "email"}, "after eve", nil)
		r.deliveredWithin(next, "ada", "in_app", start, 5*time.Second)
		r.deliveredWithin(next, "ada", "email", start, 5*time.Second)
		after := counterValue(t, "herald_erased_records_dropped_total", map[string]string{"stage": "fanout"}) +
			counterValue(t, "herald_erased_records_dropped_total", map[string]string{"stage": "dispatch"})
		if after-dropped < 2 {
			t.Errorf("erased records dropped +%v, want +2", after-dropped)
		}
		if n := len(r.letters(deadletter.FanoutStage(notify.Social))); n != fanoutLetters {
			t.Errorf("an erased event was dead-lettered: %d letters, had %d", n, fanoutLetters)
		}
		if n := len(r.letters(deadletter.DispatchStage(notify.Email))); n != dispatchLetters {
			t.Errorf("an erased task was dead-lettered: %d letters, had %d", n, dispatchLetters)
		}
	})

	t.Run("replay puts the letters back on their origin topic once", func(t *testing.T) {
		stage := deadletter.DispatchStage(notify.Email)
		before := len(r.letters(stage))
		p, err := kafka.NewProducer(r.cfg.Kafka)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		got, err := deadletter.Replay(ctx, r.cfg.Kafka, p, name, stage)
		if err != nil || got.Replayed != before {
			t.Fatalf("replay: %+v %v, want %d replayed", got, err, before)
		}
		// Still poison: each comes back through its origin topic to the dead-letter topic.
		ls := r.waitLetters(stage, 2*before, 15*time.Second)
		for _, l := range ls[before:] {
			if l.Origin.Topic != notify.DispatchTopic(name, notify.Social, notify.Email) && l.Origin.Topic != dispatch.RetryTopic(name, notify.Social, notify.Email, 1) {
				t.Errorf("replayed letter came back from %s", l.Origin.Topic)
			}
		}
		again, err := deadletter.Replay(ctx, r.cfg.Kafka, p, name, stage)
		if err != nil || again.Replayed != before {
			// The letters set aside again are new: only those are replayed, never the first ones twice.
			t.Fatalf("second replay: %+v %v, want only the %d new letters", again, err, before)
		}
	})
}

// A store failure that clears within the tier's failure_retry is retried and leaves no dead
// letter; one that outlasts it dead-letters the event (retries_exhausted) and the partition
// moves on; once the store is back, a replay delivers the event, and a second replay sends
// nothing again.
func TestTransientFailureIsRetriedAndDeadLetteredOnlyPastItsPolicyThenReplayed(t *testing.T) {
	r := startRegion(t, func(c *region.Config) {
		tc := c.Fanout.Tiers[notify.Social]
		tc.FailureRetry = deadletter.Policy{MaxAttempts: 10_000, MaxElapsed: 4 * time.Second, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 400 * time.Millisecond}
		c.Fanout.Tiers[notify.Social] = tc
	})
	ctx := t.Context()
	stage := deadletter.FanoutStage(notify.Social)
	// Every stage x reason is counted from 0, so the first dead letter is an increase
	// Prometheus sees.
	for _, st := range region.DeadLetterStages() {
		for _, reason := range deadletter.Reasons {
			if !seriesExists(t, "herald_dead_letters_total", map[string]string{"region": r.cfg.Name, "stage": st, "reason": reason}) {
				t.Errorf("herald_dead_letters_total{stage=%q,reason=%q} not registered at start", st, reason)
			}
		}
	}
	if code, b := r.call("PUT", "/v1/users/ada", map[string]any{"email": "ada@example.org"}, r.app); code != 201 {
		t.Fatalf("put user: %d %v", code, b)
	}
	// The scheduled_sends table disappears (SQLSTATE 42P01: not the record's fault, transient)
	// and comes back.
	storeDown := func(down bool) {
		t.Helper()
		q := `ALTER TABLE scheduled_sends RENAME TO scheduled_sends_away`
		if !down {
			q = `ALTER TABLE scheduled_sends_away RENAME TO scheduled_sends`
		}
		if _, err := r.pg.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	retries := func() float64 {
		return counterValue(t, "herald_fanout_events_total", map[string]string{"region": r.cfg.Name, "tier": notify.Social, "result": "retry"})
	}
	scheduled := func(id string) int {
		var n int
		if err := r.pg.QueryRow(ctx, `SELECT count(*) FROM scheduled_sends WHERE notification_id = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	later := time.Now().Add(time.Hour)

	// Clears: retried, stored, no dead letter.
	storeDown(true)
	before := retries()
	first := r.sendTo("ada", notify.Social, []string{"in_app"}, "later", &later)
	poll.Until(t, 10*time.Second, func() error {
		if retries() < before+2 {
			return fmt.Errorf("fan-out retried %v times", retries()-before)
		}
		return nil
	})
	storeDown(false)
	poll.Until(t, 10*time.Second, func() error {
		if n := scheduled(first); n != 1 {
			return fmt.Errorf("%d rows of %s", n, first)
		}
		return nil
	})
	if ls := r.letters(stage); len(ls) != 0 {
		t.Fatalf("a transient failure that cleared was dead-lettered: %+v", ls)
	}
	if n := r.deadLetters(stage, deadletter.ReasonExhausted); n != 0 {
		t.Fatalf("herald_dead_letters_total %v", n)
	}

	// Outlasts the policy: dead-lettered, and the next record of the partition (the same
	// user's, so it waits for the one before) is delivered.
	storeDown(true)
	second := r.sendTo("ada", notify.Social, []string{"in_app"}, "later too", &later)
	next := r.sendTo("ada", notify.Social, []string{"in_app"}, "now", nil)
	ls := r.waitLetters(stage, 1, 20*time.Second)
	start := time.Now()
	r.deliveredWithin(next, "ada", "in_app", start, 5*time.Second)
	storeDown(false)
	l := ls[0]
	checkLetter(t, l, stage, deadletter.ReasonExhausted, region.IngressTopic(r.cfg.Name, notify.Social))
	if l.Class != deadletter.Transient || l.Attempts < 3 || !bytes.Contains([]byte(l.Error), []byte("42P01")) {
		t.Errorf("letter class %s attempts %d error %q", l.Class, l.Attempts, l.Error)
	}
	if ev, _, err := notify.DecodeEvent(ctx, r.keys(), l.Value); err != nil || ev.ID != second {
		t.Errorf("letter opens to %q (%v), want %s", ev.ID, err, second)
	}
	if n := r.deadLetters(stage, deadletter.ReasonExhausted); n != 1 {
		t.Errorf("herald_dead_letters_total{reason=retries_exhausted} %v, want 1", n)
	}

	// The store is back: a replay hands the event to fan-out again, once.
	p, err := kafka.NewProducer(r.cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if got, err := deadletter.Replay(ctx, r.cfg.Kafka, p, r.cfg.Name, stage); err != nil || got.Replayed != 1 {
		t.Fatalf("replay: %+v %v", got, err)
	}
	poll.Until(t, 10*time.Second, func() error {
		if n := scheduled(second); n != 1 {
			return fmt.Errorf("%d rows of %s after the replay", n, second)
		}
		return nil
	})
	if got, err := deadletter.Replay(ctx, r.cfg.Kafka, p, r.cfg.Name, stage); err != nil || got.Replayed != 0 {
		t.Fatalf("second replay: %+v %v, want nothing replayed", got, err)
	}
	// Behind anything the second replay could have sent, on the same partition.
	start = time.Now()
	last := r.sendTo("ada", notify.Social, []string{"in_app"}, "last", nil)
	r.deliveredWithin(last, "ada", "in_app", start, 5*time.Second)
	if n := scheduled(second); n != 1 {
		t.Fatalf("%d rows of %s after two replays", n, second)
	}
	if ls := r.letters(stage); len(ls) != 1 {
		t.Fatalf("%d dead letters after the replay, want the 1 replayed", len(ls))
	}
}
