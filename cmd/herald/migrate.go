package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"github.com/herald-notify/herald/analytics"
	"github.com/herald-notify/herald/gateway"
	"github.com/herald-notify/herald/platform/cli"
	"github.com/herald-notify/herald/platform/telemetry"
	"github.com/herald-notify/herald/region"
)

// runMigrate migrates one component (herald migrate region --config f.yaml), or every component
// whose config is in a directory (herald migrate --config-dir config/local: gateway.yaml,
// analytics.yaml and region-*.yaml).
func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	component := ""
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		component, args = args[0], args[1:]
	}
	fs := cli.NewFlags("migrate", stderr)
	path := fs.String("config", "", "config file of the one component to migrate")
	dir := fs.String("config-dir", "", "directory with gateway.yaml, analytics.yaml and region-*.yaml: migrate them all")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	log := telemetry.Logger(telemetry.Config{LogLevel: "info", LogFormat: "text"}, stderr, "migrate")
	switch {
	case component != "" && *dir == "":
		return migrateOne(ctx, component, *path, log)
	case component == "" && *dir != "":
		return migrateDir(ctx, *dir, log, stdout)
	default:
		return cli.UsageError("usage: herald migrate (region|gateway|analytics) --config FILE | herald migrate --config-dir DIR")
	}
}

func migrateOne(ctx context.Context, component, path string, log *slog.Logger) error {
	switch component {
	case "region":
		cfg := region.DefaultConfig(cli.HomeDir("discovery"))
		if err := cli.LoadConfig(path, &cfg); err != nil {
			return err
		}
		return region.Migrate(ctx, cfg, log.With("region", cfg.Name))
	case "gateway":
		cfg := gateway.DefaultConfig(cli.HomeDir("discovery"))
		if err := cli.LoadConfig(path, &cfg); err != nil {
			return err
		}
		return gateway.Migrate(ctx, cfg, log)
	case "analytics":
		cfg := analytics.DefaultConfig(cli.HomeDir("discovery"))
		if err := cli.LoadConfig(path, &cfg); err != nil {
			return err
		}
		return analytics.Migrate(ctx, cfg, log)
	}
	return cli.UsageError("unknown component %q (region, gateway or analytics)", component)
}

func migrateDir(ctx context.Context, dir string, log *slog.Logger, stdout io.Writer) error {
	regions, err := filepath.Glob(filepath.Join(dir, "region-*.yaml"))
	if err != nil {
		return err
	}
	sort.Strings(regions)
	type job struct{ component, path string }
	jobs := []job{}
	for _, c := range []string{"gateway", "analytics"} {
		p := filepath.Join(dir, c+".yaml")
		if _, err := os.Stat(p); err == nil {
			jobs = append(jobs, job{c, p})
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	for _, p := range regions {
		jobs = append(jobs, job{"region", p})
	}
	if len(jobs) == 0 {
		return cli.UsageError("no gateway.yaml, analytics.yaml or region-*.yaml in %s", dir)
	}
	for _, j := range jobs {
		if err := migrateOne(ctx, j.component, j.path, log); err != nil {
			return fmt.Errorf("%s (%s): %w", j.component, j.path, err)
		}
		fmt.Fprintf(stdout, "migrated %s (%s)\n", j.component, j.path)
	}
	return nil
}
