//go:build integration

package region_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/userkeys"
)

// rawRecord is one record as Kafka stores it.
type rawRecord struct {
	topic      string
	partition  int32
	offset     int64
	key, value []byte
}

// rawRecords reads every record of every topic of the region, aborted transactions' records
// included (read_uncommitted): what anyone with access to the brokers could read.
func rawRecords(t *testing.T, kc kafka.Config, regionName string) []rawRecord {
	t.Helper()
	sc, err := kc.Sarama()
	if err != nil {
		t.Fatal(err)
	}
	sc.Consumer.IsolationLevel = sarama.ReadUncommitted
	cl, err := sarama.NewClient(kc.Brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cons, err := sarama.NewConsumerFromClient(cl)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	topics, err := cl.Topics()
	if err != nil {
		t.Fatal(err)
	}
	var out []rawRecord
	for _, topic := range topics {
		if !strings.HasPrefix(topic, regionName+".") {
			continue
		}
		parts, err := cl.Partitions(topic)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range parts {
			oldest, err1 := cl.GetOffset(topic, p, sarama.OffsetOldest)
			newest, err2 := cl.GetOffset(topic, p, sarama.OffsetNewest)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if _, err := kafka.ReadRange(t.Context(), cons, topic, p, oldest, newest, 10*time.Second, func(m *sarama.ConsumerMessage) {
				out = append(out, rawRecord{topic: topic, partition: p, offset: m.Offset, key: m.Key, value: m.Value})
			}); err != nil {
				t.Fatalf("reading %s/%d: %v", topic, p, err)
			}
		}
	}
	return out
}

// erasedDropped reads herald_erased_records_dropped_total{stage} from a /metrics page.
func erasedDropped(t *testing.T, metricsURL, stage string) float64 {
	t.Helper()
	resp, err := testenv.RegionClient(t).Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^herald_erased_records_dropped_total\{stage="` + stage + `"\} (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestErasureLeavesNothingOfTheUserReadableInAnyKafkaTopic sends to a user alone and to the user
// with another, plants a retry and a dead letter of theirs, erases them, then reads every topic
// of the region raw: the user's id, title, body and contact points appear nowhere in plaintext,
// no record opens to them with the region's keys (their key is gone), the other user's shared
// record still opens to the other user alone, and the fan-out meeting the erased user's record
// again drops it and processes the next record of the partition.
func TestErasureLeavesNothingOfTheUserReadableInAnyKafkaTopic(t *testing.T) {
	r := startRegion(t)
	ctx := t.Context()
	suffix := testenv.Suffix()
	ada, bob := "ada-"+suffix, "bob-"+suffix
	secrets := map[string]string{
		"user id": ada, "title": "Title-for-ada-" + suffix, "body": "Body-for-ada-" + suffix, "shared title": "Shared-title-" + suffix,
		"email": "ada." + suffix + "@example.com", "phone": "+33612340077", "device token": fmt.Sprintf("%064x", 4242),
		"metadata": "meta-ada-" + suffix,
	}
	r.call("PUT", "/v1/users/"+ada, map[string]any{"email": secrets["email"], "phone": secrets["phone"]}, r.app)
	r.call("POST", "/v1/users/"+ada+"/devices", map[string]any{"platform": "ios", "token": secrets["device token"], "device_id": "phone"}, r.app)
	r.call("PUT", "/v1/users/"+bob, map[string]any{"email": "bob." + suffix + "@example.com"}, r.app)

	code, b := r.call("POST", "/v1/notifications", map[string]any{"type": "transactional", "category": "otp", "title": secrets["title"],
		"body": secrets["body"], "metadata": map[string]string{"k": secrets["metadata"]}, "recipients": []string{ada},
		"channels": []string{"in_app", "email", "sms", "push"}}, r.app)
	if code != 202 {
		t.Fatalf("send: %d %v", code, b)
	}
	alone := b["notification_id"].(string)
	code, b = r.call("POST", "/v1/notifications", map[string]any{"type": "social", "category": "c", "title": secrets["shared title"], "body": "x",
		"recipients": []string{ada, bob}, "channels": []string{"in_app", "email"}}, r.app)
	if code != 202 {
		t.Fatalf("send: %d %v", code, b)
	}
	shared := b["notification_id"].(string)
	r.waitState(alone, ada, "email", "queued")
	r.waitState(shared, bob, "in_app", "delivered")

	// A retry and a dead letter of ada's (this region's dispatcher has no provider to make them).
	keys := r.keys()
	task := notify.Task{NotificationID: alone, AppID: r.app, Tier: notify.Transactional, UserID: ada, Channel: notify.Email,
		Content: notify.Content{Subject: secrets["title"], Text: secrets["body"]}, Target: notify.Target{Email: secrets["email"]}}
	p, err := kafka.NewProducer(r.cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, topic := range []string{dispatch.RetryTopic(r.cfg.Name, task.Tier, notify.Email, 1), dispatch.DLQTopic(r.cfg.Name, notify.Email)} {
		m, err := dispatch.RetryMessage(ctx, keys, topic, dispatch.Retry{Task: task, NotBefore: time.Now().Add(time.Hour), LastError: "503"})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}

	// Before the erasure every record about ada opens to her: the check below can see her.
	before := rawRecords(t, r.cfg.Kafka, r.cfg.Name)
	var adaIngress *rawRecord
	opened := 0
	for i, rec := range before {
		if !envelope.IsSealed(rec.value) {
			continue
		}
		o, err := keys.Open(ctx, rec.value)
		if err != nil {
			t.Fatalf("%s/%d before the erasure: %v", rec.topic, rec.offset, err)
		}
		for _, u := range o.Users {
			if u == ada {
				opened++
				if strings.HasPrefix(rec.topic, r.cfg.Name+".notify.") && len(o.Users) == 1 {
					adaIngress = &before[i]
				}
			}
		}
	}
	if opened < 6 || adaIngress == nil {
		t.Fatalf("only %d sealed records open to ada before the erasure (ingress record found: %v)", opened, adaIngress != nil)
	}

	code, b = r.call("DELETE", "/v1/users/"+ada, nil, r.app)
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
	var n int
	if err := r.pg.QueryRow(ctx, `SELECT count(*) FROM user_keys WHERE app_id = $1 AND user_id = $2`, r.app, ada).Scan(&n); err != nil || n != 0 {
		t.Errorf("ada's data key rows: %d (%v)", n, err)
	}

	after := rawRecords(t, r.cfg.Kafka, r.cfg.Name)
	fresh := userkeys.New(r.pg, testenv.MasterKeyring(t)) // no cache: what the stores hold now
	sharedOpens := false
	for _, rec := range after {
		for what, s := range secrets {
			if bytes.Contains(rec.value, []byte(s)) || bytes.Contains(rec.key, []byte(s)) {
				t.Errorf("%s/%d offset %d holds ada's %s in plaintext", rec.topic, rec.partition, rec.offset, what)
			}
		}
		if !envelope.IsSealed(rec.value) {
			continue
		}
		o, err := fresh.Open(ctx, rec.value)
		if envelope.IsSealed(rec.value) && err != nil && !notify.IsErased(err) {
			t.Errorf("%s/%d: %v", rec.topic, rec.offset, err)
		}
		for _, u := range o.Users {
			if u == ada {
				t.Errorf("%s/%d still opens to ada", rec.topic, rec.offset)
			}
			if u == bob && strings.HasPrefix(rec.topic, r.cfg.Name+".notify.") {
				sharedOpens = bytes.Contains(o.Content, []byte(secrets["shared title"]))
			}
		}
		for what, s := range secrets {
			if what != "shared title" && bytes.Contains(o.Content, []byte(s)) {
				t.Errorf("%s/%d opens (for %v) to ada's %s", rec.topic, rec.offset, o.Users, what)
			}
		}
	}
	if !sharedOpens {
		t.Error("the notification shared with bob no longer opens to bob")
	}

	// The fan-out meets ada's record again: dropped as erased, and the next record of the
	// partition (bob's, same tier) is processed.
	metrics := r.base + "/metrics"
	dropped := erasedDropped(t, metrics, "fanout")
	if err := p.Send(ctx, kafka.Message{Topic: adaIngress.topic, Key: string(adaIngress.key), Value: adaIngress.value}); err != nil {
		t.Fatal(err)
	}
	code, b = r.call("POST", "/v1/notifications", map[string]any{"type": "transactional", "category": "otp", "body": "next",
		"recipients": []string{bob}, "channels": []string{"in_app"}}, r.app)
	if code != 202 {
		t.Fatalf("send: %d %v", code, b)
	}
	r.waitState(b["notification_id"].(string), bob, "in_app", "delivered")
	if got := erasedDropped(t, metrics, "fanout"); got < dropped+1 {
		t.Errorf("herald_erased_records_dropped_total{stage=fanout} went from %v to %v, want one more", dropped, got)
	}
	_ = shared
}

// droppedErased reads herald_erased_records_dropped_total{stage} from this process's registry.
func droppedErased(t *testing.T, stage string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "herald_erased_records_dropped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" && l.GetValue() == stage {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestDispatchDropsAnErasedUsersTaskAndDeliversTheNextOnTheSamePartition seals a task for ada,
// destroys her data key (her erasure) before the dispatcher reads it, then queues bob's task
// behind it on the same partition: ada's is dropped as erased, counted, never sent nor
// retried, and bob's is delivered.
func TestDispatchDropsAnErasedUsersTaskAndDeliversTheNextOnTheSamePartition(t *testing.T) {
	e := startDispatch(t, nil)
	ctx := t.Context()
	keys := userkeys.New(e.pg, testenv.MasterKeyring(t))
	suffix := testenv.Suffix()
	ada, bob := e.task(notify.Email, "ada"), e.task(notify.Email, "bob")
	ada.Target.Email, bob.Target.Email = "ada-"+suffix+"@example.com", "bob-"+suffix+"@example.com"
	topic := notify.DispatchTopic(e.cfg.Name, ada.Tier, notify.Email)
	ma, err := notify.TaskMessage(ctx, keys, topic, ada)
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Destroy(ctx, e.app, "ada"); err != nil {
		t.Fatal(err)
	}
	mb, err := notify.TaskMessage(ctx, keys, topic, bob)
	if err != nil {
		t.Fatal(err)
	}
	before := droppedErased(t, "dispatch")
	if err := e.prod.Send(ctx, ma, mb); err != nil {
		t.Fatal(err)
	}
	e.checkDelivered(e.waitState(bob, notify.StateDelivered, 30*time.Second), "smtp", bob.Target.Email, "smtp")
	if got := droppedErased(t, "dispatch"); got != before+1 {
		t.Errorf("herald_erased_records_dropped_total{stage=dispatch} went from %v to %v, want one more", before, got)
	}
	if recs := e.records("smtp", ada.Target.Email); len(recs) != 0 {
		t.Errorf("the erased user's mail was sent: %+v", recs)
	}
	if states, err := e.log.States(ctx, ada.NotificationID, "", "", 10); err != nil || len(states) != 0 {
		t.Errorf("states of the erased user's task: %+v (%v)", states, err)
	}
	for _, l := range []int{1, 2, 3} {
		if n := (&running{t: t, cfg: e.cfg}).topicCount(dispatch.RetryTopic(e.cfg.Name, ada.Tier, notify.Email, l)); n != 0 {
			t.Errorf("retry level %d holds %d records: an erased record is never retried", l, n)
		}
	}
}

// TestReplayingDeadLettersDropsAnErasedUsersLetter replays a dead-letter topic holding an
// erased user's letter between two others: the erased one is dropped and counted, never put
// back on the dispatch topic, and the others are replayed.
func TestReplayingDeadLettersDropsAnErasedUsersLetter(t *testing.T) {
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
	for _, u := range []string{"bob", "ada", "cyd"} {
		dead := dispatch.Retry{Task: notify.Task{NotificationID: "n-" + u, AppID: "a", UserID: u, Channel: notify.SMS, Attempt: 6,
			Content: notify.Content{Text: "secret for " + u}, Target: notify.Target{Phone: "+33612345678"}}, LastError: "503", At: time.Now()}
		m, err := dispatch.RetryMessage(ctx, keys, dispatch.DLQTopic(c.Name, notify.SMS), dead)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := keys.Destroy(ctx, "a", "ada"); err != nil {
		t.Fatal(err)
	}
	listed, err := dispatch.ListDeadLetters(ctx, c.Kafka, keys, c.Name, notify.SMS, 10)
	if err != nil || len(listed) != 2 || listed[0].Task.UserID != "bob" || listed[1].Task.UserID != "cyd" {
		t.Fatalf("listed %+v (%v), want bob's and cyd's", listed, err)
	}
	before := droppedErased(t, "dlq_replay")
	n, err := dispatch.ReplayDeadLetters(ctx, c.Kafka, p, keys, c.Name, notify.SMS)
	if err != nil || n != 2 {
		t.Fatalf("replayed %d (%v), want 2", n, err)
	}
	if got := droppedErased(t, "dlq_replay"); got != before+1 {
		t.Errorf("herald_erased_records_dropped_total{stage=dlq_replay} went from %v to %v, want one more", before, got)
	}
	var users []string
	for _, task := range r.readTasks(notify.SMS) {
		users = append(users, task.UserID)
	}
	if strings.Join(users, ",") != "bob,cyd" {
		t.Fatalf("replayed tasks of %v, want bob and cyd", users)
	}
	if n, err := dispatch.ReplayDeadLetters(ctx, c.Kafka, p, keys, c.Name, notify.SMS); err != nil || n != 0 {
		t.Fatalf("second replay sent %d (%v)", n, err)
	}
}
