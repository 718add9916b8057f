package main

import (
	"bufio"
	"context"
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
	"github.com/herald-notify/herald/loadtest/faults"
	"github.com/herald-notify/herald/platform/cli"
	"github.com/herald-notify/herald/platform/retry"
)

// runFaults is herald-dev faults <fault...|all>: the black-box fault suite against the local
// deployment of this checkout (make up), one fault at a time under steady load; exit 1 when a
// judged fault misses a target (docs/reliability.md).
func runFaults(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var names []string
	for _, f := range faults.Faults {
		names = append(names, f.Name)
	}
	usage := "usage: herald-dev faults (" + strings.Join(names, "|") + "|all)... [flags]"
	var which []string
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		which, args = append(which, args[0]), args[1:]
	}
	if len(which) == 0 {
		return cli.UsageError("%s", usage)
	}
	fs := cli.NewFlags("faults", stderr)
	path := fs.String("config", "config/local/gateway.yaml", "gateway config (for its database, to make the run's API key)")
	o := faults.Options{BaseURL: "http://127.0.0.1:8080", SimURL: "http://127.0.0.1:8446", Log: stdout}
	fs.StringVar(&o.BaseURL, "base", o.BaseURL, "gateway URL (loopback only)")
	fs.StringVar(&o.SimURL, "sim", o.SimURL, "provider simulators' admin URL")
	fs.Float64Var(&o.Rate, "rate", 100, "sends per second, each to one user on one channel (in-app, push, email, SMS in turn; tiers in turn)")
	fs.IntVar(&o.Users, "users", 40, "users per fault")
	fs.DurationVar(&o.Warm, "warm", 15*time.Second, "load before the fault")
	fs.DurationVar(&o.Down, "down", 20*time.Second, "how long the server stays down (the provider outage: max(down, 60s) unless --outage)")
	outage := fs.Duration("outage", 60*time.Second, "length of the provider outage")
	fs.DurationVar(&o.After, "after", 30*time.Second, "load once the server is back")
	fs.DurationVar(&o.Drain, "drain", 3*time.Minute, "longest wait for deliveries after the load")
	fs.DurationVar(&o.Deadline, "deadline", 5*time.Second, "request deadline: an answer later than this is a hang")
	fs.DurationVar(&o.GiveUp, "give-up", 3*time.Minute, "how long the client retries one send")
	latency := fs.String("latency", "judge", "judge: OTP p99 and recovery time are targets like loss and duplicates; measure: they and answers past --deadline are printed, not judged, while a request never answered still is (make test's short windows on a shared machine, where one run's tail is one noisy sample)")
	home := fs.String("home", "", "the local stack's HERALD_HOME (default: $HERALD_HOME, else .herald)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	selected, err := faults.Select(which)
	if err != nil {
		return cli.UsageError("%v; %s", err, usage)
	}
	for _, u := range []string{o.BaseURL, o.SimURL} {
		if err := loadtest.CheckLoopback(u); err != nil {
			return cli.UsageError("herald-dev faults drives the local deployment only: %v", err)
		}
	}
	if o.Rate <= 0 || o.Users < 1 || o.Down < 0 || o.Deadline <= 0 {
		return cli.UsageError("--rate, --users and --deadline must be positive")
	}
	switch *latency {
	case "judge":
	case "measure":
		o.LatencyMeasured = "--latency measure: short windows on a shared machine; make faults judges them"
	default:
		return cli.UsageError("--latency must be judge or measure, not %q", *latency)
	}
	if *home == "" {
		*home = os.Getenv("HERALD_HOME")
	}
	if *home == "" {
		*home = ".herald"
	}
	if *home, err = filepath.Abs(*home); err != nil {
		return err
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "stack", "herald.sh")); err != nil {
		return cli.UsageError("run herald-dev faults from the repository root (it uses stack/*.sh): %v", err)
	}
	stack := &localStack{root: root, home: *home}

	o.RunID = strconv.FormatInt(time.Now().Unix()%1_000_000, 36)
	key, revoke, err := tempKey(ctx, *path, "faults", "herald-dev faults "+o.RunID)
	if err != nil {
		return err
	}
	defer revoke()
	o.APIKey = key

	fmt.Fprintf(stdout, "herald-dev faults: run %s, %.0f sends/s, %d users per fault, warm %s, down %s, after %s, deadline %s, against %s (HERALD_HOME %s)\n",
		o.RunID, o.Rate, o.Users, o.Warm, o.Down, o.After, o.Deadline, o.BaseURL, *home)
	var results []faults.Result
	for i, f := range selected {
		fo := o
		if f.Name == "provider-outage" {
			fo.Down = *outage
		}
		fmt.Fprintf(stdout, "\n%s: %s\n", f.Name, f.Doc)
		if f.Skip != nil {
			if why := f.Skip(stack); why != "" {
				fmt.Fprintf(stdout, "  skipped: %s\n", why)
				continue
			}
		}
		r := faults.Run(ctx, fo, f, stack, i)
		results = append(results, r)
		faults.Print(stdout, []faults.Result{r})
		if ctx.Err() != nil {
			break
		}
	}
	fmt.Fprintf(stdout, "\nherald-dev faults: run %s (%.0f sends/s, down %s, provider outage %s)\n\n", o.RunID, o.Rate, o.Down, *outage)
	if !faults.Print(stdout, results) {
		targets := "0 lost, duplicates < 0.1%, no request past its deadline, recovery < 30 s, OTP p99 < 5 s on a machine loss"
		if o.LatencyMeasured != "" {
			targets = "0 lost, duplicates < 0.1%, every request answered, a recovery"
		}
		return &cli.ExitError{Code: 1, Err: fmt.Errorf("a fault missed its targets (%s): %s", targets, faults.Failed(results))}
	}
	return nil
}

// localStack is the faults' operator on the stack of this checkout: the stack/*.sh scripts
// and their pid files under HERALD_HOME.
type localStack struct{ root, home string }

func (s *localStack) script(ctx context.Context, nameArgs ...string) error {
	name, args := nameArgs[0], nameArgs[1:]
	cmd := exec.CommandContext(ctx, filepath.Join(s.root, "stack", name+".sh"), args...)
	cmd.Dir = s.root
	cmd.Env = append(os.Environ(), "HERALD_HOME="+s.home)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("stack/%s.sh %s: %w: %s", name, strings.Join(args, " "), err, tail(out, 800))
	}
	return nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

func (s *localStack) Kill(ctx context.Context, proc string) error {
	raw, err := os.ReadFile(filepath.Join(s.home, "run", "herald-"+proc+".pid"))
	if err != nil {
		return fmt.Errorf("%s is not running from this stack: %w", proc, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("SIGKILL %s (pid %d): %w", proc, pid, err)
	}
	for i := 0; i < 100; i++ {
		if !alive(pid) {
			return nil
		}
		if !retry.Sleep(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("%s (pid %d) still alive 10 s after SIGKILL", proc, pid)
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	return len(f) == 0 || f[0] != "Z"
}

func (s *localStack) StartHerald(ctx context.Context) error { return s.script(ctx, "herald", "start") }
func (s *localStack) Ready(ctx context.Context) error       { return s.script(ctx, "herald", "status") }

// Stop, Start and KillNode run the server's stack script, for one node when the name has
// one ("cassandra:eu-west-1").
func (s *localStack) Stop(ctx context.Context, server string) error {
	return s.script(ctx, serverArgs(server, "stop")...)
}
func (s *localStack) Start(ctx context.Context, server string) error {
	return s.script(ctx, serverArgs(server, "start")...)
}
func (s *localStack) KillNode(ctx context.Context, node string) error {
	if !strings.Contains(node, ":") {
		return fmt.Errorf("kill: %q names no node (want server:node)", node)
	}
	return s.script(ctx, serverArgs(node, "kill")...)
}

// Nodes reads how many nodes the server's script runs: Kafka records its mode (stack/kafka.sh);
// every other server runs one per data centre or jurisdiction, counted as 1.
func (s *localStack) Nodes(server string) int {
	if server != "kafka" {
		return 1
	}
	raw, err := os.ReadFile(filepath.Join(s.home, "kafka", "nodes"))
	if err != nil {
		return 1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return 1
	}
	return n
}

// EUPrimary reads the EU Postgres primary stack/postgres.sh records.
func (s *localStack) EUPrimary() string {
	raw, err := os.ReadFile(filepath.Join(s.home, "postgres-eu", "primary"))
	if err != nil || strings.TrimSpace(string(raw)) == "" {
		return "eu-west-1"
	}
	return strings.TrimSpace(string(raw))
}

func (s *localStack) Promote(ctx context.Context, node string) error {
	return s.script(ctx, "postgres", "promote", node)
}

func (s *localStack) Rejoin(ctx context.Context, node string) error {
	if !strings.Contains(node, ":") {
		return fmt.Errorf("rejoin: %q names no node (want server:node)", node)
	}
	return s.script(ctx, serverArgs(node, "rejoin")...)
}

func serverArgs(server, verb string) []string {
	name, node, ok := strings.Cut(server, ":")
	if !ok {
		return []string{name, verb}
	}
	return []string{name, verb, node}
}

func (s *localStack) Redis(ctx context.Context, args ...string) error {
	addr, err := envValue(filepath.Join(s.home, "env", "redis.env"), "HERALD_REDIS_ADDR")
	if err != nil {
		return err
	}
	host, port, _ := strings.Cut(addr, ":")
	out, err := exec.CommandContext(ctx, "redis-cli", append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("redis-cli %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// envValue reads KEY from a KEY=VALUE file the stack scripts write.
func envValue(path, key string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && k == key {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s: no %s", path, key)
}
