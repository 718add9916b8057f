package dispatch

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/sim"
)

// startFCMSim runs the simulators with FCM on fcmAddr and their keys in dir, until stop.
func startFCMSim(t *testing.T, dir, fcmAddr string) (info sim.Info, stop func()) {
	t.Helper()
	sc := sim.DefaultConfig(dir)
	sc.Webhook.Listen = "127.0.0.1:0"
	sc.Admin.Listen, sc.APNs.Listen, sc.SMTP.Listen, sc.SMS.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	sc.FCM.Listen, sc.Drain = fcmAddr, 100*time.Millisecond
	if err := sc.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(sc, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return s.Info(), func() {
		cancel()
		if err := <-done; err != nil {
			t.Logf("simulators: %v", err)
		}
	}
}

// TestFCMSendsAgainAfterTheProviderForgotItsToken: the FCM simulator was killed and started
// again (same keys, same address) and no longer knows the access token the Admin SDK cached;
// FCM answers 401 UNAUTHENTICATED, and the SDK never fetches a new token on a 401, so every
// push failed for the token's remaining hour (the fault suite's simulator kill lost every
// Android push sent after it). The provider now renews its client on a refused token, and the
// retry goes through.
func TestFCMSendsAgainAfterTheProviderForgotItsToken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	info, stop := startFCMSim(t, dir, addr)
	p, err := newFCM(FCMConfig{Endpoint: info.FCM.Endpoint, CredentialsFile: info.FCM.CredentialsFile}, "fcm", nil)
	if err != nil {
		t.Fatal(err)
	}
	task := notify.Task{NotificationID: "n1", AppID: "app", Tier: notify.Transactional, Category: "otp", UserID: "u1", Channel: notify.Push,
		Content: notify.Content{Title: "Code", Body: "123456"}, Target: notify.Target{Devices: []notify.Device{{DeviceID: "d", Platform: "android", Token: "tok-1"}}}}
	ctx := context.Background()
	if _, err := p.Send(ctx, task, "tok-1"); err != nil {
		t.Fatal(err)
	}
	stop()
	_, stop = startFCMSim(t, dir, addr) // a new process: the tokens it issued are gone
	defer stop()
	var last error
	for attempt := 1; attempt <= 3; attempt++ { // as the retries would
		if _, last = p.Send(ctx, task, "tok-1"); last == nil {
			t.Logf("delivered again at attempt %d after the provider restarted", attempt)
			return
		}
	}
	t.Fatalf("every send after the provider restarted failed; the last: %v", last)
}
