//go:build integration

package region_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/notify"
)

// eventsWithKey lists the ids of the events on a tier's topic that carry an idempotency key, one
// entry per record (a repeat shows twice).
func (r *running) eventsWithKey(tier, key string) []string {
	r.t.Helper()
	var ids []string
	r.readTopic(notify.IngressTopic(r.cfg.Name, tier), func(m *sarama.ConsumerMessage) {
		e, _, err := notify.DecodeEvent(r.t.Context(), r.keys(), m.Value)
		if err != nil {
			r.t.Fatalf("decoding an event: %v", err)
		}
		if e.IdempotencyKey == key {
			ids = append(ids, e.ID)
		}
	})
	return ids
}

// failCommitAfterProduce makes the region's Postgres kill, once, the connection that commits an
// idempotency claim with no pending record: the commit that comes after the produce (the old
// accept path committed its claim only then; today's marks the claim done then). The backend
// terminates itself inside the commit (a deferred trigger), so the commit fails the way it does
// when Postgres restarts at that moment. It returns how often the fault fired.
func (r *running) failCommitAfterProduce() (fired func() int) {
	r.t.Helper()
	for _, q := range []string{
		`CREATE SEQUENCE herald_test_fault`,
		`CREATE FUNCTION herald_test_fault() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.pending_value IS NULL AND nextval('herald_test_fault') = 1 THEN
				PERFORM pg_terminate_backend(pg_backend_pid());
			END IF;
			RETURN NULL;
		END $$`,
		`CREATE CONSTRAINT TRIGGER herald_test_fault AFTER INSERT OR UPDATE ON idempotency_keys
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION herald_test_fault()`,
	} {
		if _, err := r.pg.Exec(r.t.Context(), q); err != nil {
			r.t.Fatalf("installing the fault: %v", err)
		}
	}
	return func() int {
		var n int
		var called bool
		if err := r.pg.QueryRow(r.t.Context(), `SELECT last_value, is_called FROM herald_test_fault`).Scan(&n, &called); err != nil {
			r.t.Fatal(err)
		}
		if !called {
			return 0
		}
		return n
	}
}

func TestIdempotencyClaimAndAcceptedEventAgreeWhenTheCommitAfterTheProduceFails(t *testing.T) {
	r := startRegion(t)
	fired := r.failCommitAfterProduce()
	const key = "pay-7"
	req := map[string]any{"type": "transactional", "category": "otp", "body": "123456", "recipients": []string{"ada"},
		"channels": []string{"in_app"}, "idempotency_key": key}

	// A client that retries 503s with the same key, as the API asks.
	var answers []string
	ids := map[string]bool{}
	for attempt := 0; attempt < 5; attempt++ {
		code, body := r.call("POST", "/v1/notifications", req, r.app)
		id, _ := body["notification_id"].(string)
		answers = append(answers, fmt.Sprintf("%d %s", code, id))
		if code == 503 {
			continue
		}
		if code != 202 && code != 409 {
			t.Fatalf("attempt %d: %d %v", attempt, code, body)
		}
		ids[id] = true
		if attempt > 0 || code == 409 {
			break
		}
		// Accepted at once: the same key again must answer the same id.
	}
	t.Logf("answers: %v", answers)
	if fired() < 1 {
		t.Fatal("the fault never fired: the test proves nothing")
	}
	if len(ids) != 1 {
		t.Fatalf("the key answered %d notification ids %v, want 1 (answers %v)", len(ids), ids, answers)
	}
	var id string
	for id = range ids {
	}
	r.waitState(id, "ada", "in_app", "delivered")
	// Every event with the key is that id, once.
	poll.Until(t, 10*time.Second, func() error {
		got := r.eventsWithKey(notify.Transactional, key)
		if len(got) != 1 || got[0] != id {
			return fmt.Errorf("events with the key on the topic: %v, want exactly [%s]", got, id)
		}
		return nil
	})
	if n := r.inboxRows("ada"); n != 1 {
		t.Fatalf("ada has %d inbox rows, want 1", n)
	}
}

// sendResult is one POST /v1/notifications as a client saw it.
type sendResult struct {
	phase, key         string
	code               int
	id, errCode, retry string
	took               time.Duration
	transportErr       error
}

// timedSend posts one in-app send (with key, when not empty) through a client that gives up
// only after 30 s, so a request that hangs shows as such.
func (r *running) timedSend(client *http.Client, phase, key string) sendResult {
	body := map[string]any{"type": "transactional", "category": "otp", "body": "123456", "recipients": []string{"ada"}, "channels": []string{"in_app"}}
	if key != "" {
		body["idempotency_key"] = key
	}
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", r.base+"/v1/notifications", bytes.NewReader(raw))
	req.Header.Set("X-Herald-App", r.app)
	req.Header.Set("Content-Type", "application/json")
	res := sendResult{phase: phase, key: key}
	start := time.Now()
	resp, err := client.Do(req)
	res.took = time.Since(start)
	if err != nil {
		res.transportErr = err
		return res
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct {
		NotificationID string                `json:"notification_id"`
		Error          struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(b, &out)
	res.code, res.id, res.errCode, res.retry = resp.StatusCode, out.NotificationID, out.Error.Code, resp.Header.Get("Retry-After")
	return res
}

// startAPIBehindCassandraProxy runs a region with the API role only and the given deadline,
// its Cassandra behind a StallProxy, with "ada" admitted; client gives up after 30 s only, so a
// request that hangs shows as such.
func startAPIBehindCassandraProxy(t *testing.T, deadline time.Duration) (*running, *testenv.StallProxy, *http.Client) {
	t.Helper()
	var proxy *testenv.StallProxy
	r := startRegion(t, func(c *region.Config) {
		proxy = testenv.StartStallProxy(t, c.Cassandra.Hosts[0])
		c.Cassandra.Hosts = []string{proxy.Addr}
		c.Roles = []string{region.RoleAPI}
		c.RequestTimeout = deadline
	})
	r.admit(r.app, "ada")
	return r, proxy, &http.Client{Transport: testenv.RegionClient(t).Transport, Timeout: 30 * time.Second}
}

func TestARetryThatFindsItsKeyPendingWhileCassandraStallsIsAnsweredWellWithinTheDeadline(t *testing.T) {
	// A retry that finds its key's claim pending looks in the delivery log for proof the first
	// produce was acknowledged. On a restarting Cassandra that look waited out the request's
	// whole deadline (answers of 5.2-5.3 s through the gateway in CI); it now gives up soon and
	// produces the record again, which fan-out's dedup delivers once.
	const deadline = 4 * time.Second
	r, proxy, client := startAPIBehindCassandraProxy(t, deadline)
	const key = "k-pending"
	first := r.timedSend(client, "first", key)
	if first.code != 202 {
		t.Fatalf("first send: %+v", first)
	}

	// Leave the claim pending, as a first request whose mark failed does: its record, as
	// produced, back in the claim.
	var pending *sarama.ConsumerMessage
	poll.Until(t, 30*time.Second, func() error {
		return r.tryReadTopic(notify.IngressTopic(r.cfg.Name, notify.Transactional), func(m *sarama.ConsumerMessage) {
			if e, _, err := notify.DecodeEvent(r.t.Context(), r.keys(), m.Value); err == nil && e.ID == first.id {
				pending = m
			}
		})
	})
	if pending == nil {
		t.Fatalf("the first send's event %s is not on its topic", first.id)
	}
	tag, err := r.pg.Exec(t.Context(), `UPDATE idempotency_keys SET pending_topic = $1, pending_key = $2, pending_value = $3
		WHERE app_id = $4 AND idempotency_key = $5`, pending.Topic, string(pending.Key), pending.Value, r.app, key)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("leaving the claim pending: %v (%d rows)", err, tag.RowsAffected())
	}

	proxy.Stall()
	retry := r.timedSend(client, "retry", key)
	proxy.Resume()
	t.Logf("the retry while Cassandra stalled: %d in %s (deadline %s)", retry.code, retry.took, deadline)
	if retry.transportErr != nil || retry.code != 409 || retry.id != first.id {
		t.Fatalf("the retry while Cassandra stalled: %+v, want 409 duplicate_idempotency_key with the first id %s", retry, first.id)
	}
	if retry.took > deadline/2 {
		t.Fatalf("the retry took %s while Cassandra stalled: it waits on the delivery log (deadline %s)", retry.took, deadline)
	}
	// Produced again, and the claim settled.
	poll.Until(t, 30*time.Second, func() error {
		if got := r.eventsWithKey(notify.Transactional, key); len(got) != 2 || got[0] != first.id || got[1] != first.id {
			return fmt.Errorf("events with the key on the topic: %v, want the first id twice", got)
		}
		return nil
	})
	if n := r.count(`SELECT count(*) FROM idempotency_keys WHERE app_id = $1 AND pending_value IS NOT NULL`, r.app); n != 0 {
		t.Fatalf("%d claims still pending after the retry settled its key", n)
	}
}

func TestSendsWhileKafkaAndPostgresAreBothFrozenAnswer503InTimeAndAreAcceptedOnceTheyAreBack(t *testing.T) {
	// The outbox covers Kafka; when Postgres does not answer either, nothing can hold the send:
	// the region answers 503 with Retry-After within its deadline (never a hang, never a 202 it
	// cannot keep), and sends are accepted again once the stores are back.
	k := testenv.StartPrivateKafka(t) // never the shared broker: this test freezes it
	const deadline, wait = 2 * time.Second, 500 * time.Millisecond
	var proxy *testenv.StallProxy
	r := startRegion(t, func(c *region.Config) {
		c.Kafka.Brokers = k.Config.Brokers
		c.Roles = []string{region.RoleAPI}
		c.RequestTimeout = deadline
		c.KafkaWait = wait
		u, err := url.Parse(c.Postgres.URL)
		if err != nil {
			t.Fatal(err)
		}
		proxy = testenv.StartStallProxy(t, u.Host)
		u.Host = proxy.Addr
		c.Postgres.URL = u.String()
	})
	r.admit(r.app, "ada")
	client := &http.Client{Transport: testenv.RegionClient(t).Transport, Timeout: 30 * time.Second}
	for i, key := range []string{"k-before", ""} {
		if res := r.timedSend(client, "before", key); res.code != 202 {
			t.Fatalf("send %d before the freeze: %+v", i, res)
		}
	}

	k.Pause(t)
	proxy.Stall()
	var frozen []sendResult
	for i, key := range []string{"k-1", "", "k-2", ""} {
		res := r.timedSend(client, "frozen", key)
		frozen = append(frozen, res)
		if res.transportErr != nil || res.code != 503 || res.retry == "" {
			t.Fatalf("send %d while Kafka and Postgres are frozen: %+v, want 503 with Retry-After", i, res)
		}
		if res.took > deadline+time.Second {
			t.Fatalf("send %d answered after %s (deadline %s)", i, res.took, deadline)
		}
	}
	proxy.Resume()
	k.Resume(t)
	t.Logf("while both were frozen: %+v", frozen)

	// Back: keyed retries are accepted (or answer their first attempt's id, if its claim
	// landed after all), new sends are accepted.
	poll.Until(t, 60*time.Second, func() error {
		for _, key := range []string{"k-1", "k-2", ""} {
			res := r.timedSend(client, "after", key)
			if res.code != 202 && !(key != "" && res.code == 409) {
				return fmt.Errorf("after the freeze, key %q: %+v", key, res)
			}
		}
		return nil
	})
}

func TestSendsWhileKafkaIsFrozenAreAcceptedIntoTheOutboxAndReachKafkaOnceItIsBack(t *testing.T) {
	k := testenv.StartPrivateKafka(t) // never the shared broker: this test freezes it
	const deadline, wait = 4 * time.Second, time.Second
	r := startRegion(t, func(c *region.Config) {
		c.Kafka.Brokers = k.Config.Brokers
		c.Roles = []string{region.RoleAPI, region.RoleScheduler}
		c.RequestTimeout = deadline
		c.KafkaWait = wait
	})
	r.admit(r.app, "ada")
	client := &http.Client{Transport: testenv.RegionClient(t).Transport, Timeout: 30 * time.Second}

	var (
		mu      sync.Mutex
		results []sendResult
		n       int
	)
	send := func(phase string, keyed bool) sendResult {
		mu.Lock()
		n++
		key := ""
		if keyed {
			key = fmt.Sprintf("k-%d", n)
		}
		mu.Unlock()
		res := r.timedSend(client, phase, key)
		mu.Lock()
		results = append(results, res)
		mu.Unlock()
		return res
	}
	for i := 0; i < 4; i++ {
		if res := send("before", i%2 == 0); res.code != 202 {
			t.Fatalf("before the freeze: %+v", res)
		}
	}
	kept0 := counterValue(t, "herald_api_accepted_into_outbox_total", map[string]string{"region": r.cfg.Name, "tier": notify.Transactional})

	k.Pause(t)
	paused := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Since(paused) < 12*time.Second; i++ {
				send("frozen", (w+i)%2 == 0)
			}
		}()
	}
	wg.Wait()

	// While the broker is frozen every send is accepted, after kafka_wait, into the outbox:
	// no 503, no hang.
	var worst time.Duration
	frozen, codes := 0, map[string]int{}
	for _, res := range results {
		if res.transportErr != nil {
			t.Fatalf("a %s request failed without an answer after %s: %v", res.phase, res.took, res.transportErr)
		}
		if res.phase != "frozen" {
			continue
		}
		frozen++
		codes[fmt.Sprintf("%d %s", res.code, res.errCode)]++
		worst = max(worst, res.took)
		if res.code != 202 {
			t.Errorf("frozen: %+v", res)
		}
	}
	var inOutbox int
	if err := r.pg.QueryRow(t.Context(), `SELECT count(*) FROM scheduled_sends WHERE reason = 'outbox' AND app_id = $1`, r.app).Scan(&inOutbox); err != nil {
		t.Fatal(err)
	}
	kept := counterValue(t, "herald_api_accepted_into_outbox_total", map[string]string{"region": r.cfg.Name, "tier": notify.Transactional}) - kept0
	t.Logf("%d sends while frozen: %v; worst latency %s (kafka_wait %s, deadline %s); %d rows in the outbox, herald_api_accepted_into_outbox_total +%.0f",
		frozen, codes, worst, wait, deadline, inOutbox, kept)
	if frozen == 0 || codes["202 "] != frozen {
		t.Fatalf("sends while Kafka was frozen: %v, want every one 202", codes)
	}
	if worst > wait+2*time.Second {
		t.Fatalf("worst latency while frozen %s, over kafka_wait %s and the outbox's write", worst, wait)
	}
	if inOutbox == 0 || int(kept) < frozen {
		t.Fatalf("%d rows in the outbox and %.0f counted kept, for %d sends accepted while Kafka was frozen", inOutbox, kept, frozen)
	}
	k.Resume(t)

	// Back: every accepted id reaches the topic (the outbox's firing, or the first produce's
	// late acknowledgement, or both: a repeat of one id, which fan-out's dedup keys drop), each
	// key is one id, and the outbox empties.
	ids := map[string]string{} // key -> the id answered
	var accepted []string
	for _, res := range results {
		if res.code == 202 {
			accepted = append(accepted, res.id)
			if res.key != "" {
				ids[res.key] = res.id
			}
		}
	}
	poll.Until(t, 90*time.Second, func() error {
		onTopic, byKey := map[string]int{}, map[string]map[string]bool{}
		err := r.tryReadTopic(notify.IngressTopic(r.cfg.Name, notify.Transactional), func(m *sarama.ConsumerMessage) {
			e, _, err := notify.DecodeEvent(r.t.Context(), r.keys(), m.Value)
			if err != nil {
				t.Fatalf("decoding an event: %v", err)
			}
			onTopic[e.ID]++
			if e.Deferred {
				t.Errorf("event %s from the outbox is marked deferred: fan-out would skip its quiet hours", e.ID)
			}
			if e.IdempotencyKey != "" {
				if byKey[e.IdempotencyKey] == nil {
					byKey[e.IdempotencyKey] = map[string]bool{}
				}
				byKey[e.IdempotencyKey][e.ID] = true
			}
		})
		if err != nil {
			return fmt.Errorf("reading the topic: %w", err)
		}
		var missing []string
		for _, id := range accepted {
			if onTopic[id] == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			sort.Strings(missing)
			return fmt.Errorf("%d accepted ids not on the topic: %v", len(missing), missing)
		}
		for key, evs := range byKey {
			if len(evs) != 1 || !evs[ids[key]] {
				return fmt.Errorf("key %s: events %v on the topic, answered %s", key, evs, ids[key])
			}
		}
		var left, pending int
		if err := r.pg.QueryRow(t.Context(), `SELECT count(*) FROM scheduled_sends WHERE reason = 'outbox' AND app_id = $1`, r.app).Scan(&left); err != nil {
			return err
		}
		if err := r.pg.QueryRow(t.Context(), `SELECT count(*) FROM idempotency_keys WHERE app_id = $1 AND pending_value IS NOT NULL`, r.app).Scan(&pending); err != nil {
			return err
		}
		if left > 0 || pending > 0 {
			return fmt.Errorf("%d rows still in the outbox, %d claims pending", left, pending)
		}
		repeats := 0
		for _, c := range onTopic {
			repeats += c - 1
		}
		t.Logf("%d ids accepted, all on the topic (%d repeats of one id); the outbox is empty", len(accepted), repeats)
		return nil
	})

	// A retry with a key answered while frozen answers that key's id.
	for key, id := range ids {
		again := r.timedSend(client, "retry", key)
		if again.code != 409 || again.id != id {
			t.Fatalf("retry of %s: %+v, want 409 with %s", key, again, id)
		}
		break
	}
}

func TestSendsWhileCassandraStallsAreAnsweredWellWithinTheDeadline(t *testing.T) {
	// The accept path writes the accepted notification's row in the delivery log after Kafka
	// acknowledged the event; the row is an optimisation, so a stalled Cassandra (a node busy
	// starting, a long GC) must not hold the 202 until the request's deadline: on a busy
	// machine that answer then reached the gateway after its own deadline.
	const deadline = 4 * time.Second
	r, proxy, client := startAPIBehindCassandraProxy(t, deadline)
	if res := r.timedSend(client, "before", "k-before"); res.code != 202 {
		t.Fatalf("before the stall: %+v", res)
	}

	proxy.Stall()
	var accepted []string
	var worst time.Duration
	for i := range 6 {
		res := r.timedSend(client, "stalled", fmt.Sprintf("k-%d", i))
		if res.transportErr != nil || res.code != 202 {
			t.Fatalf("send %d while Cassandra stalls: %+v", i, res)
		}
		accepted = append(accepted, res.id)
		worst = max(worst, res.took)
	}
	proxy.Resume()
	t.Logf("6 sends while Cassandra stalled: all 202, worst %s (deadline %s)", worst, deadline)
	if worst > deadline/2 {
		t.Fatalf("a send took %s while Cassandra stalled: the accept waits on the delivery log (deadline %s)", worst, deadline)
	}

	// Every accepted event is on Kafka.
	poll.Until(t, 30*time.Second, func() error {
		onTopic := map[string]bool{}
		if err := r.tryReadTopic(notify.IngressTopic(r.cfg.Name, notify.Transactional), func(m *sarama.ConsumerMessage) {
			if e, _, err := notify.DecodeEvent(r.t.Context(), r.keys(), m.Value); err == nil {
				onTopic[e.ID] = true
			}
		}); err != nil {
			return err
		}
		for _, id := range accepted {
			if !onTopic[id] {
				return fmt.Errorf("accepted %s is not on the topic", id)
			}
		}
		return nil
	})
}
