//go:build integration

package region_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/cassandra"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/deliverylog"
	"github.com/herald-notify/herald/region/devices"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/region/userkeys"
	"github.com/herald-notify/herald/sim"

	"github.com/jackc/pgx/v5/pgxpool"
)

// dispatchEnv is a test-private region's stores and topics, an in-process simulator of every
// provider, and a dispatcher pointed at them.
type dispatchEnv struct {
	t    *testing.T
	cfg  region.Config
	sim  *sim.Sim
	pg   *pgxpool.Pool
	log  *deliverylog.Log
	prod *kafka.Producer
	app  string
}

func startDispatch(t *testing.T, mutate func(*dispatch.Config)) *dispatchEnv {
	t.Helper()
	return startDispatchAfter(t, mutate, nil)
}

// startDispatchAfter is startDispatch calling before, when set, with the environment of the
// migrated region before its dispatcher starts.
func startDispatchAfter(t *testing.T, mutate func(*dispatch.Config), before func(*dispatchEnv)) *dispatchEnv {
	t.Helper()
	c := testRegion(t)
	ctx := testenv.Context(t, 5*time.Minute)
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("HERALD_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if err := region.Migrate(ctx, c, logger); err != nil {
		t.Fatal(err)
	}
	var extra []string
	for _, tp := range dispatch.Topics(c.Name, 1, 1) {
		extra = append(extra, tp.Name)
	}
	testenv.DeleteTopics(t, c.Kafka, extra...)
	if _, err := kafka.EnsureTopics(ctx, c.Kafka, 1, dispatch.Topics(c.Name, 1, 1)); err != nil {
		t.Fatal(err)
	}

	// The simulators, on free ports with fresh credentials (never the local stack's).
	s, sc := regiontest.StartSim(t, 1)
	info := s.Info()

	dc := dispatch.DefaultConfig()
	dc.Push.APNs = dispatch.APNsConfig{Endpoint: info.APNs.URL, TeamID: info.APNs.TeamID, KeyID: info.APNs.KeyID,
		KeyFile: info.APNs.KeyFile, Topic: "com.herald.test", CAFile: info.CAFile}
	dc.Push.FCM = dispatch.FCMConfig{Endpoint: info.FCM.Endpoint, CredentialsFile: info.FCM.CredentialsFile}
	dc.Email.SMTP = dispatch.SMTPConfig{Addr: info.SMTP.Addr, Username: sc.SMTP.Username, Password: sc.SMTP.Password,
		From: "Herald <noreply@herald.local>", CAFile: info.CAFile}
	dc.SMS.Twilio = dispatch.TwilioConfig{BaseURL: info.SMS.URL, AccountSID: sc.SMS.AccountSID, AuthToken: sc.SMS.AuthToken, From: "+15005550006"}
	dc.Retry.Delays = []time.Duration{300 * time.Millisecond, 600 * time.Millisecond, time.Second}
	dc.Retry.MaxAttempts = 20
	dc.Breaker.OpenFor = 500 * time.Millisecond
	dc.SendTimeout = 5 * time.Second
	if mutate != nil {
		mutate(&dc)
	}
	if err := dc.Validate(); err != nil {
		t.Fatal(err)
	}

	pg, err := postgres.Connect(ctx, c.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	sess, err := cassandra.Connect(ctx, c.Cassandra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sess.Close)
	prod, err := kafka.NewProducer(c.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prod.Close() })

	e := &dispatchEnv{t: t, cfg: c, sim: s, pg: pg, log: deliverylog.New(sess, c.LogTTL), prod: prod, app: "app-" + testenv.Suffix()}
	if before != nil {
		before(e)
	}
	d, err := dispatch.New(dc, c.Name, dispatch.Deps{Kafka: c.Kafka, Deliveries: e.log, Devices: dispatch.NewDeviceStore(pg), Keys: userkeys.New(pg, testenv.MasterKeyring(t)), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("dispatcher stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("dispatcher did not stop within 30s")
		}
	})
	return e
}

func (e *dispatchEnv) task(channel, user string) notify.Task {
	return notify.Task{NotificationID: "n-" + testenv.Suffix(), AppID: e.app, Tier: notify.Transactional, Category: "order",
		UserID: user, Channel: channel, AcceptedAt: time.Now(), ExpiresAt: time.Now().Add(10 * time.Minute),
		Content: notify.Content{Title: "Order shipped", Body: "Your order shipped", Subject: "Your order", Text: "It shipped.", HTML: "<p>It shipped.</p>"}}
}

func (e *dispatchEnv) produce(tasks ...notify.Task) {
	e.t.Helper()
	for _, task := range tasks {
		raw, _ := json.Marshal(task)
		if err := e.prod.Send(context.Background(), kafka.Message{Topic: notify.DispatchTopic(e.cfg.Name, task.Tier, task.Channel), Key: task.UserID, Value: raw}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// waitState waits for the task's recipient x channel state and returns the attempts.
func (e *dispatchEnv) waitState(task notify.Task, want string, within time.Duration) []deliverylog.Attempt {
	e.t.Helper()
	var attempts []deliverylog.Attempt
	poll.Until(e.t, within, func() error {
		states, err := e.log.States(context.Background(), task.NotificationID, "", "", 10)
		if err != nil {
			return err
		}
		if len(states) != 1 || states[0].State != want {
			return fmt.Errorf("states %+v, want %s", states, want)
		}
		attempts, err = e.log.Attempts(context.Background(), task.NotificationID, 100)
		return err
	})
	return attempts
}

func (e *dispatchEnv) records(name, to string) []sim.Record {
	e.t.Helper()
	resp, err := http.Get(e.sim.Info().Admin + "/sim/" + name + "/messages?to=" + url.QueryEscape(to))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Messages []sim.Record }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		e.t.Fatal(err)
	}
	return out.Messages
}

func (e *dispatchEnv) faults(name string, f sim.Faults) {
	e.t.Helper()
	raw, _ := json.Marshal(f)
	req, _ := http.NewRequest(http.MethodPut, e.sim.Info().Admin+"/sim/"+name+"/faults", bytes.NewReader(raw))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		e.t.Fatalf("faults %s: %d %s", name, resp.StatusCode, body)
	}
}

// delivered checks the one delivered attempt against the simulator's record of the message.
func (e *dispatchEnv) checkDelivered(attempts []deliverylog.Attempt, simName, to, provider string) {
	e.t.Helper()
	recs := e.records(simName, to)
	var ok []sim.Record
	for _, r := range recs {
		if r.ID != "" {
			ok = append(ok, r)
		}
	}
	if len(ok) != 1 {
		e.t.Fatalf("%s records for %s: %+v", simName, to, recs)
	}
	for _, a := range attempts {
		if a.Outcome == notify.StateDelivered {
			if a.Provider != provider || a.ProviderMessageID != ok[0].ID {
				e.t.Fatalf("%s attempt %+v, simulator id %s", simName, a, ok[0].ID)
			}
			return
		}
	}
	e.t.Fatalf("%s: no delivered attempt in %+v", simName, attempts)
}

func hexToken(seed string) string {
	return fmt.Sprintf("%064x", []byte(seed + "0123456789abcdef0123456789abcdef")[:32])
}

func TestDispatchDeliversEachChannelThroughTheRealClients(t *testing.T) {
	e := startDispatch(t, nil)
	ios := e.task(notify.Push, "ada")
	ios.Target.Devices = []notify.Device{{DeviceID: "iphone", Platform: "ios", Token: hexToken("ios-" + testenv.Suffix())}}
	android := e.task(notify.Push, "bob")
	android.Target.Devices = []notify.Device{{DeviceID: "pixel", Platform: "android", Token: "fcm-token-" + testenv.Suffix()}}
	email := e.task(notify.Email, "cyd")
	email.Target.Email = "cyd@example.com"
	sms := e.task(notify.SMS, "dee")
	sms.Target.Phone = "+447700900123"
	start := time.Now()
	e.produce(ios, android, email, sms)

	e.checkDelivered(e.waitState(ios, notify.StateDelivered, 30*time.Second), "apns", ios.Target.Devices[0].Token, "apns")
	e.checkDelivered(e.waitState(android, notify.StateDelivered, 30*time.Second), "fcm", android.Target.Devices[0].Token, "fcm")
	e.checkDelivered(e.waitState(email, notify.StateDelivered, 30*time.Second), "smtp", email.Target.Email, "smtp")
	e.checkDelivered(e.waitState(sms, notify.StateDelivered, 30*time.Second), "sms", sms.Target.Phone, "twilio")
	t.Logf("4 channels delivered in %v", time.Since(start))

	mail := e.records("smtp", email.Target.Email)[0]
	if mail.Headers["subject"] != "Your order" || mail.Headers["message-id"] == "" {
		t.Fatalf("mail headers %v", mail.Headers)
	}
	push := e.records("apns", ios.Target.Devices[0].Token)[0]
	if push.Headers["apns-topic"] != "com.herald.test" {
		t.Fatalf("apns headers %v", push.Headers)
	}
}

func TestDispatchDeactivatesAnUnregisteredAPNsTokenAfterTheFirstFailure(t *testing.T) {
	e := startDispatch(t, nil)
	token := hexToken("gone-" + testenv.Suffix())
	dev := notify.Device{DeviceID: "old-iphone", Platform: "ios", Token: token}
	if err := devices.NewStore(e.pg).Register(context.Background(), e.app, "ada", dev); err != nil {
		t.Fatal(err)
	}
	e.faults("apns", sim.Faults{Unregistered: []string{token}})
	task := e.task(notify.Push, "ada")
	task.Target.Devices = []notify.Device{dev}
	e.produce(task)
	attempts := e.waitState(task, notify.StateFailed, 30*time.Second)
	if len(attempts) != 1 || attempts[0].Outcome != notify.StateFailed || attempts[0].ProviderStatus != "410 Unregistered" {
		t.Fatalf("attempts %+v", attempts)
	}
	active, err := devices.NewStore(e.pg).Active(context.Background(), e.app, "ada")
	if err != nil || len(active) != 0 {
		t.Fatalf("active devices after Unregistered: %v %v", active, err)
	}
	if recs := e.records("apns", token); len(recs) != 1 {
		t.Fatalf("sent %d times to the gone token", len(recs))
	}
}

func TestDispatchAPNsOutageLosesNothingAndDeliversAfterRecovery(t *testing.T) {
	e := startDispatch(t, nil)
	e.faults("apns", sim.Faults{OutageSeconds: 3, RetryAfterSeconds: 1})
	outageEnd := time.Now().Add(3 * time.Second)
	var tasks []notify.Task
	for i := range 10 {
		task := e.task(notify.Push, fmt.Sprintf("user-%d", i))
		task.Target.Devices = []notify.Device{{DeviceID: "iphone", Platform: "ios", Token: hexToken(fmt.Sprintf("o%d-%s", i, testenv.Suffix()))}}
		tasks = append(tasks, task)
	}
	// Another channel keeps going while APNs is down.
	sms := e.task(notify.SMS, "sms-user")
	sms.Target.Phone = "+447700900124"
	e.produce(tasks...)
	e.produce(sms)
	e.waitState(sms, notify.StateDelivered, 10*time.Second)
	if time.Now().After(outageEnd) {
		t.Logf("note: SMS delivered only after the APNs outage ended")
	}
	retried := 0
	for _, task := range tasks {
		attempts := e.waitState(task, notify.StateDelivered, 45*time.Second)
		for _, a := range attempts {
			if a.Outcome == "retrying" {
				retried++
			}
		}
		recs := e.records("apns", task.Target.Devices[0].Token)
		last := recs[len(recs)-1]
		if last.Status != 200 || last.ReceivedAt.Before(outageEnd.Add(-200*time.Millisecond)) {
			t.Fatalf("%s: last record %+v", task.UserID, last)
		}
	}
	if retried < len(tasks) {
		t.Fatalf("only %d retrying attempts for %d tasks sent into an outage", retried, len(tasks))
	}
}

func TestDispatchHonoursRetryAfterOn429(t *testing.T) {
	e := startDispatch(t, nil)
	e.faults("sms", sim.Faults{RateLimitRate: 1, RetryAfterSeconds: 2})
	task := e.task(notify.SMS, "ada")
	task.Target.Phone = "+447700900125"
	e.produce(task)
	var first sim.Record
	poll.Until(t, 20*time.Second, func() error {
		recs := e.records("sms", task.Target.Phone)
		if len(recs) == 0 {
			return fmt.Errorf("no request yet")
		}
		first = recs[0]
		return nil
	})
	if first.Status != 429 {
		t.Fatalf("first answer %+v", first)
	}
	e.faults("sms", sim.Faults{})
	attempts := e.waitState(task, notify.StateDelivered, 30*time.Second)
	recs := e.records("sms", task.Target.Phone)
	if len(recs) != 2 {
		t.Fatalf("requests %+v", recs)
	}
	if gap := recs[1].ReceivedAt.Sub(first.ReceivedAt); gap < 2*time.Second {
		t.Fatalf("retried %v after a 429 with Retry-After 2", gap)
	}
	if len(attempts) != 2 || attempts[0].Outcome != "retrying" || attempts[0].ProviderStatus != "429 20429" || attempts[1].ProviderMessageID != recs[1].ID {
		t.Fatalf("attempts %+v", attempts)
	}
}
