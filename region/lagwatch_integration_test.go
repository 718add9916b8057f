//go:build integration

package region_test

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

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
