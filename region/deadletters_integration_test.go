//go:build integration

package region_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/notify"
)

func TestDeadLettersAreListedAndReplayedOnce(t *testing.T) {
	c := testRegion(t)
	ctx := testenv.Context(t, 2*time.Minute)
	if err := region.Migrate(ctx, c, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	p, err := kafka.NewProducer(c.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	r := &running{t: t, cfg: c}
	keys := r.keys()
	for _, u := range []string{"ada", "bob"} {
		dead := dispatch.Retry{Task: notify.Task{NotificationID: "n-" + u, AppID: "a", UserID: u, Channel: notify.SMS, Attempt: 6,
			Target: notify.Target{Phone: "+33612345678"}}, LastError: "503 Service Unavailable", At: time.Now()}
		m, err := dispatch.RetryMessage(ctx, keys, dispatch.DLQTopic(c.Name, notify.SMS), dead)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	letters, err := dispatch.ListDeadLetters(ctx, c.Kafka, keys, c.Name, notify.SMS, 10)
	if err != nil || len(letters) != 2 || letters[0].LastError == "" || letters[0].Task.UserID != "ada" {
		t.Fatalf("list: %+v %v", letters, err)
	}
	if one, _ := dispatch.ListDeadLetters(ctx, c.Kafka, keys, c.Name, notify.SMS, 1); len(one) != 1 {
		t.Fatalf("limit 1 listed %d", len(one))
	}
	n, err := dispatch.ReplayDeadLetters(ctx, c.Kafka, p, keys, c.Name, notify.SMS)
	if err != nil || n != 2 {
		t.Fatalf("replay: %d %v", n, err)
	}
	tasks := r.readTasks(notify.SMS)
	if len(tasks) != 2 || tasks[0].Attempt != 0 || tasks[0].UserID != "ada" {
		t.Fatalf("replayed tasks %+v", tasks)
	}
	if n, err := dispatch.ReplayDeadLetters(ctx, c.Kafka, p, keys, c.Name, notify.SMS); err != nil || n != 0 {
		t.Fatalf("second replay sent %d again (%v)", n, err)
	}
}
