package lifecycle

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"
)

func TestFirstFailureStopsEveryTaskAndIsReturned(t *testing.T) {
	boom := errors.New("boom")
	stopped := make(chan struct{})
	err := Run(context.Background(), slog.New(slog.DiscardHandler),
		Task{Name: "fails", Run: func(context.Context) error { time.Sleep(10 * time.Millisecond); return boom }},
		Task{Name: "waits", Run: func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil }},
	)
	if !errors.Is(err, boom) {
		t.Fatalf("Run returned %v", err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("the other task was not stopped")
	}
}

func TestCancelledContextEndsRunWithoutError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	err := Run(ctx, slog.New(slog.DiscardHandler),
		Task{Name: "a", Run: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
		Task{Name: "b", Run: func(ctx context.Context) error { <-ctx.Done(); return nil }},
	)
	if err != nil {
		t.Fatalf("Run returned %v", err)
	}
}
