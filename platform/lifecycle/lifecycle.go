// Package lifecycle runs a process's long-lived tasks together: the first to fail stops the
// others, and a cancelled context (SIGTERM) lets each drain before Run returns.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// Task is one long-lived part of a process. Run must return soon after ctx ends, having
// finished or handed back the work it held.
type Task struct {
	Name string
	Run  func(ctx context.Context) error
}

// Run starts every task and waits for all of them. It returns the first error, or nil when
// every task ended because ctx was cancelled.
func Run(ctx context.Context, log *slog.Logger, tasks ...Task) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for _, t := range tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := t.Run(ctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("%s: %w", t.Name, err)
				}
				mu.Unlock()
				log.Error("task failed; stopping the process", "task", t.Name, "err", err)
			} else {
				log.Info("task stopped", "task", t.Name)
			}
			cancel()
		}()
	}
	wg.Wait()
	return firstErr
}
