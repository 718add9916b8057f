package dispatch

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/herald-notify/herald/region/deadletter"
	"github.com/herald-notify/herald/region/deliverylog"
	"github.com/herald-notify/herald/region/notify"
)

// scriptedLog answers its writes with errs in turn, then succeeds.
type scriptedLog struct {
	mu     sync.Mutex
	errs   []error
	writes int
}

func (l *scriptedLog) Write(context.Context, []deliverylog.State, []deliverylog.Attempt) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	if len(l.errs) == 0 {
		return nil
	}
	err := l.errs[0]
	l.errs = l.errs[1:]
	return err
}

// Recording a task's outcome is retried while it fails transiently, within failure_retry; a
// permanent refusal, or a transient one past the policy, ends process with the error (the
// consumer dead-letters the record) instead of retrying forever.
func TestProcessRetriesRecordingWithinItsPolicyAndGivesUpOnAPermanentRefusal(t *testing.T) {
	down := &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}
	refused := deadletter.MarkPermanent(errors.New("invalid request"), deadletter.ReasonRefused)
	for _, c := range []struct {
		name       string
		errs       []error
		wantErr    bool
		wantWrites int
	}{
		{"transient that clears", []error{down, down}, false, 3},
		{"permanent", []error{refused}, true, 1},
		{"transient past max_attempts", []error{down, down, down, down, down}, true, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.FailureRetry = deadletter.Policy{MaxAttempts: 3, MaxElapsed: time.Minute, InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}
			f := newFixture(cfg, map[string][2]Provider{KindSMS: {&fakeProvider{name: "twilio"}, nil}})
			log := &scriptedLog{errs: c.errs}
			f.d.deps.Deliveries = log
			task := sampleTask(notify.SMS)
			task.Target.Phone = "+447700900123"
			err := f.d.process(context.Background(), task, nil)
			if (err != nil) != c.wantErr || log.writes != c.wantWrites {
				t.Fatalf("err %v after %d writes; want error %v after %d", err, log.writes, c.wantErr, c.wantWrites)
			}
			if c.name == "permanent" {
				if class, reason := deadletter.Classify(err); class != deadletter.Permanent || reason != deadletter.ReasonRefused {
					t.Fatalf("classified %s/%s", class, reason)
				}
			}
		})
	}
}

func TestValidTaskRefusesTasksNoProviderCanBeGiven(t *testing.T) {
	c := &consumer{channel: notify.Email}
	good := notify.Task{NotificationID: "n", AppID: "a", UserID: "u", Channel: notify.Email}
	if err := c.validTask(good); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*notify.Task){
		"no notification": func(t *notify.Task) { t.NotificationID = "" },
		"no user":         func(t *notify.Task) { t.UserID = "" },
		"no app":          func(t *notify.Task) { t.AppID = "" },
		"other channel":   func(t *notify.Task) { t.Channel = notify.SMS },
	} {
		task := good
		mutate(&task)
		err := c.validTask(task)
		if class, reason := deadletter.Classify(err); err == nil || class != deadletter.Permanent || reason != deadletter.ReasonInvalid {
			t.Errorf("%s: %v (%s/%s)", name, err, class, reason)
		}
	}
}
