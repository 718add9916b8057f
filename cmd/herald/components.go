package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/herald-notify/herald/analytics"
	"github.com/herald-notify/herald/gateway"
	"github.com/herald-notify/herald/platform/cli"
	"github.com/herald-notify/herald/region"
)

func runRegion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("region", stderr)
	path := fs.String("config", "", "config file (YAML)")
	name := fs.String("name", "", "region name, e.g. eu-west-1 (overrides the file)")
	roles := fs.String("roles", "", "comma-separated roles to run, of "+strings.Join(region.KnownRoles(), ",")+" (default: "+strings.Join(region.AllRoles(), ",")+"; the exporter needs an export block)")
	listen := fs.String("listen", "", "listen address (overrides the file)")
	check := fs.Bool("check-config", false, "validate the config and exit")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	cfg := region.DefaultConfig(cli.HomeDir("discovery"))
	// Flags are applied as the environment layer's values, so they win over file and environment.
	overrides := map[string]string{"HERALD_REGION_NAME": *name, "HERALD_REGION_ROLES": *roles, "HERALD_REGION_LISTEN": *listen}
	if err := cli.LoadConfig(*path, &cfg, overrides); err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(stdout, "config ok: region %s (%s), roles %s\n", cfg.Name, cfg.Jurisdiction, strings.Join(cfg.Roles, ","))
		return nil
	}
	return cli.Serve(ctx, cfg.Telemetry, stderr, "region", func(ctx context.Context, log *slog.Logger) error {
		return region.Run(ctx, cfg, log, version)
	})
}

func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("gateway", stderr)
	path := fs.String("config", "", "config file (YAML)")
	check := fs.Bool("check-config", false, "validate the config and exit")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	cfg := gateway.DefaultConfig(cli.HomeDir("discovery"))
	if err := cli.LoadConfig(*path, &cfg); err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(stdout, "config ok: gateway on %s\n", cfg.Listen)
		return nil
	}
	return cli.Serve(ctx, cfg.Telemetry, stderr, "gateway", func(ctx context.Context, log *slog.Logger) error {
		return gateway.Run(ctx, cfg, log, version)
	})
}

func runAnalytics(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("analytics", stderr)
	path := fs.String("config", "", "config file (YAML)")
	check := fs.Bool("check-config", false, "validate the config and exit")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	cfg := analytics.DefaultConfig(cli.HomeDir("discovery"))
	if err := cli.LoadConfig(*path, &cfg); err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(stdout, "config ok: analytics on %s, k=%d, regions %s\n", cfg.Listen, cfg.K, strings.Join(cfg.RegionNames(), ","))
		return nil
	}
	return cli.Serve(ctx, cfg.Telemetry, stderr, "analytics", func(ctx context.Context, log *slog.Logger) error {
		return analytics.Run(ctx, cfg, log, version)
	})
}
