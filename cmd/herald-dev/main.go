// Command herald-dev is Herald's workbench: the provider simulators, the benchmarks, the load
// and fault scenarios against the local deployment, and the local stack's certificates. It is
// for development and CI and does not ship; what a deployment runs is cmd/herald.
package main

import (
	"os"
	_ "time/tzdata" // users' time zones resolve even on a machine without zoneinfo

	"github.com/herald-notify/herald/platform/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

var commands = map[string]cli.Command{
	"version":  cli.VersionCommand("herald-dev", version),
	"sim":      {Summary: "run the provider simulators (APNs, FCM, SMTP, SMS, webhook receiver)", Run: runSim},
	"bench":    {Summary: "run a benchmark and print its table (pipeline|dispatch|inbox|gateway)", Run: runBench, Subcommands: true},
	"loadtest": {Summary: "run the load scenarios against the local deployment, with thresholds", Run: runLoadtest, Subcommands: true},
	"faults":   {Summary: "the black-box fault suite against the local deployment (docs/reliability.md)", Run: runFaults, Subcommands: true},
	"pki":      {Summary: "issue the local stack's internal CA and certificates (init)", Run: runPKI, Subcommands: true},
}

func main() {
	os.Exit(cli.Main("herald-dev", commands, os.Args[1:], os.Stdout, os.Stderr))
}
