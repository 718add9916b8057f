// Package cli is the command-line frame of Herald's binaries: a table of subcommands, their
// usage and help, flags that stop a command without running it, exit codes (2 for a usage
// error, 1 for a failure), and the logging and tracing a long-running component starts with.
// cmd/herald (what ships) and cmd/herald-dev (the workbench: simulators, benchmarks, load and
// fault scenarios, the local stack's certificates) are each a table of commands on it.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/telemetry"
)

// Command is one subcommand.
type Command struct {
	Summary string
	Run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
	// Subcommands: the first argument names a subcommand, and Run without arguments answers
	// its usage (and does nothing else), which "PROG CMD -h" prints.
	Subcommands bool
}

// Prog is the running binary's name, as usage and flag messages show it (set by Main).
var Prog = "herald"

// ExitError carries an exit code out of a command.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// UsageError is a usage error (exit code 2).
func UsageError(format string, args ...any) error {
	return &ExitError{Code: 2, Err: fmt.Errorf(format, args...)}
}

// Failed is a failure with exit code 1 that is not a crash (a check that found something).
func Failed(err error) error { return &ExitError{Code: 1, Err: err} }

// IsHelp reports whether arg asks for help.
func IsHelp(arg string) bool { return arg == "-h" || arg == "--help" || arg == "help" }

// Main runs the command args name, out of commands, and returns the exit code.
func Main(prog string, commands map[string]Command, args []string, stdout, stderr io.Writer) int {
	Prog = prog
	if len(args) == 0 || IsHelp(args[0]) {
		usage(stderr, prog, commands)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "%s: unknown command %q\n\n", prog, args[0])
		usage(stderr, prog, commands)
		return 2
	}
	if cmd.Subcommands && len(args) == 2 && IsHelp(args[1]) {
		// Its usage, asked for: on stdout, exit 0 (without arguments it is a usage error).
		var ee *ExitError
		if err := cmd.Run(context.Background(), nil, stdout, stderr); errors.As(err, &ee) && ee.Code == 2 {
			msg := ee.Error()
			if !strings.HasPrefix(msg, "usage:") {
				msg = "usage: " + msg
			}
			fmt.Fprintln(stdout, msg)
			return 0
		}
		fmt.Fprintf(stderr, "%s %s: no usage to show\n", prog, args[0])
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := cmd.Run(ctx, args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) { // -h: the flags' usage is printed, nothing ran
			return 0
		}
		fmt.Fprintf(stderr, "%s %s: %v\n", prog, args[0], err)
		var ee *ExitError
		if errors.As(err, &ee) {
			return ee.Code
		}
		return 1
	}
	return 0
}

func usage(w io.Writer, prog string, commands map[string]Command) {
	fmt.Fprintf(w, "usage: %s <command> [flags]\n\ncommands:\n", prog)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].Summary)
	}
	fmt.Fprintf(w, "\nRun '%s <command> -h' for a command's flags.\n", prog)
}

// NewFlags is a command's flag set: errors are returned, not fatal, and printed on stderr.
func NewFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(Prog+" "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// Parse parses args into fs: -h returns flag.ErrHelp (the usage is printed; the command must
// not run), a bad flag or a stray argument is a usage error.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &ExitError{Code: 2, Err: err}
	}
	if fs.NArg() > 0 {
		return UsageError("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return nil
}

// LoadConfig reads a component's config and turns a bad key into a usage error (exit code 2).
// overrides (at most one map) are flags' values by the environment variable they override
// (config.LoadWith).
func LoadConfig(path string, dst config.Validator, overrides ...map[string]string) error {
	var o map[string]string
	if len(overrides) > 0 {
		o = overrides[0]
	}
	if err := config.LoadWith(path, dst, o); err != nil {
		return &ExitError{Code: 2, Err: fmt.Errorf("invalid configuration: %w", err)}
	}
	return nil
}

// Serve sets up logging and tracing for a component, then runs it until it returns.
func Serve(ctx context.Context, tc telemetry.Config, stderr io.Writer, component string, run func(context.Context, *slog.Logger) error) error {
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

// HomeDir is a directory of the local deployment's state: $HERALD_HOME/sub, or .herald/sub.
func HomeDir(sub string) string {
	if h := os.Getenv("HERALD_HOME"); h != "" {
		return filepath.Join(h, sub)
	}
	return filepath.Join(".herald", sub)
}

// VersionCommand is the "version" command of a binary: it prints prog and version.
func VersionCommand(prog, version string) Command {
	return Command{Summary: "print the version", Run: func(_ context.Context, _ []string, stdout, _ io.Writer) error {
		fmt.Fprintf(stdout, "%s %s\n", prog, version)
		return nil
	}}
}
