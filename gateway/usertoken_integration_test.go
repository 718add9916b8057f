//go:build integration

package gateway_test

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/platform/usertoken"
)

func TestUserTokensReadOnlyTheirOwnUsersInbox(t *testing.T) {
	w := newWorld(t)
	alice, bob := "alice-"+w.app, "bob-"+w.app
	w.register(map[string]string{alice: "DE", bob: "US"})
	secret, err := w.keys.RotateTokenSecret(t.Context(), w.app)
	if err != nil {
		t.Fatal(err)
	}
	w.must(http.StatusAccepted, "POST", "/v1/notifications", map[string]any{
		"type": "transactional", "category": "otp", "title": "Code", "body": "1", "recipients": []string{alice, bob}, "channels": []string{"in_app"}})
	now := time.Now()
	tok, err := usertoken.Sign([]byte(secret), w.app, alice, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	expired, _ := usertoken.Sign([]byte(secret), w.app, alice, time.Minute, now.Add(-2*time.Minute))
	forged, _ := usertoken.Sign([]byte(strings.Repeat("x", 43)), w.app, alice, time.Hour, now)
	otherApp, _ := usertoken.Sign([]byte(secret), w.otherApp, alice, time.Hour, now)
	future, _ := usertoken.Sign([]byte(secret), w.app, alice, time.Hour, now.Add(30*24*time.Hour))

	poll.Until(t, 20*time.Second, func() error {
		code, out, _ := w.call(tok, "GET", "/v1/users/"+alice+"/notifications", nil)
		if code != http.StatusOK || len(out["items"].([]any)) != 1 {
			return errorf("alice's inbox with her token: %d %v", code, out)
		}
		return nil
	})
	cases := []struct {
		name, token, method, path string
		body                      any
		want                      int
		code                      string
	}{
		{"another user's inbox", tok, "GET", "/v1/users/" + bob + "/notifications", nil, http.StatusForbidden, "user_token_mismatch"},
		{"another user's read-all", tok, "POST", "/v1/notifications/read-all", map[string]any{"user_id": bob}, http.StatusForbidden, "user_token_mismatch"},
		{"expired", expired, "GET", "/v1/users/" + alice + "/notifications", nil, http.StatusUnauthorized, "user_token_expired"},
		{"issued in the future", future, "GET", "/v1/users/" + alice + "/notifications", nil, http.StatusUnauthorized, "invalid_user_token"},
		{"signed with another secret", forged, "GET", "/v1/users/" + alice + "/notifications", nil, http.StatusUnauthorized, "invalid_user_token"},
		{"an app without a token secret", otherApp, "GET", "/v1/users/" + alice + "/notifications", nil, http.StatusUnauthorized, "invalid_user_token"},
		{"a route that needs an API key", tok, "POST", "/v1/notifications", map[string]any{"type": "transactional"}, http.StatusForbidden, "forbidden_for_user_token"},
		{"preferences need an API key", tok, "GET", "/v1/users/" + alice + "/preferences", nil, http.StatusForbidden, "forbidden_for_user_token"},
		{"own unread count", tok, "GET", "/v1/users/" + alice + "/notifications/unread-count", nil, http.StatusOK, ""},
		{"own read-all", tok, "POST", "/v1/notifications/read-all", map[string]any{"user_id": alice}, http.StatusOK, ""},
	}
	for _, c := range cases {
		code, out, _ := w.call(c.token, c.method, c.path, c.body)
		if code != c.want || errorCode(out) != c.code {
			t.Errorf("%s: %d %v, want %d %s", c.name, code, out, c.want, c.code)
		}
	}

	// A browser's EventSource passes the token in the query; the stream opens for its user only.
	resp, err := http.Get(w.gw + "/v1/users/" + alice + "/notifications/stream?access_token=" + tok)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	w.must(http.StatusAccepted, "POST", "/v1/notifications", map[string]any{
		"type": "transactional", "category": "otp", "title": "Live", "body": "2", "recipients": []string{alice}, "channels": []string{"in_app"}})
	got := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"Live"`) {
				got <- sc.Text()
				return
			}
		}
	}()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the live item did not arrive on the stream through the gateway")
	}
	if r2, _ := http.Get(w.gw + "/v1/users/" + bob + "/notifications/stream?access_token=" + tok); r2.StatusCode != http.StatusForbidden {
		t.Fatalf("stream of another user: %d", r2.StatusCode)
	}
}
