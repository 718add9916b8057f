package httpserver

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestShutdownLetsTheInFlightRequestFinishAfterReadinessDrains(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var drainedAt time.Time
	srv := &Server{
		Name: "test", Listener: ln, ReadyDelay: 50 * time.Millisecond, Drain: 5 * time.Second,
		BeforeShutdown: func() { drainedAt = time.Now() },
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			close(started)
			time.Sleep(300 * time.Millisecond)
			_, _ = io.WriteString(w, "done")
		}),
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	body := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String())
		if err != nil {
			body <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body <- string(b)
	}()
	<-started
	cancel()
	if got := <-body; got != "done" {
		t.Fatalf("in-flight request got %q", got)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if drainedAt.IsZero() {
		t.Fatal("BeforeShutdown was not called")
	}
	if _, err := http.Get("http://" + ln.Addr().String()); err == nil {
		t.Fatal("listener still accepts after shutdown")
	}
}
