// Command herald is Herald's single binary. Each subcommand loads its component's config and
// calls into that component's package; wiring lives there, not here.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
	_ "time/tzdata" // users' time zones resolve even on a machine without zoneinfo
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{
	"gateway":   {"run the global API gateway", runGateway},
	"loadtest":  {"run the load scenarios against the local deployment, with thresholds", runLoadtest},
	"region":    {"run a region (--name eu-west-1, --roles ...)", runRegion},
	"analytics": {"run central analytics", runAnalytics},
	"migrate":   {"create and migrate databases, keyspaces and topics", runMigrate},
	"apikey":    {"create, list and revoke API keys (create|list|revoke)", runAPIKey},
	"sim":       {"run the provider simulators (APNs, FCM, SMTP, SMS)", runSim},
	"bench":     {"run a benchmark and print its table (pipeline)", runBench},
	"dlq":       {"list or replay a region's dead letters (list|replay)", runDLQ},
	"faults":    {"the black-box fault suite against the local deployment (development; docs/reliability.md)", runFaults},
	"pki":       {"issue the local stack's internal CA and certificates (init; development only)", runPKI},
	"masterkey": {"create a master key file that wraps a region's data keys (init --file F; never overwrites)", runMasterKey},
	"audit":     {"verify the routing audit, list a user's decisions, scan regions for misplaced users (verify|user|residency)", runAudit},
	"version":   {"print the version", runVersion},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exitError carries an exit code out of a subcommand.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageError(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "herald: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) { // -h: the flags' usage is printed, nothing ran
			return 0
		}
		fmt.Fprintf(stderr, "herald %s: %v\n", args[0], err)
		if ee, ok := err.(*exitError); ok {
			return ee.code
		}
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: herald <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'herald <command> -h' for a command's flags.")
}

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) error {
	fmt.Fprintf(stdout, "herald %s\n", version)
	return nil
}
