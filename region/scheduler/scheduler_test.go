package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/herald-notify/herald/region/deadletter"
)

func TestARowFailingTransientlyBacksOffThenIsDeadLetteredPastItsPolicy(t *testing.T) {
	p := &Poller{Log: slog.New(slog.DiscardHandler), Retry: deadletter.Policy{MaxAttempts: 3, MaxElapsed: time.Hour, InitialBackoff: time.Second, MaxBackoff: 4 * time.Second}}
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
	p := &Poller{Log: slog.New(slog.DiscardHandler), Retry: deadletter.Policy{MaxAttempts: 1000, MaxElapsed: time.Minute}}
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
