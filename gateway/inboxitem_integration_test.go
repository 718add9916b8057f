//go:build integration

package gateway_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/platform/usertoken"
)

// An app receiving a content-free push holds only the notification id and a user token: it
// fetches the item from the user's home region through the gateway.
func TestUserTokenFetchesOneItemOfItsOwnInboxByNotificationID(t *testing.T) {
	w := newWorld(t)
	alice, bob := "alice-"+w.app, "bob-"+w.app
	w.register(map[string]string{alice: "DE", bob: "US"})
	secret, err := w.keys.RotateTokenSecret(t.Context(), w.app)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{alice, bob} {
		w.must(http.StatusAccepted, "POST", "/v1/notifications", map[string]any{
			"type": "transactional", "category": "order", "title": "Shipped " + u, "body": "Your order shipped", "recipients": []string{u}})
	}
	now := time.Now()
	aliceTok, _ := usertoken.Sign([]byte(secret), w.app, alice, time.Hour, now)
	bobTok, _ := usertoken.Sign([]byte(secret), w.app, bob, time.Hour, now)
	otherApp, _ := usertoken.Sign([]byte(secret), w.otherApp, alice, time.Hour, now)

	idOf := func(tok, user string) string {
		var id string
		poll.Until(t, 30*time.Second, func() error {
			code, out, _ := w.call(tok, "GET", "/v1/users/"+user+"/notifications", nil)
			items, _ := out["items"].([]any)
			if code != http.StatusOK || len(items) != 1 {
				return errorf("%s's inbox: %d %v", user, code, out)
			}
			id = items[0].(map[string]any)["notification_id"].(string)
			return nil
		})
		return id
	}
	aliceID, bobID := idOf(aliceTok, alice), idOf(bobTok, bob)

	code, item, _ := w.call(aliceTok, "GET", "/v1/users/"+alice+"/notifications/"+aliceID, nil)
	if code != http.StatusOK || item["notification_id"] != aliceID || item["title"] != "Shipped "+alice || item["body"] != "Your order shipped" {
		t.Fatalf("alice's item with her token: %d %v", code, item)
	}
	cases := []struct {
		name, token, path string
		want              int
		code              string
	}{
		{"the API key", w.key, "/v1/users/" + alice + "/notifications/" + aliceID, http.StatusOK, ""},
		{"the US user's item in the US region", bobTok, "/v1/users/" + bob + "/notifications/" + bobID, http.StatusOK, ""},
		{"another user's path", aliceTok, "/v1/users/" + bob + "/notifications/" + bobID, http.StatusForbidden, "user_token_mismatch"},
		{"another user's id under her own path", aliceTok, "/v1/users/" + alice + "/notifications/" + bobID, http.StatusNotFound, "not_found"},
		{"her id under the other user's path, with the API key", w.key, "/v1/users/" + bob + "/notifications/" + aliceID, http.StatusNotFound, "not_found"},
		{"a token of another app", otherApp, "/v1/users/" + alice + "/notifications/" + aliceID, http.StatusUnauthorized, "invalid_user_token"},
		{"not a uuid", aliceTok, "/v1/users/" + alice + "/notifications/not-a-uuid", http.StatusNotFound, "not_found"},
	}
	for _, c := range cases {
		code, out, _ := w.call(c.token, "GET", c.path, nil)
		if code != c.want || errorCode(out) != c.code {
			t.Errorf("%s: %d %v, want %d %s", c.name, code, out, c.want, c.code)
		}
	}
}
