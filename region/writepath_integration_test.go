//go:build integration

package region_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/userkeys"
)

// stateOf finds the state of user x channel in a status answer.
func stateOf(status map[string]any, user, channel string) (state, reason string) {
	recips, _ := status["recipients"].([]any)
	for _, r := range recips {
		rm := r.(map[string]any)
		if rm["user_id"] != user {
			continue
		}
		for _, c := range rm["channels"].([]any) {
			cm := c.(map[string]any)
			if cm["channel"] == channel {
				reason, _ := cm["reason"].(string)
				return cm["state"].(string), reason
			}
		}
	}
	return "", ""
}

func (r *running) waitState(id, user, channel, want string) map[string]any {
	r.t.Helper()
	var last map[string]any
	poll.Until(r.t, 30*time.Second, func() error {
		code, st := r.call("GET", "/v1/notifications/"+id+"/status", nil, r.app)
		last = st
		if code != 200 {
			return fmt.Errorf("status %d %v", code, st)
		}
		if got, _ := stateOf(st, user, channel); got != want {
			return fmt.Errorf("%s/%s state %q, want %q", user, channel, got, want)
		}
		return nil
	})
	return last
}

// topicCount sums the newest offsets of a topic's partitions: how many records it ever held.
func (r *running) topicCount(topic string) int64 {
	r.t.Helper()
	sc, _ := r.cfg.Kafka.Sarama()
	cl, err := sarama.NewClient(r.cfg.Kafka.Brokers, sc)
	if err != nil {
		r.t.Fatal(err)
	}
	defer cl.Close()
	parts, err := cl.Partitions(topic)
	if err != nil {
		r.t.Fatal(err)
	}
	var n int64
	for _, p := range parts {
		off, err := cl.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			r.t.Fatal(err)
		}
		n += off
	}
	return n
}

// readTasks reads every committed task on a channel's dispatch topics (every tier's).
func (r *running) readTasks(channel string) []notify.Task {
	r.t.Helper()
	var out []notify.Task
	for _, tier := range notify.Tiers {
		r.readTopic(notify.DispatchTopic(r.cfg.Name, tier, channel), func(m *sarama.ConsumerMessage) {
			task, err := notify.DecodeTask(r.t.Context(), r.keys(), m.Value)
			if err != nil {
				r.t.Fatal(err)
			}
			if notify.DispatchTier(task.Tier) != tier {
				r.t.Fatalf("a task of tier %q on the %s topic", task.Tier, tier)
			}
			out = append(out, task)
		})
	}
	return out
}

// keys opens the region's sealed records with its data keys.
func (r *running) keys() *userkeys.Keys {
	r.t.Helper()
	if r.pg == nil {
		pg, err := postgres.Connect(r.t.Context(), r.cfg.Postgres)
		if err != nil {
			r.t.Fatal(err)
		}
		r.t.Cleanup(pg.Close)
		r.pg = pg
	}
	return userkeys.New(r.pg, testenv.MasterKeyring(r.t))
}

// waitTasks reads a channel's tasks until there are at least n, for up to 10 s: a delivery's
// state is written before its task goes out, in a transaction that may linger for more events.
func (r *running) waitTasks(channel string, n int) []notify.Task {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tasks := r.readTasks(channel)
		if len(tasks) >= n || time.Now().After(deadline) {
			return tasks
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// committedCount counts the records of a topic that committed transactions (or none) made
// visible: fan-out's hand-off topics also hold transaction markers and aborted records.
func (r *running) committedCount(topic string) int64 {
	r.t.Helper()
	var n int64
	r.readTopic(topic, func(*sarama.ConsumerMessage) { n++ })
	return n
}

// readTopic hands fn every record of a topic a read_committed consumer sees.
func (r *running) readTopic(topic string, fn func(*sarama.ConsumerMessage)) {
	r.t.Helper()
	if err := r.tryReadTopic(topic, fn); err != nil {
		r.t.Fatal(err)
	}
}

// tryReadTopic reads every record of topic, or says why it could not: a broker that was just
// paused may answer "not the leader" for a moment, which a caller polling with a deadline
// retries.
func (r *running) tryReadTopic(topic string, fn func(*sarama.ConsumerMessage)) error {
	sc, _ := r.cfg.Kafka.Sarama()
	cl, err := sarama.NewClient(r.cfg.Kafka.Brokers, sc)
	if err != nil {
		return err
	}
	defer cl.Close()
	cons, err := sarama.NewConsumerFromClient(cl)
	if err != nil {
		return err
	}
	defer cons.Close()
	parts, err := cl.Partitions(topic)
	if err != nil {
		return err
	}
	for _, p := range parts {
		newest, err := cl.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return err
		}
		oldest, err := cl.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			return err
		}
		// A gap left by an aborted transaction ends a partition's read after a pause.
		if _, err := kafka.ReadRange(context.Background(), cons, topic, p, oldest, newest, 2*time.Second, fn); err != nil && !errors.Is(err, kafka.ErrIdle) {
			return err
		}
	}
	return nil
}

func (r *running) inboxRows(user string) int {
	r.t.Helper()
	var n int
	if err := r.cass.Query(`SELECT count(*) FROM notification_log WHERE app_id = ? AND user_id = ? AND bucket = ?`,
		r.app, user, time.Now().UTC().Year()*100+int(time.Now().UTC().Month())).Scan(&n); err != nil {
		r.t.Fatal(err)
	}
	return n
}

func TestInAppNotificationReachesTheInboxAndStatusShowsEachChannel(t *testing.T) {
	r := startRegion(t)
	if code, body := r.call("PUT", "/v1/users/ada", map[string]any{"email": "ada@example.com"}, r.app); code != 201 {
		t.Fatalf("put user: %d %v", code, body)
	}
	code, body := r.call("POST", "/v1/notifications", map[string]any{
		"type": "social", "category": "comment", "title": "New comment", "body": "Bob replied", "link": "https://example.com/c/1",
		"recipients": []string{"ada", "bob"}, "channels": []string{"in_app", "email"}, "metadata": map[string]string{"post": "1"},
	}, r.app)
	if code != 202 {
		t.Fatalf("send: %d %v", code, body)
	}
	id := body["notification_id"].(string)
	r.waitState(id, "ada", "in_app", "delivered")
	r.waitState(id, "ada", "email", "queued")
	st := r.waitState(id, "bob", "in_app", "delivered")
	if s, reason := stateOf(st, "bob", "email"); s != "suppressed" || reason != "no_address" {
		t.Fatalf("bob email: %s %s", s, reason)
	}
	poll.Until(t, 10*time.Second, func() error {
		_, st = r.call("GET", "/v1/notifications/"+id+"/status", nil, r.app)
		if n := st["notification"].(map[string]any); n["fanout_path"] != "list" {
			return fmt.Errorf("fan-out not recorded yet: %v", n)
		}
		return nil
	})
	n := st["notification"].(map[string]any)
	if n["fanout_path"] != "list" || n["type"] != "social" || n["category"] != "comment" {
		t.Fatalf("notification row: %v", n)
	}
	// In-app deliveries are the inbox rows themselves; delivery_attempt holds provider calls.
	if attempts := st["attempts"].([]any); len(attempts) != 0 {
		t.Fatalf("want no provider attempts, got %v", attempts)
	}
	// The inbox row is in Cassandra, in ada's partition, with the content.
	var title, link string
	if err := r.cass.Query(`SELECT title, link FROM notification_log WHERE app_id = ? AND user_id = ? AND bucket = ? LIMIT 1`,
		r.app, "ada", time.Now().UTC().Year()*100+int(time.Now().UTC().Month())).Scan(&title, &link); err != nil {
		t.Fatal(err)
	}
	if title != "New comment" || link != "https://example.com/c/1" {
		t.Fatalf("inbox row: %q %q", title, link)
	}
	// The email task is on the region's email dispatch topic, keyed to ada, with her address.
	tasks := r.waitTasks(notify.Email, 1)
	if len(tasks) != 1 || tasks[0].UserID != "ada" || tasks[0].Target.Email != "ada@example.com" || tasks[0].Content.Subject != "New comment" {
		t.Fatalf("email tasks: %+v", tasks)
	}
	if tasks[0].ExpiresAt.IsZero() {
		t.Fatal("task has no expiry")
	}
	// Another app sees nothing of it.
	if code, _ := r.call("GET", "/v1/notifications/"+id+"/status", nil, "other-app"); code != 404 {
		t.Fatalf("other app got status %d", code)
	}
}

func TestInvalidSendRequestsAre400WithCodeAndFieldAndNeverReachKafka(t *testing.T) {
	r := startRegion(t)
	tpl := map[string]any{"type": "transactional", "category": "otp", "content": map[string]any{"sms": map[string]string{"text": "{{.code}} is your code"}}}
	if code, body := r.call("PUT", "/v1/templates/otp", tpl, r.app); code != 201 {
		t.Fatalf("put template: %d %v", code, body)
	}
	many := make([]string, 1001)
	for i := range many {
		many[i] = fmt.Sprintf("u%d", i)
	}
	tests := []struct {
		name      string
		body      any
		app       string
		wantCode  string
		wantField string
	}{
		{"malformed json", `{"type": "social",`, r.app, "malformed_json", ""},
		{"not an object", `[1,2]`, r.app, "malformed_json", ""},
		{"recipients key in another case", `{"type":"social","category":"c","body":"b","Recipients":["u"]}`, r.app, "unknown_field", "Recipients"},
		{"recipients key twice", `{"type":"social","category":"c","body":"b","recipients":["u"],"recipients":["v"]}`, r.app, "duplicate_field", "recipients"},
		{"empty topic beside recipients", `{"type":"transactional","category":"otp","body":"1","recipients":["u"],"topic":""}`, r.app, "conflicting_fields", "topic"},
		{"null topic", `{"type":"social","category":"c","body":"b","topic":null}`, r.app, "invalid_field", "topic"},
		{"NUL in the body", `{"type":"social","category":"c","body":"a\u0000b","recipients":["u"],"send_at":"2099-01-01T00:00:00Z"}`, r.app, "invalid_field", "body"},
		{"invalid UTF-8", "{\"type\":\"social\",\"category\":\"c\",\"body\":\"\xff\",\"recipients\":[\"u\"]}", r.app, "invalid_field", "body"},
		{"javascript link", map[string]any{"type": "social", "category": "c", "body": "b", "link": "javascript://x%0aalert(1)", "recipients": []string{"u"}}, r.app, "invalid_field", "link"},
		{"user id ..", map[string]any{"type": "social", "category": "c", "body": "b", "recipients": []string{".."}}, r.app, "invalid_field", "recipients[0]"},
		{"trailing data", `{"type":"social","category":"c","body":"b","recipients":["u"]} {}`, r.app, "malformed_json", ""},
		{"unknown field", map[string]any{"type": "social", "category": "c", "body": "b", "recipients": []string{"u"}, "priority": 1}, r.app, "unknown_field", "priority"},
		{"missing type", map[string]any{"category": "c", "body": "b", "recipients": []string{"u"}}, r.app, "missing_field", "type"},
		{"unknown type", map[string]any{"type": "urgent", "category": "c", "body": "b", "recipients": []string{"u"}}, r.app, "invalid_type", "type"},
		{"wrong field type", map[string]any{"type": "social", "category": "c", "body": "b", "recipients": "u"}, r.app, "invalid_field", "recipients"},
		{"unknown template", map[string]any{"type": "transactional", "template_id": "nope", "recipients": []string{"u"}}, r.app, "unknown_template", "template_id"},
		{"template of another type", map[string]any{"type": "marketing", "template_id": "otp", "data": map[string]any{"code": "1"}, "recipients": []string{"u"}}, r.app, "template_type_mismatch", "template_id"},
		{"template of another app", map[string]any{"type": "transactional", "template_id": "otp", "data": map[string]any{"code": "1"}, "recipients": []string{"u"}}, "other-app", "unknown_template", "template_id"},
		{"missing variable", map[string]any{"type": "transactional", "template_id": "otp", "data": map[string]any{}, "recipients": []string{"u"}}, r.app, "missing_variable", "data.code"},
		{"template and inline", map[string]any{"type": "transactional", "template_id": "otp", "body": "x", "recipients": []string{"u"}}, r.app, "conflicting_fields", "template_id"},
		{"no content", map[string]any{"type": "social", "category": "c", "recipients": []string{"u"}}, r.app, "missing_field", "body"},
		{"empty recipients", map[string]any{"type": "social", "category": "c", "body": "b", "recipients": []string{}}, r.app, "missing_field", "recipients"},
		{"too many recipients", map[string]any{"type": "social", "category": "c", "body": "b", "recipients": many}, r.app, "too_many_recipients", "recipients"},
		{"bad recipient id", map[string]any{"type": "social", "category": "c", "body": "b", "recipients": []string{"ok", "bad id"}}, r.app, "invalid_field", "recipients[1]"},
		{"recipients and topic", map[string]any{"type": "social", "category": "c", "body": "b", "recipients": []string{"u"}, "topic": "t"}, r.app, "conflicting_fields", "topic"},
		{"unknown channel", map[string]any{"type": "social", "category": "c", "body": "b", "recipients": []string{"u"}, "channels": []string{"fax"}}, r.app, "invalid_channel", "channels[0]"},
		{"bad send_at", map[string]any{"type": "social", "category": "c", "body": "b", "recipients": []string{"u"}, "send_at": "tomorrow"}, r.app, "invalid_send_at", "send_at"},
		{"send_at too far", map[string]any{"type": "social", "category": "c", "body": "b", "recipients": []string{"u"}, "send_at": time.Now().AddDate(0, 2, 0).Format(time.RFC3339)}, r.app, "invalid_send_at", "send_at"},
		{"oversized body", map[string]any{"type": "social", "category": "c", "body": strings.Repeat("x", 300<<10), "recipients": []string{"u"}}, r.app, "payload_too_large", ""},
		{"oversized text", map[string]any{"type": "social", "category": "c", "body": strings.Repeat("x", 9<<10), "recipients": []string{"u"}}, r.app, "invalid_field", "body"},
		{"bad category", map[string]any{"type": "social", "category": "Bad Cat", "body": "b", "recipients": []string{"u"}}, r.app, "invalid_field", "category"},
		{"missing app", map[string]any{"type": "social", "category": "c", "body": "b", "recipients": []string{"u"}}, "", "missing_app", "X-Herald-App"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := r.call("POST", "/v1/notifications", tt.body, tt.app)
			if code != 400 {
				t.Fatalf("status %d, want 400: %v", code, body)
			}
			e, _ := body["error"].(map[string]any)
			if e["code"] != tt.wantCode || (tt.wantField != "" && e["field"] != tt.wantField) || e["message"] == "" {
				t.Fatalf("error %v, want code %s field %s", e, tt.wantCode, tt.wantField)
			}
		})
	}
	for _, tier := range notify.Tiers {
		if n := r.topicCount(notify.IngressTopic(r.cfg.Name, tier)); n != 0 {
			t.Fatalf("%d records reached the %s topic", n, tier)
		}
	}
}

func TestIdempotencyKeyReusedGets409WithTheOriginalNotification(t *testing.T) {
	r := startRegion(t)
	req := map[string]any{"type": "transactional", "category": "otp", "body": "123456", "recipients": []string{"ada"}, "channels": []string{"in_app"}, "idempotency_key": "login-42"}
	code, first := r.call("POST", "/v1/notifications", req, r.app)
	if code != 202 {
		t.Fatalf("first: %d %v", code, first)
	}
	code, second := r.call("POST", "/v1/notifications", req, r.app)
	if code != 409 || second["notification_id"] != first["notification_id"] {
		t.Fatalf("second: %d %v", code, second)
	}
	if e := second["error"].(map[string]any); e["code"] != "duplicate_idempotency_key" || e["field"] != "idempotency_key" {
		t.Fatalf("409 body %v", second)
	}
	// The same key from another app is another request.
	if code, _ := r.call("POST", "/v1/notifications", req, "other-app"); code != 202 {
		t.Fatalf("other app: %d", code)
	}
	r.waitState(first["notification_id"].(string), "ada", "in_app", "delivered")
	// Both apps' events are on the topic and fan-out has handled every event there: a second
	// one from the 409 would be on the topic and in ada's inbox by now.
	topic := notify.IngressTopic(r.cfg.Name, notify.Transactional)
	poll.Until(t, 30*time.Second, func() error {
		if n := r.topicCount(topic); n < 2 {
			return fmt.Errorf("%d events on the topic", n)
		}
		return nil
	})
	r.waitConsumed(r.cfg.Name+".fanout."+notify.Transactional, topic)
	if n := r.inboxRows("ada"); n != 1 {
		t.Fatalf("ada has %d inbox rows, want 1", n)
	}
	if n := r.topicCount(topic); n != 2 {
		t.Fatalf("%d events on the topic, want 2 (one per app)", n)
	}
}

func TestTemplatesRenderPerChannelAndAreScopedByApp(t *testing.T) {
	r := startRegion(t)
	tpl := map[string]any{"type": "social", "category": "comment", "content": map[string]any{
		"in_app": map[string]string{"title": "{{.who}} commented", "body": "{{.text}}"},
		"email":  map[string]string{"subject": "{{.who}} commented", "html": "<p>{{.text}}</p>"},
	}}
	if code, b := r.call("PUT", "/v1/templates/comment", tpl, r.app); code != 201 {
		t.Fatalf("put: %d %v", code, b)
	}
	if code, b := r.call("PUT", "/v1/templates/comment", tpl, r.app); code != 200 || b["version"].(float64) != 2 {
		t.Fatalf("replace: %d %v", code, b)
	}
	if code, _ := r.call("GET", "/v1/templates/comment", nil, "other-app"); code != 404 {
		t.Fatalf("other app read the template: %d", code)
	}
	bad := map[string]any{"type": "social", "category": "comment", "content": map[string]any{"push": map[string]string{"body": "{{.x"}}}
	if code, b := r.call("PUT", "/v1/templates/broken", bad, r.app); code != 400 || b["error"].(map[string]any)["field"] != "content.push.body" {
		t.Fatalf("broken template: %d %v", code, b)
	}
	r.call("PUT", "/v1/users/ada", map[string]any{"email": "ada@example.com"}, r.app)
	code, b := r.call("POST", "/v1/notifications", map[string]any{"type": "social", "template_id": "comment",
		"data": map[string]any{"who": "Bob", "text": "<b>hi</b>"}, "recipients": []string{"ada"}}, r.app)
	if code != 202 {
		t.Fatalf("send: %d %v", code, b)
	}
	id := b["notification_id"].(string)
	r.waitState(id, "ada", "email", "queued")
	st := r.waitState(id, "ada", "in_app", "delivered")
	if s, _ := stateOf(st, "ada", "push"); s != "" {
		t.Fatalf("push decided although the template has no push content: %s", s)
	}
	tasks := r.waitTasks(notify.Email, 1)
	if len(tasks) != 1 || tasks[0].Content.HTML != "<p>&lt;b&gt;hi&lt;/b&gt;</p>" || tasks[0].Content.Subject != "Bob commented" {
		t.Fatalf("email task content: %+v", tasks)
	}
	if code, _ := r.call("DELETE", "/v1/templates/comment", nil, r.app); code != 204 {
		t.Fatalf("delete: %d", code)
	}
}

func TestTopicAboveThresholdFansOutOnReadAndBelowOnWrite(t *testing.T) {
	r := startRegion(t)
	for i := 0; i < 8; i++ {
		if code, _ := r.call("PUT", fmt.Sprintf("/v1/topics/news/subscribers/u%d", i), nil, r.app); code != 201 {
			t.Fatalf("subscribe: %d", code)
		}
	}
	if code, b := r.call("GET", "/v1/topics/news", nil, r.app); code != 200 || b["subscribers"].(float64) != 8 {
		t.Fatalf("count: %d %v", code, b)
	}
	send := func() string {
		code, b := r.call("POST", "/v1/notifications", map[string]any{"type": "social", "category": "news", "title": "Hi", "body": "News", "topic": "news", "channels": []string{"in_app"}}, r.app)
		if code != 202 {
			t.Fatalf("send: %d %v", code, b)
		}
		return b["notification_id"].(string)
	}
	// Below the threshold (default 10,000): one inbox row per subscriber.
	id := send()
	r.waitState(id, "u7", "in_app", "delivered")
	if n := r.inboxRows("u3"); n != 1 {
		t.Fatalf("u3 has %d inbox rows", n)
	}

	// Lower the threshold at run time through discovery: the next send fans out on read.
	r.setTopicThreshold(5)
	id = send()
	poll.Until(t, 30*time.Second, func() error {
		_, st := r.call("GET", "/v1/notifications/"+id+"/status", nil, r.app)
		if n, _ := st["notification"].(map[string]any); n == nil || n["fanout_path"] != "topic_fanout_on_read" {
			return fmt.Errorf("path %v", n)
		}
		return nil
	})
	var feed int
	if err := r.cass.Query(`SELECT count(*) FROM topic_feed WHERE app_id = ? AND topic = ? AND bucket = ?`, r.app, "news",
		time.Now().UTC().Year()*100+int(time.Now().UTC().Month())).Scan(&feed); err != nil {
		t.Fatal(err)
	}
	if feed != 1 {
		t.Fatalf("topic feed has %d records, want 1", feed)
	}
	if n := r.inboxRows("u3"); n != 1 {
		t.Fatalf("fan-out on read still wrote per-user rows: u3 has %d", n)
	}
}

// deliveredSet is the union of a notification's in-app delivery sets.
func (r *running) deliveredSet(id string) map[string]bool {
	r.t.Helper()
	out := map[string]bool{}
	iter := r.cass.Query(`SELECT users FROM inbox_delivered_sets WHERE notification_id = ?`, id).Iter()
	var users []string
	for iter.Scan(&users) {
		for _, u := range users {
			out[u] = true
		}
	}
	if err := iter.Close(); err != nil {
		r.t.Fatal(err)
	}
	return out
}
