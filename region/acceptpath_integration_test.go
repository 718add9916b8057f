//go:build integration

package region_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"

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
	eventually(t, 10*time.Second, func() error {
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
