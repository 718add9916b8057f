//go:build integration

package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/region/workflows"
)

const commentWorkflowYAML = `
# in-app now; after an hour, push if still unread
name: Comment (from the repository)
type: social
category: comments
steps:
  - {id: chat, type: in_app, template_id: comment}
  - {id: wait, type: delay, duration: 1h}
  - id: nudge
    type: push
    template_id: comment
    if: [{step: chat, is: unread}]
`

// putRaw sends a body as it is, with its content type.
func (w *world) putRaw(path, ctype, body string) (int, map[string]any) {
	w.t.Helper()
	req, _ := http.NewRequest("PUT", w.gw+path, strings.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Authorization", "Bearer "+w.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	if err := json.Unmarshal(raw, &out); err != nil {
		w.t.Fatalf("PUT %s: not JSON (%d): %s", path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

func TestAWorkflowIsCheckedOnceAndEveryRegionKeepsEachOfItsVersions(t *testing.T) {
	w := newWorld(t)
	w.must(http.StatusCreated, "PUT", "/v1/templates/comment", map[string]any{"type": "social", "category": "comments",
		"content": map[string]any{"in_app": map[string]any{"title": "{{.who}} commented"}, "push": map[string]any{"title": "{{.who}} commented"}}})
	first := map[string]any{"name": "Comment", "type": "social", "category": "comments", "steps": []any{
		map[string]any{"id": "chat", "type": "in_app", "template_id": "comment"},
	}}
	out := w.must(http.StatusCreated, "PUT", "/v1/workflows/comment", first)
	if out["version"] != 1.0 || out["name"] != "Comment" {
		t.Fatalf("first save: %v", out)
	}

	// The file an app keeps in its repository, sent as it is: the next version.
	code, out := w.putRaw("/v1/workflows/comment", "application/yaml", commentWorkflowYAML)
	if code != http.StatusOK || out["version"] != 2.0 || len(out["steps"].([]any)) != 3 {
		t.Fatalf("the YAML file: %d %v", code, out)
	}
	for _, base := range []string{w.eu1.Base, w.eu2.Base, w.us1.Base} {
		got := regionTemplate(t, base, w.app, "/v1/workflows/comment")
		if got["version"] != 2.0 || got["name"] != "Comment (from the repository)" {
			t.Fatalf("latest in %s: %v", base, got)
		}
		if v1 := regionTemplate(t, base, w.app, "/v1/workflows/comment?version=1"); v1["name"] != "Comment" {
			t.Fatalf("version 1 in %s: %v", base, v1)
		}
	}
	if got := w.must(http.StatusOK, "GET", "/v1/workflows/comment?version=1", nil); got["name"] != "Comment" || got["version"] != 1.0 {
		t.Fatalf("version 1 through the gateway: %v", got)
	}
	// Any version is asked of every region; a bad one is refused naming the field.
	for _, tt := range []struct {
		query, code, field string
		status             int
	}{
		{"version=0", "invalid_field", "version", 400},
		{"version=-1", "invalid_field", "version", 400},
		{"version=1x", "invalid_field", "version", 400},
		{"version=", "invalid_field", "version", 400},
		{"version=99", "not_found", "", 404},
	} {
		code, out, _ := w.call(w.key, "GET", "/v1/workflows/comment?"+tt.query, nil)
		e, _ := out["error"].(map[string]any)
		if code != tt.status || errorCode(out) != tt.code || (tt.field != "" && e["field"] != tt.field) {
			t.Errorf("?%s: %d %v, want %d %s", tt.query, code, out, tt.status, tt.code)
		}
	}

	// Refused once, at the gateway or by the region that judges, and stored nowhere.
	refusals := []struct {
		name, ctype, body, code, field string
		status                         int
	}{
		{"a template the app does not have", "application/json", `{"type":"social","category":"comments","steps":[{"id":"a","type":"email","template_id":"nope"}]}`, "unknown_template", "steps[0].template_id", 400},
		{"a template without the step's channel", "application/json", `{"type":"social","category":"comments","steps":[{"id":"a","type":"sms","template_id":"comment"}]}`, "invalid_field", "steps[0].template_id", 400},
		{"a repeated YAML key", "application/yaml", "type: social\ntype: marketing\ncategory: c\nsteps: [{id: a, type: in_app, template_id: comment}]\n", "malformed_json", "", 400},
		{"a YAML step naming its field", "text/yaml", "type: social\ncategory: c\nsteps:\n  - {id: a, type: in_app, template_id: comment}\n  - {id: w, type: delay, until: '25:00'}\n", "invalid_field", "steps[1].until", 400},
		{"a condition on a later step", "application/json", `{"type":"social","category":"c","steps":[{"id":"a","type":"in_app","template_id":"comment","if":[{"step":"b","is":"read"}]},{"id":"b","type":"push","template_id":"comment"}]}`, "invalid_field", "steps[0].if[0].step", 400},
		{"a null", "application/json", `{"type":"social","category":"c","steps":[{"id":"a","type":"in_app","template_id":null}]}`, "invalid_field", "steps[0].template_id", 400},
		{"plain text", "text/plain", "type: social", "unsupported_media_type", "Content-Type", 415},
	}
	for _, r := range refusals {
		code, out := w.putRaw("/v1/workflows/refused", r.ctype, r.body)
		e, _ := out["error"].(map[string]any)
		if code != r.status || e["code"] != r.code || (r.field != "" && e["field"] != r.field) {
			t.Errorf("%s: %d %v, want %d %s (%s)", r.name, code, out, r.status, r.code, r.field)
		}
	}
	for _, base := range []string{w.eu1.Base, w.eu2.Base, w.us1.Base} {
		if code := regionGet(t, base, w.app, "/v1/workflows/refused"); code != http.StatusNotFound {
			t.Fatalf("a refused workflow in %s: %d", base, code)
		}
	}

	// Concurrent saves each get a version of their own, and every region holds each version's
	// own body under its number.
	const saves = 8
	versions := make([]float64, saves)
	var wg sync.WaitGroup
	for i := range saves {
		wg.Go(func() {
			body := map[string]any{"name": "save " + string(rune('a'+i)), "type": "social", "category": "comments",
				"steps": []any{map[string]any{"id": "chat", "type": "in_app", "template_id": "comment"}}}
			code, out, _ := w.call(w.key, "PUT", "/v1/workflows/comment", body)
			if code != http.StatusOK {
				t.Errorf("save %d: %d %v", i, code, out)
				return
			}
			versions[i] = out["version"].(float64)
		})
	}
	wg.Wait()
	seen := map[float64]bool{}
	for i, v := range versions {
		if seen[v] || v < 3 {
			t.Fatalf("save %d answered version %v (all: %v)", i, v, versions)
		}
		seen[v] = true
		for _, base := range []string{w.eu1.Base, w.eu2.Base, w.us1.Base} {
			got := regionTemplate(t, base, w.app, "/v1/workflows/comment?version="+strconv.Itoa(int(v)))
			if got["name"] != "save "+string(rune('a'+i)) {
				t.Fatalf("version %v in %s holds %v", v, base, got["name"])
			}
		}
	}

	// Deleted: no latest, but each version stays for the runs that pinned it.
	w.must(http.StatusNoContent, "DELETE", "/v1/workflows/comment", nil)
	if code, out, _ := w.call(w.key, "GET", "/v1/workflows/comment", nil); code != http.StatusNotFound {
		t.Fatalf("after delete: %d %v", code, out)
	}
	for _, base := range []string{w.eu1.Base, w.eu2.Base, w.us1.Base} {
		if v2 := regionTemplate(t, base, w.app, "/v1/workflows/comment?version=2"); v2["version"] != 2.0 {
			t.Fatalf("version 2 after delete in %s: %v", base, v2)
		}
	}
	if out := w.must(http.StatusOK, "PUT", "/v1/workflows/comment", first); out["version"] != float64(saves+4) {
		t.Fatalf("saved again after delete: %v, want version %d", out, saves+4)
	}
}

// The fallback chain through the gateway, for users of two jurisdictions: in-app now; after a
// delay, push if still unread; after a grace, email if the push was not delivered. A user with
// a device gets the push and no email, a user without one gets the email, and a user who read
// the in-app message gets neither. Each run lives in its user's home region only; the trigger
// sent again starts nothing; a throttle of 2 stops the third of three concurrent runs.
func TestAWorkflowFallsBackChannelByChannelInEachUsersHomeRegion(t *testing.T) {
	s, sc := regiontest.StartSim(t, 1)
	info := s.Info()
	w := newWorld(t, func(i int, c *region.Config) {
		c.Dispatch.Push.APNs = regiontest.SimAPNs(info)
		c.Dispatch.Email.SMTP = regiontest.SimSMTP(info, sc)
	})
	de, us, reader := "de-"+w.app, "us-"+w.app, "rd-"+w.app
	homes := w.register(map[string]string{de: "DE", us: "US", reader: "FR"})
	if homes[de] != w.eu1.Cfg.Name || homes[us] != w.us1.Cfg.Name {
		t.Fatalf("homes %v", homes)
	}
	w.must(http.StatusCreated, "POST", "/v1/users/"+de+"/devices", map[string]any{"platform": "ios", "token": fmt.Sprintf("%064x", len(w.app)*7919+3), "device_id": "phone"})
	w.must(http.StatusCreated, "PUT", "/v1/templates/comment", map[string]any{"type": "social", "category": "comments", "content": map[string]any{
		"in_app": map[string]any{"title": "{{.who}} commented"},
		"push":   map[string]any{"title": "{{.who}} commented", "body": "Open the app"},
		"email":  map[string]any{"subject": "{{.who}} commented on " + w.app, "text": "{{.who}} commented."},
	}})
	w.must(http.StatusCreated, "PUT", "/v1/workflows/comment", map[string]any{"type": "social", "category": "comments", "steps": []any{
		map[string]any{"id": "chat", "type": "in_app", "template_id": "comment"},
		map[string]any{"id": "wait", "type": "delay", "duration": "10s"},
		map[string]any{"id": "nudge", "type": "push", "template_id": "comment", "if": []any{map[string]any{"step": "chat", "is": "unread"}}},
		map[string]any{"id": "grace", "type": "delay", "duration": "10s"},
		map[string]any{"id": "mail", "type": "email", "template_id": "comment", "if": []any{
			map[string]any{"step": "chat", "is": "unread"}, map[string]any{"step": "nudge", "is": "undelivered"}}},
	}})

	out := w.must(http.StatusAccepted, "POST", "/v1/workflows/comment/trigger", map[string]any{
		"recipients": []string{de, us, reader}, "payload": map[string]any{"who": "Ada"}, "idempotency_key": "comment-1"})
	trigger := uuid.MustParse(out["trigger_id"].(string))
	runs := map[string]int{}
	for _, p := range out["parts"].([]any) {
		p := p.(map[string]any)
		runs[p["region"].(string)] = int(p["runs"].(float64))
	}
	if runs[w.eu1.Cfg.Name]+runs[w.eu2.Cfg.Name] != 2 || runs[w.us1.Cfg.Name] != 1 {
		t.Fatalf("parts %v", out)
	}
	run := func(user string) map[string]any {
		return w.must(http.StatusOK, "GET", "/v1/workflow-runs/"+workflows.RunID(trigger, user).String(), nil)
	}
	step := func(r map[string]any, id string) map[string]any {
		st, _ := r["steps"].(map[string]any)[id].(map[string]any)
		return st
	}
	// The reader reads the in-app message while the run waits.
	var chatID string
	poll.Until(t, 30*time.Second, func() error {
		if chatID, _ = step(run(reader), "chat")["notification_id"].(string); chatID == "" {
			return errorf("no in-app step yet")
		}
		if code, out, _ := w.call(w.key, "PATCH", "/v1/notifications/"+chatID+"/read", map[string]any{"user_id": reader}); code != http.StatusOK {
			return errorf("mark read: %d %v", code, out)
		}
		return nil
	})
	done := map[string]map[string]any{}
	poll.Until(t, 90*time.Second, func() error {
		for _, u := range []string{de, us, reader} {
			r := run(u)
			if r["state"] != "done" {
				return errorf("run of %s: %v", u, r)
			}
			done[u] = r
		}
		return nil
	})
	want := map[string][2]string{de: {"sent", "skipped"}, us: {"sent", "sent"}, reader: {"skipped", "skipped"}}
	for u, st := range want {
		if got := [2]any{step(done[u], "nudge")["status"], step(done[u], "mail")["status"]}; got != [2]any{st[0], st[1]} {
			t.Errorf("%s: nudge and mail %v, want %v (run %v)", u, got, st, done[u])
		}
	}
	poll.Until(t, 30*time.Second, func() error {
		if n := len(regiontest.SimRecords(t, s, "smtp", us+"@example.com")); n != 1 {
			return errorf("%d emails to %s", n, us)
		}
		return nil
	})
	for _, u := range []string{de, reader} {
		if n := len(regiontest.SimRecords(t, s, "smtp", u+"@example.com")); n != 0 {
			t.Errorf("%d emails to %s, who got the push or read the message", n, u)
		}
	}
	// The email's status names the run and the step that sent it.
	mail, _ := step(done[us], "mail")["notification_id"].(string)
	poll.Until(t, 30*time.Second, func() error {
		code, out, _ := w.call(w.key, "GET", "/v1/notifications/"+mail+"/status", nil)
		n, _ := out["notification"].(map[string]any)
		wf, _ := n["workflow"].(map[string]any)
		if code != http.StatusOK || wf["run_id"] != done[us]["run_id"] || wf["step"] != "mail" || wf["workflow_id"] == nil || wf["version"] != 1.0 {
			return errorf("status of the email %s: %d %v", mail, code, out)
		}
		return nil
	})
	// A send cannot pass itself off as a workflow's: metadata naming one shows no workflow in
	// its status, and a workflow field of its own is refused.
	forged := w.must(http.StatusAccepted, "POST", "/v1/notifications", map[string]any{"type": "social", "category": "comments",
		"title": "hi", "body": "x", "recipients": []string{us}, "channels": []string{"in_app"},
		"metadata": map[string]any{"workflow_id": "comment", "workflow_run_id": done[us]["run_id"], "workflow_step": "mail", "workflow_version": "1"}})
	poll.Until(t, 30*time.Second, func() error {
		code, out, _ := w.call(w.key, "GET", "/v1/notifications/"+forged["notification_id"].(string)+"/status", nil)
		n, _ := out["notification"].(map[string]any)
		if code != http.StatusOK || n["fanout_done_at"] == nil {
			return errorf("status of the send: %d %v", code, out)
		}
		if _, ok := n["workflow"]; ok {
			t.Fatalf("a send's metadata made it a workflow's: %v", n)
		}
		return nil
	})
	code, refused, _ := w.call(w.key, "POST", "/v1/notifications", map[string]any{"type": "social", "category": "comments",
		"title": "hi", "body": "x", "recipients": []string{us}, "workflow": map[string]any{"workflow_id": "comment", "run_id": done[us]["run_id"]}})
	if e, _ := refused["error"].(map[string]any); code != http.StatusBadRequest || e["code"] != "unknown_field" || e["field"] != "workflow" {
		t.Errorf("a send with a workflow field: %d %v", code, refused)
	}

	// Each run is stored in its user's home jurisdiction only.
	for _, r := range []struct {
		region *regiontest.Running
		want   []string
	}{{w.eu1, []string{de, reader}}, {w.us1, []string{us}}} {
		pg, _ := stores(t, r.region)
		rows, err := pg.Query(context.Background(), `SELECT user_id FROM workflow_runs WHERE app_id = $1 ORDER BY user_id`, w.app)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(r.want)
		if !slices.Equal(got, r.want) {
			t.Errorf("runs in %s: %v, want %v", r.region.Cfg.Name, got, r.want)
		}
	}

	// Sent again with its key: nothing starts twice.
	again := w.must(http.StatusAccepted, "POST", "/v1/workflows/comment/trigger", map[string]any{
		"recipients": []string{reader, us, de}, "payload": map[string]any{"who": "Ada"}, "idempotency_key": "comment-1"})
	for _, p := range again["parts"].([]any) {
		if p := p.(map[string]any); p["runs"] != 0.0 {
			t.Errorf("a repeated trigger started runs: %v", again)
		}
	}
	if code, out, _ := w.call(w.key, "POST", "/v1/workflows/comment/trigger", map[string]any{"recipients": []string{"nobody-" + w.app}}); code != http.StatusNotFound || errorCode(out) != "unknown_user" {
		t.Errorf("an unregistered recipient: %d %v", code, out)
	}
	if code, out, _ := w.call(w.key, "POST", "/v1/workflows/none/trigger", map[string]any{"recipients": []string{de}}); code != http.StatusNotFound {
		t.Errorf("an unknown workflow: %d %v", code, out)
	}
	if code, out, _ := w.call(w.otherKey, "GET", "/v1/workflow-runs/"+workflows.RunID(trigger, de).String(), nil); code != http.StatusNotFound {
		t.Errorf("another app reads the run: %d %v", code, out)
	}

	// A throttle of 2 a week: three concurrent triggers, one stopped.
	w.must(http.StatusCreated, "PUT", "/v1/workflows/capped", map[string]any{"type": "marketing", "category": "comments", "steps": []any{
		map[string]any{"id": "cap", "type": "throttle", "limit": 2, "duration": "1w"},
		map[string]any{"id": "chat", "type": "in_app", "template_id": "comment"},
	}})
	ids := make([]uuid.UUID, 3)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			code, out, _ := w.call(w.key, "POST", "/v1/workflows/capped/trigger", map[string]any{"recipients": []string{de}, "payload": map[string]any{"who": "Bo"}})
			if code != http.StatusAccepted {
				t.Errorf("capped trigger %d: %d %v", i, code, out)
				return
			}
			ids[i] = uuid.MustParse(out["trigger_id"].(string))
		})
	}
	wg.Wait()
	states := map[string]int{}
	poll.Until(t, 60*time.Second, func() error {
		clear(states)
		for _, id := range ids {
			r := w.must(http.StatusOK, "GET", "/v1/workflow-runs/"+workflows.RunID(id, de).String(), nil)
			states[r["state"].(string)]++
			if r["state"] == "stopped" && step(r, "cap")["status"] != "suppressed" {
				return errorf("stopped without the throttle: %v", r)
			}
		}
		if states["done"] != 2 || states["stopped"] != 1 {
			return errorf("states %v", states)
		}
		return nil
	})
}
