package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	gwbench "github.com/herald-notify/herald/gateway/bench"
	"github.com/herald-notify/herald/platform/cli"
	"github.com/herald-notify/herald/platform/pki"
)

// runBenchGateway is herald-dev bench gateway: the running local gateway against the home region
// called directly. It makes a key with a limit high enough for the run and revokes it after.
func runBenchGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("bench gateway", stderr)
	path := fs.String("config", "config/local/gateway.yaml", "gateway config (for its database, to make the bench key)")
	o := gwbench.Options{GatewayURL: "http://127.0.0.1:8080", RegionURL: "https://127.0.0.1:8101"}
	pkiPath := fs.String("pki", string(pkiDir()), "directory of the local CA and the gateway's client certificate (herald-dev pki init)")
	fs.StringVar(&o.GatewayURL, "gateway", o.GatewayURL, "gateway URL")
	fs.StringVar(&o.RegionURL, "region", o.RegionURL, "URL of the region DE users live in (eu-west-1 locally)")
	fs.IntVar(&o.Requests, "requests", 4000, "requests per path, concurrency level and side")
	fs.IntVar(&o.Rounds, "rounds", 8, "interleaved rounds")
	levels := fs.String("concurrency", "1,16", "concurrency levels, comma separated")
	if err := cli.Parse(fs, args[1:]); err != nil {
		return err
	}
	for _, l := range strings.Split(*levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(l))
		if err != nil || n < 1 {
			return cli.UsageError("--concurrency: a comma-separated list of positive integers")
		}
		o.Levels = append(o.Levels, n)
	}
	tc, err := pki.Dir(*pkiPath).Client("gateway").TLS()
	if err != nil {
		return fmt.Errorf("the region's client certificate: %w (run make up, or herald-dev pki init)", err)
	}
	o.RegionTLS = tc
	o.App = "bench-gateway"
	key, revoke, err := tempKey(ctx, *path, o.App, "herald-dev bench gateway")
	if err != nil {
		return err
	}
	defer revoke()
	o.Key = key
	o.User = fmt.Sprintf("bench-%d", time.Now().UnixNano())
	fmt.Fprintf(stdout, "herald-dev bench gateway: %d requests per cell in %d interleaved rounds, gateway %s, region %s\n\n", o.Requests, o.Rounds, o.GatewayURL, o.RegionURL)
	return gwbench.Run(ctx, o, stdout)
}
