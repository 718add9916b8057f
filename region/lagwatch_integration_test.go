//go:build integration

package region_test

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region"
)

// metric reads one series of the region's /metrics: name with every label in labels; ok is false
// when the region does not export it.
func (r *running) metric(name string, labels map[string]string) (v float64, ok bool) {
	r.t.Helper()
	resp, err := testenv.RegionClient(r.t).Get(r.base + "/metrics")
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		for k, want := range labels {
			if !strings.Contains(line, k+`="`+want+`"`) {
				continue next
			}
		}
		v, _ := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
		return v, true
	}
	return 0, false
}

// TestConsumerGroupLagShowsAFanoutGroupThatStoppedConsumingAndItsCommittedOffsetStandingStill:
// the region exports every consumer group's lag as the broker sees it. A fan-out group whose
// consumers are gone (the region runs on without its fanout role) while sends arrive shows the
// sends as lag on its partition, its committed offset unmoved: what the stall alert reads.
func TestConsumerGroupLagShowsAFanoutGroupThatStoppedConsumingAndItsCommittedOffsetStandingStill(t *testing.T) {
	r := startRegion(t, func(c *region.Config) { c.ConsumerLagInterval = time.Second })
	group := r.cfg.Name + ".fanout.transactional"
	labels := map[string]string{"region": r.cfg.Name, "group": group, "partition": "0"}
	send := func() string {
		code, b := r.call("POST", "/v1/notifications", map[string]any{"type": "transactional", "category": "otp", "body": "1",
			"recipients": []string{"ada"}, "channels": []string{"in_app"}}, r.app)
		if code != 202 {
			t.Fatalf("send: %d %v", code, b)
		}
		return b["notification_id"].(string)
	}
	r.waitState(send(), "ada", "in_app", "delivered")
	var committed float64
	poll.Until(t, 30*time.Second, func() error {
		lag, ok := r.metric("herald_kafka_consumer_group_lag", labels)
		c, _ := r.metric("herald_kafka_consumer_group_committed_offset", labels)
		if !ok || lag != 0 || c < 1 {
			return fmt.Errorf("fan-out caught up, lag %v (exported %v), committed %v", lag, ok, c)
		}
		committed = c
		return nil
	})
	// Every other consumer group of the region is watched too (this region has no providers:
	// its dispatchers join no group).
	for _, g := range []string{".fanout.social", ".fanout.marketing"} {
		if _, ok := r.metric("herald_kafka_consumer_group_lag", map[string]string{"group": r.cfg.Name + g}); !ok {
			t.Errorf("no lag exported for %s", r.cfg.Name+g)
		}
	}

	// Fan-out stops; the API and dispatch go on, and three sends arrive.
	r.stop()
	r.cfg.Roles = []string{region.RoleAPI, region.RoleDispatch}
	r.start()
	for range 3 {
		send()
	}
	poll.Until(t, 30*time.Second, func() error {
		lag, _ := r.metric("herald_kafka_consumer_group_lag", labels)
		c, _ := r.metric("herald_kafka_consumer_group_committed_offset", labels)
		if lag != 3 || c != committed {
			return fmt.Errorf("lag %v, committed %v; want 3 and %v", lag, c, committed)
		}
		return nil
	})
	if v, ok := r.metric("herald_kafka_consumer_group_lag_last_success_timestamp_seconds", map[string]string{"region": r.cfg.Name}); !ok || time.Since(time.Unix(int64(v), 0)) > 30*time.Second {
		t.Fatalf("last successful read %v (exported %v)", v, ok)
	}
}

// setTopicThreshold puts the topic threshold key in discovery and waits until the region has it
// in force (its herald_fanout_topic_threshold gauge).
func (r *running) setTopicThreshold(n int64) {
	r.t.Helper()
	disc, err := discovery.Open(r.cfg.Discovery)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := disc.Put(r.t.Context(), region.ThresholdKey(r.cfg.Name), []byte(strconv.FormatInt(n, 10))); err != nil {
		r.t.Fatal(err)
	}
	poll.Until(r.t, 30*time.Second, func() error {
		if v, ok := r.metric("herald_fanout_topic_threshold", map[string]string{"region": r.cfg.Name}); !ok || v != float64(n) {
			return fmt.Errorf("threshold in force %v (exported %v), want %d", v, ok, n)
		}
		return nil
	})
}

// waitConsumed waits until group has consumed every record of topic: its committed offset at
// the end of each partition's log. A consumer that commits after it handled a record (every
// stage here) has then handled all of them: the barrier for "nothing more arrives".
func (r *running) waitConsumed(group, topic string) {
	r.t.Helper()
	sc, _ := r.cfg.Kafka.Sarama()
	client, err := sarama.NewClient(r.cfg.Kafka.Brokers, sc)
	if err != nil {
		r.t.Fatal(err)
	}
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		r.t.Fatal(err)
	}
	poll.Until(r.t, time.Minute, func() error {
		lags, err := kafka.GroupLags(r.t.Context(), client, admin, []string{group})
		if err != nil {
			return err
		}
		seen := false
		for _, l := range lags {
			if l.Topic != topic {
				continue
			}
			seen = true
			if l.Lag > 0 {
				return fmt.Errorf("%s: partition %d has %d records to consume", group, l.Partition, l.Lag)
			}
		}
		if !seen {
			return fmt.Errorf("%s has committed nothing on %s", group, topic)
		}
		return nil
	})
}
