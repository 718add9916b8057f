//go:build integration

package gateway_test

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
)

// TestConcurrentSendsWithOneKeyGetOneSendIDAndOnePartSet sends the same request twice at once,
// with one idempotency key, to users in two regions, several times over: each pair must answer
// one send id and one set of parts (each region's part accepted once), whichever request each
// region took first.
func TestConcurrentSendsWithOneKeyGetOneSendIDAndOnePartSet(t *testing.T) {
	w := newWorld(t)
	de, us := "de-"+w.app, "us-"+w.app
	w.register(map[string]string{de: "DE", us: "US"})
	partsOf := func(out map[string]any) []string {
		var ps []string
		list, _ := out["parts"].([]any)
		for _, p := range list {
			m := p.(map[string]any)
			ps = append(ps, fmt.Sprintf("%v=%v", m["region"], m["notification_id"]))
		}
		slices.Sort(ps)
		return ps
	}
	for trial := range 8 {
		body := map[string]any{"type": "transactional", "category": "otp", "title": "Code", "body": fmt.Sprint(trial),
			"recipients": []string{de, us}, "channels": []string{"in_app"}, "idempotency_key": fmt.Sprintf("k-%d", trial)}
		var wg sync.WaitGroup
		codes := make([]int, 2)
		outs := make([]map[string]any, 2)
		start := make(chan struct{})
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				codes[i], outs[i], _ = w.call(w.key, "POST", "/v1/notifications", body)
			}()
		}
		close(start)
		wg.Wait()
		for i := range 2 {
			if codes[i] != http.StatusAccepted && codes[i] != http.StatusConflict {
				t.Fatalf("trial %d, request %d: %d %v", trial, i, codes[i], outs[i])
			}
		}
		if outs[0]["notification_id"] != outs[1]["notification_id"] || !slices.Equal(partsOf(outs[0]), partsOf(outs[1])) || len(partsOf(outs[0])) != 2 {
			t.Errorf("trial %d: two answers for one key:\n  %d %v\n  %d %v", trial, codes[0], outs[0], codes[1], outs[1])
		}
		// A later retry is the same send too, and its status lists both parts.
		code, again, _ := w.call(w.key, "POST", "/v1/notifications", body)
		if code != http.StatusConflict || again["notification_id"] != outs[0]["notification_id"] || !slices.Equal(partsOf(again), partsOf(outs[0])) {
			t.Errorf("trial %d: retry %d %v, want 409 naming %v", trial, code, again, outs[0]["notification_id"])
		}
		st := w.must(http.StatusOK, "GET", fmt.Sprintf("/v1/notifications/%v/status", outs[0]["notification_id"]), nil)
		if ps, _ := st["parts"].([]any); len(ps) != 2 {
			t.Errorf("trial %d: status of the send: %v", trial, st)
		}
	}
}
