package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/herald-notify/herald/platform/cli"
	"github.com/herald-notify/herald/platform/masterkey"
	"github.com/herald-notify/herald/platform/telemetry"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/bench"
)

// runBench runs a benchmark and prints its table: herald-dev bench pipeline|dispatch [flags].
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if i := slices.Index(args, "--cpuprofile"); i >= 0 && i+1 < len(args) {
		// Profile the whole benchmark (the in-process region included): herald-dev bench pipeline
		// --cpuprofile cpu.out, then go tool pprof.
		f, err := os.Create(args[i+1])
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
		args = slices.Delete(slices.Clone(args), i, i+2)
	}
	if i := slices.Index(args, "--memprofile"); i >= 0 && i+1 < len(args) {
		// What the whole benchmark allocated, by call site: go tool pprof -sample_index=alloc_space.
		path := args[i+1]
		args = slices.Delete(slices.Clone(args), i, i+2)
		runtime.MemProfileRate = 64 << 10
		defer func() {
			if f, err := os.Create(path); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	if len(args) > 0 && args[0] == "dispatch" {
		return runBenchDispatch(ctx, args, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "gateway" {
		return runBenchGateway(ctx, args, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "inbox" {
		return runBenchInbox(ctx, args, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "digest" {
		return runBenchDigest(ctx, args, stdout, stderr)
	}
	if len(args) == 0 || args[0] != "pipeline" {
		return cli.UsageError("usage: herald-dev bench pipeline|dispatch|inbox|gateway|digest [flags] (run against the servers `make up` starts)")
	}
	fs := cli.NewFlags("bench pipeline", stderr)
	path := fs.String("config", "", "region config file for store settings (default: the local defaults and HERALD_* variables)")
	var o bench.Options
	// 1,000 x 500: each raw phase and the throughput phase then run 10-20 s and flush their
	// memtables a few times, a sustained rate; 100,000 rows were a 1.5 s raw burst that never
	// flushed, against a throughput phase that did.
	fs.IntVar(&o.Events, "events", 1000, "throughput phase: events")
	fs.IntVar(&o.Recipients, "recipients", 500, "throughput phase: in-app recipients per event")
	fs.IntVar(&o.RawRows, "raw-rows", 0, "raw Cassandra insert phase: rows (0: as many as the throughput phase, events x recipients)")
	fs.IntVar(&o.RawWriters, "raw-writers", 64, "raw Cassandra insert phase: concurrent writers")
	fs.IntVar(&o.Probes, "probes", 100, "transactional probes in the idle phase (x10 at most while loaded)")
	fs.DurationVar(&o.ProbeEvery, "probe-every", 50*time.Millisecond, "interval between transactional probes")
	fs.IntVar(&o.Backlog, "backlog", 1_000_000, "marketing deliveries queued for the backlog phase (0 skips it)")
	fs.IntVar(&o.TopicSubscribers, "topic-subscribers", 1_000_000, "subscribers of the large topic (0 skips the phase)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the bench region's stores afterwards")
	if err := cli.Parse(fs, args[1:]); err != nil {
		return err
	}
	cfg, log, err := benchSetup(*path, stderr)
	if err != nil {
		return err
	}
	return bench.Pipeline(ctx, cfg, o, stdout, log)
}

// runBenchDispatch is herald-dev bench dispatch [--push N --email N --sms N --tier-backlog N --keep].
func runBenchDispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("bench dispatch", stderr)
	path := fs.String("config", "", "region config file for store settings (default: the local defaults and HERALD_* variables)")
	o := bench.DispatchOptions{Probes: 200, ProbeEvery: 10 * time.Millisecond}
	fs.IntVar(&o.Push, "push", 30_000, "iOS push tasks (one device each) in the throughput phase (0 skips push)")
	fs.IntVar(&o.Email, "email", 2_000, "email tasks in the throughput phase (0 skips email)")
	fs.IntVar(&o.SMS, "sms", 5_000, "SMS tasks in the throughput phase (0 skips SMS)")
	fs.IntVar(&o.TierBacklog, "tier-backlog", 0, "marketing iOS pushes queued for the tier-isolation phase: a transactional push through the API every --tier-probe-every while they drain, accept -> APNs measured (0 skips it)")
	fs.BoolVar(&o.TierShared, "tier-shared", false, "queue the tier-isolation backlog on the transactional push topic, ahead of the probes, as the per-channel layout before tiers did (the comparison)")
	fs.DurationVar(&o.TierProbeEvery, "tier-probe-every", 100*time.Millisecond, "interval between the tier-isolation phase's transactional pushes")
	fs.BoolVar(&o.Keep, "keep", false, "keep the bench region's stores afterwards")
	if err := cli.Parse(fs, args[1:]); err != nil {
		return err
	}
	if o.TierBacklog < 0 || o.TierProbeEvery <= 0 {
		return cli.UsageError("--tier-backlog must be 0 or more and --tier-probe-every positive")
	}
	cfg, log, err := benchSetup(*path, stderr)
	if err != nil {
		return err
	}
	return bench.Dispatch(ctx, cfg, o, stdout, log)
}

// runBenchInbox is herald-dev bench inbox [--rows N --pages N --lookups N --streams N --keep].
func runBenchInbox(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("bench inbox", stderr)
	path := fs.String("config", "", "region config file for store settings (default: the local defaults and HERALD_* variables)")
	var o bench.InboxOptions
	fs.IntVar(&o.BigRows, "rows", 1_000_000, "inbox rows of the large user")
	fs.IntVar(&o.Pages, "pages", 200, "pages read per user")
	fs.IntVar(&o.Lookups, "lookups", 20_000, "preference lookups per phase")
	fs.IntVar(&o.Streams, "streams", 10_000, "idle streams opened for the memory measure")
	fs.BoolVar(&o.Keep, "keep", false, "keep the bench region's stores afterwards")
	if err := cli.Parse(fs, args[1:]); err != nil {
		return err
	}
	cfg, log, err := benchSetup(*path, stderr)
	if err != nil {
		return err
	}
	return bench.Inbox(ctx, cfg, o, stdout, log)
}

// runBenchDigest is herald-dev bench digest [--users N --events N --lead D --probes N --keep].
func runBenchDigest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("bench digest", stderr)
	path := fs.String("config", "", "region config file for store settings (default: the local defaults and HERALD_* variables)")
	o := bench.DigestOptions{}
	fs.IntVar(&o.Users, "users", 1_000_000, "users whose daily digest closes at 09:00")
	fs.IntVar(&o.Events, "events", 3, "events in each user's digest")
	fs.DurationVar(&o.Lead, "lead", 6*time.Minute, "time from the start to 09:00: the seeding must be done by then")
	fs.IntVar(&o.Probes, "probes", 600, "transactional in-app probes at most while the digests go out")
	fs.DurationVar(&o.ProbeEvery, "probe-every", 100*time.Millisecond, "interval between probes")
	fs.BoolVar(&o.Keep, "keep", false, "keep the bench region's stores afterwards")
	if err := cli.Parse(fs, args[1:]); err != nil {
		return err
	}
	if o.Users <= 0 || o.Events <= 0 || o.Lead <= 0 || o.Probes <= 0 || o.ProbeEvery <= 0 {
		return cli.UsageError("--users, --events, --lead, --probes and --probe-every must be positive")
	}
	cfg, log, err := benchSetup(*path, stderr)
	if err != nil {
		return err
	}
	return bench.Digest(ctx, cfg, o, stdout, log)
}

// benchSetup loads the region config a benchmark takes its store settings from.
func benchSetup(path string, stderr io.Writer) (region.Config, *slog.Logger, error) {
	cfg := region.DefaultConfig(cli.HomeDir("discovery"))
	// Replaced by a private name and EU (bench.privateRegion); needed to validate. Not EU here:
	// the EU stores' variables (HERALD_CASSANDRA_EU_HOSTS ...) would take the bench's region to
	// the multi-data-centre cluster, where its single-data-centre keyspace cannot be read.
	cfg.Name, cfg.Jurisdiction = "zz-bench-1", "ZZ"
	// The bench's region gets its own CA and certificates (bench.privateRegion); only to pass
	// validation here, before that, it stands as a plain-HTTP region with a token.
	const validationOnly = "bench-validation-only"
	cfg.TLS.InsecurePlaintext, cfg.InternalToken = true, validationOnly
	// The bench's region wraps its users' data keys under a master key of its own, unless the
	// config names one.
	keyDir, err := os.MkdirTemp("", "herald-bench-masterkey-")
	if err != nil {
		return region.Config{}, nil, err
	}
	keyFile := filepath.Join(keyDir, "bench.key")
	if _, err := masterkey.CreateFile(keyFile); err != nil {
		return region.Config{}, nil, err
	}
	cfg.UserKeys.Current, cfg.UserKeys.MasterKeys = "bench", map[string]string{"bench": keyFile}
	if err := cli.LoadConfig(path, &cfg); err != nil {
		return region.Config{}, nil, err
	}
	if cfg.InternalToken == validationOnly {
		cfg.TLS.InsecurePlaintext, cfg.InternalToken = false, ""
	}
	return cfg, telemetry.Logger(telemetry.Config{LogLevel: "warn", LogFormat: "text"}, stderr, "bench"), nil
}
