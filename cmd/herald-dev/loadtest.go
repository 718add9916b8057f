package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/herald-notify/herald/loadtest"
	"github.com/herald-notify/herald/platform/cli"
)

// runLoadtest is herald-dev loadtest <scenario|all>: the load scenarios against the local
// deployment, with thresholds; exit 1 when one fails.
func runLoadtest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var names []string
	for _, s := range loadtest.Scenarios {
		names = append(names, s.Name)
	}
	usage := "usage: herald-dev loadtest (" + strings.Join(names, "|") + "|all) [flags]"
	if len(args) == 0 {
		return cli.UsageError("%s", usage)
	}
	which := args[0]
	fs := cli.NewFlags("loadtest", stderr)
	path := fs.String("config", "config/local/gateway.yaml", "gateway config (for its database, to make the run's API key)")
	o := loadtest.Options{BaseURL: "http://127.0.0.1:8080", SimURL: "http://127.0.0.1:8446"}
	fs.StringVar(&o.BaseURL, "base", o.BaseURL, "gateway URL (loopback only)")
	fs.StringVar(&o.SimURL, "sim", o.SimURL, "provider simulators' admin URL")
	fs.IntVar(&o.Users, "users", 1000, "users per scenario (inbox-storm, prefs-churn: at most 200; failover: at most 100)")
	fs.DurationVar(&o.Duration, "duration", 30*time.Second, "load phase of each scenario")
	fs.Float64Var(&o.Rate, "rate", 5, "measured stream rate per second (OTPs, sends, reads x10)")
	disrupt := fs.Bool("disrupt", false, "failover: stop eu-west-1 (SIGTERM to its local process) a third in, start it again two thirds in")
	if err := cli.Parse(fs, args[1:]); err != nil {
		return err
	}
	var run []loadtest.Scenario
	for _, s := range loadtest.Scenarios {
		if which == "all" || which == s.Name {
			run = append(run, s)
		}
	}
	if len(run) == 0 {
		return cli.UsageError("%s", usage)
	}
	for _, u := range []string{o.BaseURL, o.SimURL} {
		if err := loadtest.CheckLoopback(u); err != nil {
			return cli.UsageError("herald-dev loadtest drives local deployments only: %v (use the k6 scripts in loadtest/ elsewhere)", err)
		}
	}
	if o.Users < 1 || o.Duration <= 0 || o.Rate <= 0 {
		return cli.UsageError("--users, --duration and --rate must be positive")
	}
	if *disrupt {
		o.Disrupt = disruptLocalRegion
	}

	o.RunID = strconv.FormatInt(time.Now().Unix()%1_000_000, 36)
	key, revoke, err := tempKey(ctx, *path, "loadtest", "herald-dev loadtest "+o.RunID)
	if err != nil {
		return err
	}
	defer revoke()
	o.APIKey = key

	fmt.Fprintf(stdout, "herald-dev loadtest: run %s, %d users, %s load, rate %.1f/s, against %s\n", o.RunID, o.Users, o.Duration, o.Rate, o.BaseURL)
	c := loadtest.NewClient(o)
	failed := 0
	for _, s := range run {
		rows, err := s.Run(ctx, c, o)
		if err != nil {
			fmt.Fprintf(stdout, "\n%s\n  ERROR: %v\n", s.Name, err)
			failed++
			continue
		}
		if !loadtest.Print(stdout, s.Name+": "+s.Doc, rows) {
			failed++
		}
	}
	if failed > 0 {
		return &cli.ExitError{Code: 1, Err: fmt.Errorf("%d scenario(s) failed their thresholds", failed)}
	}
	return nil
}

// disruptLocalRegion stops a region started by stack/herald.sh (SIGTERM, then waits for it to
// exit) or starts it again with the script.
func disruptLocalRegion(ctx context.Context, region string, stop bool) error {
	home := os.Getenv("HERALD_HOME")
	if home == "" {
		home = ".herald"
	}
	if !stop {
		cmd := exec.CommandContext(ctx, "stack/herald.sh", "start")
		cmd.Env = append(os.Environ(), "HERALD_HOME="+home)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("stack/herald.sh start: %w: %s", err, out)
		}
		return nil
	}
	raw, err := os.ReadFile(filepath.Join(home, "run", "herald-region-"+region+".pid"))
	if err != nil {
		return fmt.Errorf("region %s is not a local process: %w", region, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return err
	}
	for i := 0; i < 300; i++ {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("region %s (pid %d) did not stop within 30 s", region, pid)
}
