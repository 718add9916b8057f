package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/herald-notify/herald/analytics"
	"github.com/herald-notify/herald/gateway"
	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/telemetry"
	"github.com/herald-notify/herald/region"
)

// discoveryDir is the file backend's default root: $HERALD_HOME/discovery, or .herald/discovery.
func discoveryDir() string {
	if h := os.Getenv("HERALD_HOME"); h != "" {
		return filepath.Join(h, "discovery")
	}
	return filepath.Join(".herald", "discovery")
}

// loadConfig reads the config and turns a bad key into a usage error (exit code 2).
func loadConfig(path string, dst config.Validator) error {
	if err := config.Load(path, dst); err != nil {
		return &exitError{code: 2, err: fmt.Errorf("invalid configuration: %w", err)}
	}
	return nil
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("herald "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err // the usage is printed; the command must not run
		}
		return &exitError{code: 2, err: err}
	}
	if fs.NArg() > 0 {
		return usageError("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return nil
}

// serve sets up logging and tracing for a component, then runs it.
func serve(ctx context.Context, tc telemetry.Config, stderr io.Writer, component string, run func(context.Context, *slog.Logger) error) error {
	log := telemetry.Logger(tc, stderr, component)
	shutdown, err := telemetry.SetupTracing(ctx, tc, "herald-"+component)
	if err != nil {
		return err
	}
	defer shutdown(context.WithoutCancel(ctx)) //nolint:errcheck // best effort flush at exit
	if err := run(ctx, log); err != nil {
		log.Error("stopped with error", "err", err)
		return err
	}
	log.Info("stopped")
	return nil
}

func runRegion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("region", stderr)
	path := fs.String("config", "", "config file (YAML)")
	name := fs.String("name", "", "region name, e.g. eu-west-1 (overrides the file)")
	roles := fs.String("roles", "", "comma-separated roles to run, of "+strings.Join(region.KnownRoles(), ",")+" (default: "+strings.Join(region.AllRoles(), ",")+"; the exporter needs an export block)")
	listen := fs.String("listen", "", "listen address (overrides the file)")
	check := fs.Bool("check-config", false, "validate the config and exit")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg := region.DefaultConfig(discoveryDir())
	// Flags are applied through the environment layer so they win over file and environment.
	overrides := map[string]string{"HERALD_REGION_NAME": *name, "HERALD_REGION_ROLES": *roles, "HERALD_REGION_LISTEN": *listen}
	for k, v := range overrides {
		if v != "" {
			os.Setenv(k, v)
		}
	}
	if err := loadConfig(*path, &cfg); err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(stdout, "config ok: region %s (%s), roles %s\n", cfg.Name, cfg.Jurisdiction, strings.Join(cfg.Roles, ","))
		return nil
	}
	return serve(ctx, cfg.Telemetry, stderr, "region", func(ctx context.Context, log *slog.Logger) error {
		return region.Run(ctx, cfg, log, version)
	})
}

func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("gateway", stderr)
	path := fs.String("config", "", "config file (YAML)")
	check := fs.Bool("check-config", false, "validate the config and exit")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg := gateway.DefaultConfig(discoveryDir())
	if err := loadConfig(*path, &cfg); err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(stdout, "config ok: gateway on %s\n", cfg.Listen)
		return nil
	}
	return serve(ctx, cfg.Telemetry, stderr, "gateway", func(ctx context.Context, log *slog.Logger) error {
		return gateway.Run(ctx, cfg, log, version)
	})
}

func runAnalytics(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("analytics", stderr)
	path := fs.String("config", "", "config file (YAML)")
	check := fs.Bool("check-config", false, "validate the config and exit")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg := analytics.DefaultConfig(discoveryDir())
	if err := loadConfig(*path, &cfg); err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(stdout, "config ok: analytics on %s, k=%d, regions %s\n", cfg.Listen, cfg.K, strings.Join(cfg.RegionNames(), ","))
		return nil
	}
	return serve(ctx, cfg.Telemetry, stderr, "analytics", func(ctx context.Context, log *slog.Logger) error {
		return analytics.Run(ctx, cfg, log, version)
	})
}
