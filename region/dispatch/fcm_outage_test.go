package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/sim"
)

// TestFCMOutageIsOneRequestAnsweredAtOnce: FCM answers 503 with Retry-After. The send is one
// request, answered at once as a transient failure carrying the provider's Retry-After, for
// Herald's own retry topics and breaker to handle. The Admin SDK used to wait out Retry-After
// inside Send and ask again: the call held its pool slot until send_timeout, the breaker saw
// nothing, and a request the SDK repeated just before send_timeout ended reached FCM while
// Herald counted a timeout and sent the push once more.
func TestFCMOutageIsOneRequestAnsweredAtOnce(t *testing.T) {
	info, stop := startFCMSim(t, t.TempDir(), "127.0.0.1:0")
	defer stop()
	p, err := newFCM(FCMConfig{Endpoint: info.FCM.Endpoint, CredentialsFile: info.FCM.CredentialsFile}, "fcm", nil)
	if err != nil {
		t.Fatal(err)
	}
	task := notify.Task{NotificationID: "n-outage", AppID: "app", Tier: notify.Transactional, Category: "otp", UserID: "u1", Channel: notify.Push,
		Content: notify.Content{Title: "Code", Body: "123456"}, Target: notify.Target{Devices: []notify.Device{{DeviceID: "d", Platform: "android", Token: "tok-1"}}}}
	ctx := context.Background()
	if _, err := p.Send(ctx, task, "tok-1"); err != nil { // the access token is fetched before the outage
		t.Fatal(err)
	}
	admin := func(method, path, body string) *http.Response {
		req, err := http.NewRequest(method, info.Admin+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	admin(http.MethodPut, "/sim/fcm/faults", `{"outage_seconds": 30}`).Body.Close()
	before := len(fcmRecords(t, admin))

	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err = p.Send(sctx, task, "tok-1")
	took := time.Since(start)
	var se *SendError
	if !errors.As(err, &se) || se.Class != Transient {
		t.Fatalf("send during the outage: %v, want a transient SendError", err)
	}
	if se.RetryAfter < 20*time.Second || se.RetryAfter > 31*time.Second {
		t.Errorf("retry after %s, want the provider's (about 30 s)", se.RetryAfter)
	}
	if took > 5*time.Second {
		t.Errorf("the send took %s: something waited inside it", took.Round(time.Millisecond))
	}
	if n := len(fcmRecords(t, admin)) - before; n != 1 {
		t.Errorf("%d requests reached FCM for one send, want 1", n)
	}
}

func fcmRecords(t *testing.T, admin func(method, path, body string) *http.Response) []sim.Record {
	t.Helper()
	resp := admin(http.MethodGet, "/sim/fcm/messages", "")
	defer resp.Body.Close()
	var out struct {
		Messages []sim.Record `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Messages
}
