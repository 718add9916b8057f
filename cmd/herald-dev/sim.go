package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/herald-notify/herald/platform/cli"
	"github.com/herald-notify/herald/sim"
)

// simDir is where the simulators keep their CA and credentials: $HERALD_HOME/sim, or .herald/sim.
func simDir() string {
	if h := os.Getenv("HERALD_HOME"); h != "" {
		return filepath.Join(h, "sim")
	}
	return filepath.Join(".herald", "sim")
}

func runSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("sim", stderr)
	path := fs.String("config", "", "config file (YAML)")
	check := fs.Bool("check-config", false, "validate the config and exit")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	cfg := sim.DefaultConfig(simDir())
	if err := cli.LoadConfig(*path, &cfg); err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(stdout, "config ok: simulators apns %s, fcm %s, smtp %s, sms %s, webhook %s, admin %s\n",
			cfg.APNs.Listen, cfg.FCM.Listen, cfg.SMTP.Listen, cfg.SMS.Listen, cfg.Webhook.Listen, cfg.Admin.Listen)
		return nil
	}
	return cli.Serve(ctx, cfg.Telemetry, stderr, "sim", func(ctx context.Context, log *slog.Logger) error {
		return sim.Run(ctx, cfg, log, version)
	})
}
