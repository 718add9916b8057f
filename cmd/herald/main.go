// Command herald is Herald's product binary: what a deployment runs (gateway, region,
// analytics) and the operator's tools (migrate, apikey, dlq, masterkey, audit). Each subcommand
// loads its component's config and calls into that component's package; wiring lives there,
// not here. The development tools (simulators, benchmarks, load and fault scenarios, the local
// stack's certificates) are cmd/herald-dev, which does not ship.
package main

import (
	"os"
	_ "time/tzdata" // users' time zones resolve even on a machine without zoneinfo

	"github.com/herald-notify/herald/platform/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

var commands = map[string]cli.Command{
	"version":   cli.VersionCommand("herald", version),
	"gateway":   {Summary: "run the global API gateway", Run: runGateway},
	"region":    {Summary: "run a region (--name eu-west-1, --roles ...)", Run: runRegion},
	"analytics": {Summary: "run central analytics", Run: runAnalytics},
	"migrate":   {Summary: "create and migrate databases, keyspaces and topics", Run: runMigrate},
	"apikey":    {Summary: "create, list and revoke API keys (create|list|revoke)", Run: runAPIKey, Subcommands: true},
	"dlq":       {Summary: "list or replay a region's dead letters (list|replay)", Run: runDLQ, Subcommands: true},
	"masterkey": {Summary: "create a master key file that wraps a region's data keys (init --file F; never overwrites)", Run: runMasterKey, Subcommands: true},
	"audit":     {Summary: "verify the routing audit, list a user's decisions, scan regions for misplaced users (verify|user|residency)", Run: runAudit, Subcommands: true},
}

func main() {
	os.Exit(cli.Main("herald", commands, os.Args[1:], os.Stdout, os.Stderr))
}
