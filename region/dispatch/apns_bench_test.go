package dispatch

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/region/deliverylog"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/sim"
)

// BenchmarkProcessIOSPush is the dispatcher's own cost of one iOS push: the task handled by
// process, sent through apns2 over HTTP/2 to an in-process APNs simulator, with the delivery log
// and Kafka faked (no Redis: the sent keys and rate limit have their own tests). Run with
// -benchmem: allocations per push are what the garbage collector pays for.
//
//	go test -run '^$' -bench ProcessIOSPush -benchmem ./region/dispatch/
func BenchmarkProcessIOSPush(b *testing.B) {
	sc := sim.DefaultConfig(b.TempDir())
	sc.Webhook.Listen = "127.0.0.1:0"
	sc.Admin.Listen, sc.APNs.Listen, sc.FCM.Listen, sc.SMTP.Listen, sc.SMS.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	sc.Records.Capacity, sc.Records.MaxPayloadBytes, sc.Drain = 1000, 256, 0
	s, err := sim.New(sc, slog.New(slog.DiscardHandler), "bench")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Logf("simulators: %v", err)
		}
	}()
	info := s.Info()
	cfg := DefaultConfig()
	cfg.Push.APNs = APNsConfig{Endpoint: info.APNs.URL, TeamID: info.APNs.TeamID, KeyID: info.APNs.KeyID,
		KeyFile: info.APNs.KeyFile, Topic: "com.herald.bench", CAFile: info.CAFile}
	d, err := New(cfg, "zz-bench-1", Deps{Deliveries: &discardLog{}, Devices: &fakeDevices{}, Producer: discardProducer{},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	task := sampleTask(notify.Push)
	var seq atomic.Int64
	b.SetParallelism(64) // x GOMAXPROCS goroutines: many streams in flight, as under load
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		t := task
		for pb.Next() {
			n := seq.Add(1)
			t.UserID = fmt.Sprintf("u%d", n)
			t.Target.Devices = []notify.Device{{DeviceID: "iphone", Platform: "ios", Token: fmt.Sprintf("%064x", n)}}
			if err := d.process(ctx, t, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	time.Sleep(10 * time.Millisecond)
}

// discardLog and discardProducer take everything and keep nothing, so a long benchmark does not
// grow.
type discardLog struct{}

func (*discardLog) Write(context.Context, []deliverylog.State, []deliverylog.Attempt) error {
	return nil
}

type discardProducer struct{}

func (discardProducer) Send(context.Context, ...kafka.Message) error { return nil }
