//go:build integration

package region_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/herald-notify/herald/region"
)

// childEnv carries a region config to a child process of the test binary, which then runs that
// region instead of the tests: the at-least-once test kills such a child with SIGKILL.
const childEnv = "HERALD_TEST_REGION_CHILD"

func TestMain(m *testing.M) {
	if raw := os.Getenv(childEnv); raw != "" {
		os.Exit(runChild(raw))
	}
	os.Exit(m.Run())
}

func runChild(raw string) int {
	var c region.Config
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		fmt.Fprintln(os.Stderr, "child config:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := region.Run(ctx, c, log, "child"); err != nil {
		log.Error("child region failed", "err", err)
		return 1
	}
	return 0
}
