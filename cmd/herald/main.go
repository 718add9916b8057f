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
	"strings"
	"syscall"
	_ "time/tzdata" // users' time zones resolve even on a machine without zoneinfo
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
	// subcommands: the first argument names a subcommand, and run without arguments answers
	// its usage (and does nothing else), which "herald CMD -h" prints.
	subcommands bool
}

var commands = map[string]command{
	"gateway":   {"run the global API gateway", runGateway, false},
	"loadtest":  {"run the load scenarios against the local deployment, with thresholds", runLoadtest, true},
	"region":    {"run a region (--name eu-west-1, --roles ...)", runRegion, false},
	"analytics": {"run central analytics", runAnalytics, false},
	"migrate":   {"create and migrate databases, keyspaces and topics", runMigrate, false},
	"apikey":    {"create, list and revoke API keys (create|list|revoke)", runAPIKey, true},
	"sim":       {"run the provider simulators (APNs, FCM, SMTP, SMS)", runSim, false},
	"bench":     {"run a benchmark and print its table (pipeline)", runBench, true},
	"dlq":       {"list or replay a region's dead letters (list|replay)", runDLQ, true},
	"faults":    {"the black-box fault suite against the local deployment (development; docs/reliability.md)", runFaults, true},
	"pki":       {"issue the local stack's internal CA and certificates (init; development only)", runPKI, true},
	"masterkey": {"create a master key file that wraps a region's data keys (init --file F; never overwrites)", runMasterKey, true},
	"audit":     {"verify the routing audit, list a user's decisions, scan regions for misplaced users (verify|user|residency)", runAudit, true},
	"version":   {"print the version", runVersion, false},
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
	if len(args) == 0 || isHelp(args[0]) {
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
	if cmd.subcommands && len(args) == 2 && isHelp(args[1]) {
		// Its usage, asked for: on stdout, exit 0 (without arguments it is a usage error).
		var ee *exitError
		if err := cmd.run(context.Background(), nil, stdout, stderr); errors.As(err, &ee) && ee.code == 2 {
			msg := ee.Error()
			if !strings.HasPrefix(msg, "usage:") {
				msg = "usage: " + msg
			}
			fmt.Fprintln(stdout, msg)
			return 0
		}
		fmt.Fprintf(stderr, "herald %s: no usage to show\n", args[0])
		return 1
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

func isHelp(arg string) bool { return arg == "-h" || arg == "--help" || arg == "help" }

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
