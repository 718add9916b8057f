//go:build integration

package region_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/userkeys"
	"github.com/herald-notify/herald/sim"
)

// groupLag is how many records of topic the consumer group (named as the topic) has not
// committed yet.
func groupLag(t *testing.T, e *dispatchEnv, topic string) int64 {
	t.Helper()
	sc, err := e.cfg.Kafka.Sarama()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := sarama.NewClient(e.cfg.Kafka.Brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	admin, err := sarama.NewClusterAdminFromClient(cl)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := cl.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := admin.ListConsumerGroupOffsets(topic, map[string][]int32{topic: parts})
	if err != nil {
		t.Fatal(err)
	}
	var lag int64
	for _, p := range parts {
		end, err := cl.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		done := int64(0)
		if b := committed.GetBlock(topic, p); b != nil && b.Offset > 0 {
			done = b.Offset
		}
		lag += end - done
	}
	return lag
}

// waitGroupsStable waits until each group has one member (this test's dispatcher).
func waitGroupsStable(t *testing.T, e *dispatchEnv, groups []string) {
	t.Helper()
	poll.Until(t, 90*time.Second, func() error {
		admin, err := sarama.NewClusterAdmin(e.cfg.Kafka.Brokers, sarama.NewConfig())
		if err != nil {
			return err
		}
		defer admin.Close()
		desc, err := admin.DescribeConsumerGroups(groups)
		if err != nil {
			return err
		}
		for _, g := range desc {
			if g.State != "Stable" || len(g.Members) != 1 {
				return fmt.Errorf("group %s: %s with %d members", g.GroupId, g.State, len(g.Members))
			}
		}
		if len(desc) != len(groups) {
			return fmt.Errorf("%d of %d groups described", len(desc), len(groups))
		}
		return nil
	})
}

// A marketing push backlog and a marketing email backlog wait in dispatch behind slow providers
// (100 ms a request) and small marketing pools: minutes of work. A transactional OTP push and
// email produced behind them are delivered within seconds, while the backlogs are still there:
// every tier and channel has its own topic, consumer group and pool.
func TestTransactionalPushAndEmailAreDeliveredPromptlyBehindAMarketingBacklog(t *testing.T) {
	e := startDispatch(t, func(c *dispatch.Config) {
		c.Tiers.Marketing.Push.Concurrency = 2
		c.Tiers.Marketing.Email.Concurrency = 1
	})
	var groups []string
	for _, g := range dispatch.ConsumerGroups(e.cfg.Name, 3) {
		if !g.Legacy {
			groups = append(groups, g.Group)
		}
	}
	if len(groups) != len(dispatch.Channels)*len(notify.Tiers)*4 {
		t.Fatalf("%d groups: %v", len(groups), groups)
	}
	waitGroupsStable(t, e, groups) // every tier x channel (and retry level) has its own group
	e.faults("apns", sim.Faults{LatencyMS: 100})
	e.faults("smtp", sim.Faults{LatencyMS: 100})

	const pushes, emails = 2000, 400
	suffix := testenv.Suffix()
	var backlog []notify.Task
	for i := range pushes {
		task := e.task(notify.Push, fmt.Sprintf("m%05d", i))
		task.Tier, task.Category = notify.Marketing, "promo"
		task.Target.Devices = []notify.Device{{DeviceID: "iphone", Platform: "ios", Token: hexToken(fmt.Sprintf("m%d-%s", i, suffix))}}
		backlog = append(backlog, task)
	}
	for i := range emails {
		task := e.task(notify.Email, fmt.Sprintf("m%05d", i))
		task.Tier, task.Category = notify.Marketing, "promo"
		task.Target.Email = fmt.Sprintf("m%d-%s@example.com", i, suffix)
		backlog = append(backlog, task)
	}
	msgs := make([]kafka.Message, 0, len(backlog))
	for _, task := range backlog {
		m, err := notify.TaskMessage(t.Context(), nil, notify.DispatchTopic(e.cfg.Name, task.Tier, task.Channel), task)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	if err := e.prod.Send(t.Context(), msgs...); err != nil {
		t.Fatal(err)
	}
	// The marketing pools are busy: a backlog is queued in dispatch.
	pushTopic, emailTopic := notify.DispatchTopic(e.cfg.Name, notify.Marketing, notify.Push), notify.DispatchTopic(e.cfg.Name, notify.Marketing, notify.Email)
	poll.Until(t, 30*time.Second, func() error {
		if recs := e.records("apns", backlog[0].Target.Devices[0].Token); len(recs) == 0 {
			return fmt.Errorf("the marketing push backlog has not started")
		}
		return nil
	})

	otp := e.task(notify.Push, "otp-user")
	otp.Target.Devices = []notify.Device{{DeviceID: "iphone", Platform: "ios", Token: hexToken("otp-" + suffix)}}
	otpMail := e.task(notify.Email, "otp-user")
	otpMail.Target.Email = "otp-" + suffix + "@example.com"
	start := time.Now()
	e.produce(otp, otpMail)
	const bound = 5 * time.Second // the box is loaded; the backlog alone is minutes of work
	e.checkDelivered(e.waitState(otp, notify.StateDelivered, bound), "apns", otp.Target.Devices[0].Token, "apns")
	e.checkDelivered(e.waitState(otpMail, notify.StateDelivered, bound), "smtp", otpMail.Target.Email, "smtp")
	took := time.Since(start)
	pushLag, emailLag := groupLag(t, e, pushTopic), groupLag(t, e, emailTopic)
	t.Logf("OTP push and email delivered in %s with %d marketing pushes and %d marketing emails still queued", took, pushLag, emailLag)
	if pushLag < pushes/2 || emailLag < emails/2 {
		t.Fatalf("backlogs of %d pushes and %d emails left: the test did not queue the OTP behind a backlog", pushLag, emailLag)
	}
	// The OTPs reached the simulators long before the marketing sends produced before them.
	last := backlog[pushes-1]
	if recs := e.records("apns", last.Target.Devices[0].Token); len(recs) != 0 {
		t.Fatalf("the last marketing push was sent before the check: no backlog")
	}
}

// A region upgraded from the per-channel layout: tasks and a retry wait on the legacy topics
// <region>.dispatch.<channel> and .retry.1, part of them already handled by the old dispatchers
// (committed by their groups). The new dispatcher forwards what was not handled to each task's
// tier topic and delivers it, never what the old groups had committed; a task an old fan-out
// still produces to a legacy topic during the rolling upgrade is delivered too.
func TestLegacyPerChannelDispatchTopicsAreDrainedAfterAnUpgrade(t *testing.T) {
	var handled, waiting []notify.Task
	var retry notify.Task
	suffix := testenv.Suffix()
	legacyPush := func(e *dispatchEnv) string { return notify.LegacyDispatchTopic(e.cfg.Name, notify.Push) }
	produce := func(e *dispatchEnv, keys *userkeys.Keys, topic string, tasks ...notify.Task) {
		t.Helper()
		for _, task := range tasks {
			m, err := notify.TaskMessage(t.Context(), keys, topic, task)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.prod.Send(t.Context(), m); err != nil {
				t.Fatal(err)
			}
		}
	}
	pushTask := func(e *dispatchEnv, tier, name string) notify.Task {
		task := e.task(notify.Push, name)
		task.Tier = tier
		task.Target.Devices = []notify.Device{{DeviceID: "iphone", Platform: "ios", Token: hexToken(name + "-" + suffix)}}
		return task
	}
	e := startDispatchAfter(t, nil, func(e *dispatchEnv) {
		ctx := t.Context()
		legacy := []kafka.Topic{{Name: legacyPush(e), Partitions: 1}, {Name: notify.LegacyDispatchTopic(e.cfg.Name, notify.Email), Partitions: 1}}
		for l := 1; l <= dispatch.RetryLevels; l++ {
			legacy = append(legacy, kafka.Topic{Name: dispatch.LegacyRetryTopic(e.cfg.Name, notify.Push, l), Partitions: 1})
		}
		var names []string
		for _, tp := range legacy {
			names = append(names, tp.Name)
		}
		testenv.DeleteTopics(t, e.cfg.Kafka, names...)
		if _, err := kafka.EnsureTopics(ctx, e.cfg.Kafka, 1, legacy); err != nil {
			t.Fatal(err)
		}
		keys := userkeys.New(e.pg, testenv.MasterKeyring(t))
		// Two tasks the old dispatchers handled: their group committed past them.
		handled = []notify.Task{pushTask(e, notify.Marketing, "old1"), pushTask(e, notify.Transactional, "old2")}
		produce(e, keys, legacyPush(e), handled...)
		commitLegacy(t, e, legacyPush(e), 2)
		// What they left: a marketing backlog with an OTP behind it, an email, and a retry.
		for i := range 20 {
			waiting = append(waiting, pushTask(e, notify.Marketing, fmt.Sprintf("promo%02d", i)))
		}
		waiting = append(waiting, pushTask(e, notify.Transactional, "otp"))
		produce(e, keys, legacyPush(e), waiting...)
		mail := e.task(notify.Email, "mail-user")
		mail.Tier, mail.Target.Email = notify.Social, "mail-"+suffix+"@example.com"
		produce(e, keys, notify.LegacyDispatchTopic(e.cfg.Name, notify.Email), mail)
		waiting = append(waiting, mail)
		retry = pushTask(e, notify.Transactional, "retried")
		retry.Attempt = 1
		m, err := dispatch.RetryMessage(ctx, keys, dispatch.LegacyRetryTopic(e.cfg.Name, notify.Push, 1),
			dispatch.Retry{Task: retry, NotBefore: time.Now().Add(time.Second), LastError: "503", At: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.prod.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	})
	for _, task := range append(slices.Clone(waiting), retry) {
		e.waitState(task, notify.StateDelivered, 60*time.Second)
		to := task.Target.Email
		if task.Channel == notify.Push {
			to = task.Target.Devices[0].Token
		}
		if recs := e.records(map[string]string{notify.Push: "apns", notify.Email: "smtp"}[task.Channel], to); len(recs) != 1 {
			t.Errorf("%s: %d requests at the simulator, want 1", task.UserID, len(recs))
		}
	}
	// An old fan-out still producing to the legacy topic during the rolling upgrade.
	late := pushTask(e, notify.Transactional, "late")
	produce(e, userkeys.New(e.pg, testenv.MasterKeyring(t)), legacyPush(e), late)
	e.waitState(late, notify.StateDelivered, 30*time.Second)

	for _, task := range handled {
		if recs := e.records("apns", task.Target.Devices[0].Token); len(recs) != 0 {
			t.Errorf("%s, handled by the old dispatchers, was sent again", task.UserID)
		}
	}
	// Every record went to its own tier's topic, and the legacy groups are at the end.
	for topic, want := range map[string]int64{
		notify.DispatchTopic(e.cfg.Name, notify.Marketing, notify.Push):       20,
		notify.DispatchTopic(e.cfg.Name, notify.Transactional, notify.Push):   2,
		notify.DispatchTopic(e.cfg.Name, notify.Social, notify.Email):         1,
		dispatch.RetryTopic(e.cfg.Name, notify.Transactional, notify.Push, 1): 1,
	} {
		if n := (&running{t: t, cfg: e.cfg}).topicCount(topic); n != want {
			t.Errorf("%s holds %d records, want %d", topic, n, want)
		}
	}
	poll.Until(t, 10*time.Second, func() error {
		for _, topic := range []string{legacyPush(e), notify.LegacyDispatchTopic(e.cfg.Name, notify.Email), dispatch.LegacyRetryTopic(e.cfg.Name, notify.Push, 1)} {
			if lag := groupLag(t, e, topic); lag != 0 {
				return fmt.Errorf("legacy group %s: lag %d", topic, lag)
			}
		}
		return nil
	})

	// Drained: the operator deletes the legacy topics, and their consumers leave their groups.
	admin, err := sarama.NewClusterAdmin(e.cfg.Kafka.Brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	legacyGroups := []string{legacyPush(e), notify.LegacyDispatchTopic(e.cfg.Name, notify.Email)}
	for l := 1; l <= dispatch.RetryLevels; l++ {
		legacyGroups = append(legacyGroups, dispatch.LegacyRetryTopic(e.cfg.Name, notify.Push, l))
	}
	for _, topic := range legacyGroups {
		if err := admin.DeleteTopic(topic); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, 60*time.Second, func() error {
		desc, err := admin.DescribeConsumerGroups(legacyGroups)
		if err != nil {
			return err
		}
		for _, g := range desc {
			if len(g.Members) != 0 {
				return fmt.Errorf("legacy group %s still has %d members", g.GroupId, len(g.Members))
			}
		}
		return nil
	})
}

// commitLegacy commits offset n of the legacy topic's partition 0 for its group, as an old
// dispatcher that handled the first n records would have.
func commitLegacy(t *testing.T, e *dispatchEnv, topic string, n int64) {
	t.Helper()
	sc, err := e.cfg.Kafka.Sarama()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := sarama.NewClient(e.cfg.Kafka.Brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	om, err := sarama.NewOffsetManagerFromClient(topic, cl)
	if err != nil {
		t.Fatal(err)
	}
	pom, err := om.ManagePartition(topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	pom.MarkOffset(n, "")
	pom.AsyncClose()
	om.Commit()
	if err := om.Close(); err != nil {
		t.Fatal(err)
	}
	if lag := groupLag(t, e, topic); lag != 0 {
		t.Fatalf("legacy group %s: lag %d after committing %d", topic, lag, n)
	}
}
