package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/region/deadletter"
	"github.com/herald-notify/herald/region/notify"
)

func TestARowFailingTransientlyBacksOffThenIsDeadLetteredPastItsPolicy(t *testing.T) {
	p := &Poller{Log: slog.New(slog.DiscardHandler), Cfg: Config{FailureRetry: deadletter.Policy{MaxAttempts: 3, MaxElapsed: time.Hour, InitialBackoff: time.Second, MaxBackoff: 4 * time.Second}}}
	d := &due{id: 7}
	now := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	down := errors.New("data keys unavailable")
	for attempt := 1; attempt < 3; attempt++ {
		if err := p.verdict(d, down, now); err != nil {
			t.Fatalf("attempt %d dead-lettered: %v", attempt, err)
		}
		if p.mayTry(d.id, now) {
			t.Fatalf("attempt %d: tried again without backing off", attempt)
		}
		now = now.Add(10 * time.Second) // past any backoff of this policy (at most 4 s + 50 %)
		if !p.mayTry(d.id, now) {
			t.Fatalf("attempt %d: still backing off after 10 s", attempt)
		}
	}
	if err := p.verdict(d, down, now); !errors.Is(err, down) {
		t.Fatalf("third attempt: %v, want it dead-lettered", err)
	}
	if !p.mayTry(d.id, now) || len(p.failing) != 0 {
		t.Fatalf("failure not forgotten after dead-lettering: %+v", p.failing)
	}
}

func TestARowFailingTransientlyIsDeadLetteredPastMaxElapsed(t *testing.T) {
	p := &Poller{Log: slog.New(slog.DiscardHandler), Cfg: Config{FailureRetry: deadletter.Policy{MaxAttempts: 1000, MaxElapsed: time.Minute}}}
	d := &due{id: 8}
	now := time.Now()
	if err := p.verdict(d, errors.New("down"), now); err != nil {
		t.Fatal(err)
	}
	if err := p.verdict(d, errors.New("down"), now.Add(2*time.Minute)); err == nil {
		t.Fatal("a row failing for 2 minutes under a 1-minute policy was kept")
	}
}

func TestAPermanentFailureOfARowIsDeadLetteredAtOnce(t *testing.T) {
	p := &Poller{Log: slog.New(slog.DiscardHandler)}
	for _, err := range []error{
		&pgconn.PgError{Code: "22P05"},
		deadletter.MarkPermanent(errors.New("unknown tier"), deadletter.ReasonInvalid),
	} {
		if got := p.verdict(&due{id: 1}, err, time.Now()); got == nil {
			t.Errorf("%v kept for a retry", err)
		}
	}
}

func TestSealRowTakesTheRecipientsOutAndMarksTheEventDeferred(t *testing.T) {
	p := &Poller{} // no keys: plain, as in the stages' unit tests
	for _, c := range []struct {
		name, raw string
		ok        bool
	}{
		{"list send", `{"id":"n1","app_id":"a","recipients":["ada","bob"],"tier":"social"}`, true},
		{"topic send", `{"id":"n2","app_id":"a","topic":"news"}`, true},
		{"id of the wrong type", `{"id":7,"app_id":"a","recipients":["ada"]}`, true},
		{"recipients unreadable", `{"id":"n3","recipients":"ada"}`, false},
		{"not an object", `["x"]`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, value, err := p.sealRow(context.Background(), &due{id: 3, app: "a", raw: []byte(c.raw)})
			if (err == nil) != c.ok {
				t.Fatalf("err %v, want ok %v", err, c.ok)
			}
			if !c.ok {
				return
			}
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(value, &obj); err != nil {
				t.Fatal(err)
			}
			if _, ok := obj["recipients"]; ok || string(obj["deferred"]) != "true" {
				t.Fatalf("record %s", value)
			}
		})
	}
}

// refusing is a Kafka producer that refuses some records as too large, or is down.
type refusing struct {
	tooLarge map[string]bool
	down     bool
	sent     []string
}

func (p *refusing) Send(_ context.Context, msgs ...kafka.Message) error {
	if p.down {
		return fmt.Errorf("%w: %w", kafka.ErrUnavailable, sarama.ErrOutOfBrokers)
	}
	for _, m := range msgs {
		if p.tooLarge[m.Key] {
			return fmt.Errorf("%w: %w", kafka.ErrUnavailable, sarama.ErrMessageSizeTooLarge)
		}
	}
	for _, m := range msgs {
		p.sent = append(p.sent, m.Key)
	}
	return nil
}

func TestSendSetsAsideOnlyTheRecordKafkaRefusesAndRetriesTheBatchWhileKafkaIsDown(t *testing.T) {
	rows := func() []*due {
		return []*due{{id: 1, msg: kafka.Message{Key: "a"}}, {id: 2, msg: kafka.Message{Key: "big"}}, {id: 3, msg: kafka.Message{Key: "c"}}}
	}
	prod := &refusing{tooLarge: map[string]bool{"big": true}}
	p := &Poller{Producer: prod, Log: slog.New(slog.DiscardHandler)}
	batch := rows()
	if err := p.send(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if batch[0].failed != nil || batch[2].failed != nil || batch[1].failed == nil {
		t.Fatalf("failed: %v %v %v", batch[0].failed, batch[1].failed, batch[2].failed)
	}
	if class, reason := deadletter.Classify(batch[1].failed); class != deadletter.Permanent || reason != deadletter.ReasonTooLarge {
		t.Fatalf("refusal classified %s/%s", class, reason)
	}
	for _, n := range []int{1, 3} {
		p.Producer = &refusing{down: true}
		batch = rows()[:n]
		if err := p.send(context.Background(), batch); err == nil {
			t.Fatalf("%d rows: Kafka down was not an error of the batch", n)
		}
		for _, d := range batch {
			if d.failed != nil {
				t.Fatalf("%d rows: row %d set aside while Kafka was down", n, d.id)
			}
		}
	}
}

func TestFireKeyIsOneFiringsWhateverTheRecipientsOrder(t *testing.T) {
	due := time.Date(2026, 12, 6, 7, 0, 0, 0, time.UTC)
	later := due.Add(time.Second)
	base := notify.Event{ID: "n1", AppID: "app", Recipients: []string{"a", "b"}, OnlyChannels: []string{"email", "sms"}, SendAt: &due, Deferred: true}
	with := func(f func(*notify.Event)) notify.Event {
		e := base
		e.Recipients, e.OnlyChannels = slices.Clone(base.Recipients), slices.Clone(base.OnlyChannels)
		f(&e)
		return e
	}
	same := []notify.Event{
		with(func(e *notify.Event) { e.Recipients = []string{"b", "a"} }),
		with(func(e *notify.Event) { e.OnlyChannels = []string{"sms", "email"} }),
		with(func(e *notify.Event) { d := due.In(time.FixedZone("x", 3600)); e.SendAt = &d }),
		with(func(e *notify.Event) { e.Category = "other content, same firing" }),
	}
	for i, e := range same {
		if FireKey(e) != FireKey(base) {
			t.Errorf("same firing %d: another key", i)
		}
	}
	differ := map[string]notify.Event{
		"another notification":     with(func(e *notify.Event) { e.ID = "n2" }),
		"another app":              with(func(e *notify.Event) { e.AppID = "app2" }),
		"another recipient":        with(func(e *notify.Event) { e.Recipients = []string{"a"} }),
		"recipients run together":  with(func(e *notify.Event) { e.Recipients = []string{"a\x00b"} }),
		"a recipient as a channel": with(func(e *notify.Event) { e.Recipients, e.OnlyChannels = []string{"a"}, []string{"b", "email", "sms"} }),
		"another due time":         with(func(e *notify.Event) { e.SendAt = &later }),
		"no due time":              with(func(e *notify.Event) { e.SendAt = nil }),
		"a topic":                  with(func(e *notify.Event) { e.Topic = "news" }),
		"other channels":           with(func(e *notify.Event) { e.OnlyChannels = []string{"email"} }),
	}
	seen := map[string]string{FireKey(base): "base"}
	for name, e := range differ {
		k := FireKey(e)
		if prev, ok := seen[k]; ok {
			t.Errorf("%s: same key as %s", name, prev)
		}
		seen[k] = name
	}
}
