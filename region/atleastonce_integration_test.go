//go:build integration

package region_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/regiontest"
)

// startChild runs a region process with only the fan-out role, from the test binary.
func startChild(t *testing.T, c region.Config, logName string) *exec.Cmd {
	t.Helper()
	return startRoleChild(t, c, []string{region.RoleFanout}, logName)
}

// startRoleChild runs a region process with the given roles, from the test binary (see
// TestMain), so the test can kill it with SIGKILL.
func startRoleChild(t *testing.T, c region.Config, roles []string, logName string) *exec.Cmd {
	t.Helper()
	c.Roles = roles
	c.Listen = regiontest.FreePort(t)
	raw, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), logName))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		if t.Failed() {
			out, _ := os.ReadFile(logf.Name())
			t.Logf("%s:\n%s", logName, tail(string(out), 3000))
		}
	})
	return cmd
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func TestFanoutWorkerKilledMidBatchLosesNoRecipientAndDedupKeepsDuplicatesOut(t *testing.T) {
	r := startRegion(t, func(c *region.Config) { c.Roles = []string{region.RoleAPI, region.RoleScheduler} })
	const users, events = 50, 300
	for i := 0; i < users; i++ {
		if code, _ := r.call("PUT", fmt.Sprintf("/v1/users/u%02d", i), map[string]any{"email": fmt.Sprintf("u%02d@example.com", i)}, r.app); code != 201 {
			t.Fatalf("put user: %d", code)
		}
	}
	recipients := make([]string, users)
	for i := range recipients {
		recipients[i] = fmt.Sprintf("u%02d", i)
	}
	ids := make([]string, 0, events)
	for i := 0; i < events; i++ {
		code, b := r.call("POST", "/v1/notifications", map[string]any{"type": "social", "category": "digest", "body": fmt.Sprint("item ", i),
			"recipients": recipients, "channels": []string{notify.InApp, notify.Email}}, r.app)
		if code != 202 {
			t.Fatalf("send %d: %d %v", i, code, b)
		}
		ids = append(ids, b["notification_id"].(string))
	}
	total := int64(users * events)
	emailTopic := notify.DispatchTopic(r.cfg.Name, notify.Social, notify.Email)

	child := startChild(t, r.cfg, "fanout-1.log")
	poll.Until(t, 90*time.Second, func() error {
		if n := r.committedCount(emailTopic); n < total/5 {
			return fmt.Errorf("%d of %d email tasks so far", n, total)
		}
		return nil
	})
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = child.Process.Wait()
	atKill := r.committedCount(emailTopic)
	t.Logf("killed the fan-out worker with SIGKILL after %d of %d email tasks", atKill, total)
	if atKill >= total {
		t.Fatalf("the worker finished before it was killed (%d tasks); the test proves nothing", atKill)
	}

	startChild(t, r.cfg, "fanout-2.log")
	poll.Until(t, 3*time.Minute, func() error {
		if n := r.committedCount(emailTopic); n < total {
			return fmt.Errorf("%d of %d email tasks", n, total)
		}
		for _, u := range []string{"u00", "u49"} {
			if n := r.inboxRows(u); n != events {
				return fmt.Errorf("%s has %d of %d inbox rows", u, n, events)
			}
		}
		return nil
	})
	// Every event handled: a straggling repeat has landed before counting.
	r.waitConsumed(r.cfg.Name+".fanout."+notify.Social, notify.IngressTopic(r.cfg.Name, notify.Social))

	// No recipient lost: every user has every inbox item, and every email task exists.
	for i := 0; i < users; i++ {
		if n := r.inboxRows(fmt.Sprintf("u%02d", i)); n != events {
			t.Fatalf("u%02d has %d inbox rows, want %d", i, n, events)
		}
	}
	seen := map[string]int{}
	for _, task := range r.waitTasks(notify.Email, int(total)) {
		seen[task.NotificationID+"/"+task.UserID]++
	}
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	if int64(len(seen)) != total {
		t.Fatalf("%d distinct email tasks, want %d", len(seen), total)
	}
	ratio := float64(dups) / float64(total)
	t.Logf("email tasks: %d distinct, %d duplicates (%.4f%%)", len(seen), dups, ratio*100)
	if ratio >= 0.001 {
		t.Fatalf("duplicate ratio %.4f%% is not under 0.1%%", ratio*100)
	}
	// Every recipient x channel has its final state: email in delivery_status, in-app
	// deliveries in inbox_delivered_sets.
	for _, id := range ids[:20] {
		var n int
		if err := r.cass.Query(`SELECT count(*) FROM delivery_status WHERE notification_id = ?`, id).Scan(&n); err != nil || n != users {
			t.Fatalf("notification %s has %d rows in delivery_status (%v), want %d", id, n, err, users)
		}
		if got := r.deliveredSet(id); len(got) != users {
			t.Fatalf("notification %s has %d in-app deliveries in inbox_delivered_sets, want %d", id, len(got), users)
		}
	}
}
