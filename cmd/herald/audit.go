package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/herald-notify/herald/analytics"
	"github.com/herald-notify/herald/gateway"
	"github.com/herald-notify/herald/platform/cli"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/telemetry"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/audit"
	"github.com/herald-notify/herald/residency"
	"github.com/herald-notify/herald/residency/scan"
)

const auditUsage = `usage:
  herald audit verify [--region R [--anchor SEQ:HASH]] [--config-dir DIR]
                                                           verify a region's audit chain (every region without --region)
  herald audit user --app A --user U [--config-dir DIR]    list a user's routing decisions from every region's audit
  herald audit residency [--kafka-records N] [--textfile F] [--config-dir DIR]
                                                           check every region's stores hold only users of its jurisdiction
  herald audit analytics [--config-dir DIR]                check central analytics keeps no cell or histogram below k, and no column beyond its schema`

// runAudit verifies the routing audit and scans the regions' stores for misplaced users. It
// reads gateway.yaml and region-*.yaml from the config directory. Exit code 1 means a finding
// (a broken chain, data outside its jurisdiction) or a store that could not be read.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return cli.UsageError("%s", auditUsage)
	}
	sub, args := args[0], args[1:]
	fs := cli.NewFlags("audit "+sub, stderr)
	dir := fs.String("config-dir", "config/local", "directory with gateway.yaml and region-*.yaml")
	switch sub {
	case "verify":
		name := fs.String("region", "", "region to verify (default: every region-*.yaml)")
		anchor := fs.String("anchor", "", "SEQ:HASH of a head printed by an earlier verify and kept elsewhere: the entry at SEQ must still have HASH (needs --region)")
		if err := cli.Parse(fs, args); err != nil {
			return err
		}
		var anchors []audit.Head
		if *anchor != "" {
			a, err := parseAnchor(*anchor)
			if err != nil {
				return cli.UsageError("--anchor: %v", err)
			}
			if *name == "" {
				return cli.UsageError("--anchor needs --region: an anchor belongs to one region's chain")
			}
			anchors = append(anchors, a)
		}
		return auditVerify(ctx, *dir, *name, anchors, stdout)
	case "user":
		app := fs.String("app", "", "app id")
		user := fs.String("user", "", "user id")
		if err := cli.Parse(fs, args); err != nil {
			return err
		}
		if *app == "" || *user == "" {
			return cli.UsageError("audit user needs --app and --user")
		}
		return auditUser(ctx, *dir, *app, *user, stdout, stderr)
	case "residency":
		records := fs.Int("kafka-records", 1000, "newest records read per Kafka partition")
		listMax := fs.Int("list", 100, "list at most this many unregistered or unattributed sightings")
		textfile := fs.String("textfile", "", "also write the result as Prometheus metrics to this file (node_exporter's textfile collector; herald_residency_scan_violations)")
		if err := cli.Parse(fs, args); err != nil {
			return err
		}
		if *records < 1 {
			return cli.UsageError("--kafka-records must be at least 1")
		}
		return auditResidency(ctx, *dir, *records, *listMax, *textfile, stdout, stderr)
	case "analytics":
		if err := cli.Parse(fs, args); err != nil {
			return err
		}
		return auditAnalytics(ctx, *dir, stdout)
	}
	return cli.UsageError("unknown audit command %q\n%s", sub, auditUsage)
}

// auditAnalytics checks central analytics' database (analytics.yaml in dir) against its k.
func auditAnalytics(ctx context.Context, dir string, stdout io.Writer) error {
	cfg := analytics.DefaultConfig(cli.HomeDir("discovery"))
	p := filepath.Join(dir, "analytics.yaml")
	if _, err := os.Stat(p); err != nil {
		return cli.UsageError("analytics config: %v", err)
	}
	if err := cli.LoadConfig(p, &cfg); err != nil {
		return err
	}
	db, err := postgres.Connect(ctx, cfg.Postgres)
	if err != nil {
		return fmt.Errorf("central analytics' database: %w", err)
	}
	defer db.Close()
	rep, err := analytics.Audit(ctx, db, cfg.K)
	if err != nil {
		return migrateHint(err)
	}
	fmt.Fprintf(stdout, "central analytics, k=%d: %d minute cells and %d latency histograms checked\n", rep.K, rep.Cells, rep.Latency)
	fmt.Fprintf(stdout, "  below k: %d cells, %d histograms\n", rep.CellsBelowK, rep.HistogramsBelowK)
	for _, f := range rep.BelowK {
		fmt.Fprintf(stdout, "    %s\n", f)
	}
	for _, c := range rep.UnexpectedColumns {
		fmt.Fprintf(stdout, "  a column beyond the schema: %s\n", c)
	}
	for _, c := range rep.MissingColumns {
		fmt.Fprintf(stdout, "  a column of the schema missing: %s\n", c)
	}
	if !rep.Clean() {
		return &cli.ExitError{Code: 1, Err: fmt.Errorf("central analytics keeps %d cells and %d histograms below k=%d, and %d columns beyond its schema",
			rep.CellsBelowK, rep.HistogramsBelowK, rep.K, len(rep.UnexpectedColumns)+len(rep.MissingColumns))}
	}
	fmt.Fprintln(stdout, "  clean")
	return nil
}

// regionConfigs loads region-*.yaml from dir, or only region-<name>.yaml.
func regionConfigs(dir, name string) ([]region.Config, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "region-*.yaml"))
	if err != nil {
		return nil, cli.UsageError("config dir %s: %v", dir, err)
	}
	if name != "" {
		p := filepath.Join(dir, "region-"+name+".yaml")
		if _, err := os.Stat(p); err != nil {
			return nil, cli.UsageError("region %s: %v", name, err)
		}
		paths = []string{p}
	}
	if len(paths) == 0 {
		return nil, cli.UsageError("no region-*.yaml in %s", dir)
	}
	sort.Strings(paths)
	out := make([]region.Config, 0, len(paths))
	for _, p := range paths {
		cfg := region.DefaultConfig(cli.HomeDir("discovery"))
		if err := cli.LoadConfig(p, &cfg); err != nil {
			return nil, err
		}
		out = append(out, cfg)
	}
	return out, nil
}

func gatewayConfig(dir string) (gateway.Config, error) {
	cfg := gateway.DefaultConfig(cli.HomeDir("discovery"))
	p := filepath.Join(dir, "gateway.yaml")
	if _, err := os.Stat(p); err != nil {
		return cfg, cli.UsageError("gateway config: %v", err)
	}
	err := cli.LoadConfig(p, &cfg)
	return cfg, err
}

// parseAnchor reads SEQ:HASH as verify prints a head.
func parseAnchor(s string) (audit.Head, error) {
	seqText, hashText, ok := strings.Cut(s, ":")
	seq, err := strconv.ParseInt(seqText, 10, 64)
	if !ok || err != nil || seq < 1 {
		return audit.Head{}, fmt.Errorf("%q: want SEQ:HASH with SEQ a positive integer", s)
	}
	hash, err := hex.DecodeString(hashText)
	if err != nil || len(hash) != 32 {
		return audit.Head{}, fmt.Errorf("%q: HASH must be 64 hex digits", s)
	}
	return audit.Head{Seq: seq, Hash: hash}, nil
}

func auditVerify(ctx context.Context, dir, name string, anchors []audit.Head, stdout io.Writer) error {
	regions, err := regionConfigs(dir, name)
	if err != nil {
		return err
	}
	var broken []error
	for _, cfg := range regions {
		v, err := verifyRegion(ctx, cfg, anchors)
		if err != nil {
			return fmt.Errorf("region %s: %w", cfg.Name, migrateHint(err))
		}
		if v.Break != nil {
			fmt.Fprintf(stdout, "%s: BROKEN: %v (%d entries read, head seq %d)\n", cfg.Name, v.Break, v.Entries, v.Head.Seq)
			broken = append(broken, fmt.Errorf("region %s: %w", cfg.Name, v.Break))
			continue
		}
		fmt.Fprintf(stdout, "%s: intact, %d entries, head seq %d hash %x (anchor: %d:%x)\n", cfg.Name, v.Entries, v.Head.Seq, v.Head.Hash, v.Head.Seq, v.Head.Hash)
	}
	if len(broken) > 0 {
		return &cli.ExitError{Code: 1, Err: errors.Join(broken...)}
	}
	return nil
}

func verifyRegion(ctx context.Context, cfg region.Config, anchors []audit.Head) (audit.Verification, error) {
	pool, err := postgres.Connect(ctx, cfg.Postgres)
	if err != nil {
		return audit.Verification{}, err
	}
	defer pool.Close()
	return audit.NewStore(pool).Verify(ctx, anchors...)
}

func auditUser(ctx context.Context, dir, app, user string, stdout, stderr io.Writer) error {
	gw, err := gatewayConfig(dir)
	if err != nil {
		return err
	}
	secret, err := gw.DirectorySecret()
	if err != nil {
		return err
	}
	regions, err := regionConfigs(dir, "")
	if err != nil {
		return err
	}
	key := residency.UserKey(secret, app, user)
	fmt.Fprintf(stdout, "app %s, user key %s\n", app, key)
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AUDIT OF\tSEQ\tAT\tJURISDICTION\tREASON\tROUTED TO\tPOLICY\tREQUEST")
	var failed []error
	total := 0
	for _, cfg := range regions {
		entries, err := userEntries(ctx, cfg, app, key)
		if err != nil {
			failed = append(failed, fmt.Errorf("region %s: %w", cfg.Name, migrateHint(err)))
			continue
		}
		for _, e := range entries {
			to := e.Region
			if to == "" {
				to = "-"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%d\t%s\n", cfg.Name, e.Seq, e.At.Format("2006-01-02T15:04:05.000000Z"), e.Jurisdiction, e.Reason, to, e.PolicyVersion, e.RequestID)
		}
		total += len(entries)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d decisions in %d regions\n", total, len(regions)-len(failed))
	if len(failed) > 0 {
		return &cli.ExitError{Code: 1, Err: fmt.Errorf("the list is incomplete: %w", errors.Join(failed...))}
	}
	return nil
}

func userEntries(ctx context.Context, cfg region.Config, app, key string) ([]audit.Entry, error) {
	pool, err := postgres.Connect(ctx, cfg.Postgres)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	return audit.NewStore(pool).ForUser(ctx, app, key)
}

func auditResidency(ctx context.Context, dir string, records, listMax int, textfile string, stdout, stderr io.Writer) error {
	gw, err := gatewayConfig(dir)
	if err != nil {
		return err
	}
	secret, err := gw.DirectorySecret()
	if err != nil {
		return err
	}
	cfgs, err := regionConfigs(dir, "")
	if err != nil {
		return err
	}
	dirDB, err := postgres.Connect(ctx, gw.Postgres)
	if err != nil {
		return fmt.Errorf("the gateway's directory: %w", err)
	}
	defer dirDB.Close()
	regions := make([]scan.Region, 0, len(cfgs))
	for _, c := range cfgs {
		ring, err := c.Keyring()
		if err != nil {
			return err
		}
		regions = append(regions, scan.Region{Name: c.Name, Jurisdiction: c.Jurisdiction, Postgres: c.Postgres, Cassandra: c.Cassandra, Redis: c.Redis, Kafka: c.Kafka, MasterKeys: ring})
	}
	log := telemetry.Logger(telemetry.Config{LogLevel: "info", LogFormat: "text"}, stderr, "audit")
	rep, err := scan.Run(ctx, regions, scan.Options{Secret: secret, Directory: scan.PostgresDirectory{DB: dirDB}, KafkaRecords: records, Log: log})
	if err != nil {
		return migrateHint(err)
	}
	printReport(stdout, rep, listMax)
	if textfile != "" {
		if err := scan.WriteTextfile(textfile, rep, time.Now()); err != nil {
			return err
		}
	}
	if !rep.OK() {
		return &cli.ExitError{Code: 1, Err: fmt.Errorf("%d sightings of users' data in a region outside their jurisdiction", len(rep.Misplaced))}
	}
	return nil
}

// migrateHint says what to do when a table or column of the audit, the directory or analytics
// does not exist yet.
func migrateHint(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" /* undefined_table */ || pgErr.Code == "42703" /* undefined_column */) {
		return fmt.Errorf("%w (run herald migrate)", err)
	}
	return err
}

func printReport(w io.Writer, rep *scan.Report, listMax int) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tSTORE\tREAD\tUSERS")
	for _, s := range rep.Stores {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", s.Region, s.Store, s.Read, s.Users)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nmisplaced (stored in a region outside the user's jurisdiction): %d\n", len(rep.Misplaced))
	if len(rep.Misplaced) > 0 {
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "STORE\tREGION\tREGION JURISDICTION\tUSER JURISDICTION\tAPP\tUSER")
		for _, f := range rep.Misplaced {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.Store, f.Region, f.RegionJurisdiction, f.UserJurisdiction, f.App, f.User)
		}
		tw.Flush()
	}
	list := func(title string, ss []scan.Sighting) {
		fmt.Fprintf(w, "\n%s\n", title)
		if len(ss) == 0 {
			return
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "STORE\tREGION\tAPP\tUSER")
		for i, s := range ss {
			if i == listMax {
				fmt.Fprintf(tw, "… and %d more\n", len(ss)-listMax)
				break
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Store, s.Region, s.App, s.User)
		}
		tw.Flush()
	}
	list(fmt.Sprintf("unregistered (not in the directory; not a failure): %d users, %d sightings", rep.UnregisteredUsers, len(rep.Unregistered)), rep.Unregistered)
	list(fmt.Sprintf("unattributed (delivery-log rows whose notification has expired, app unknown): %d", len(rep.Unattributed)), rep.Unattributed)
	fmt.Fprintf(w, "\nKafka records that are not an event or task: %d\n", rep.Undecodable)
	fmt.Fprintf(w, "Users of sealed Kafka records whose data key an erasure destroyed (unreadable): %d\n", rep.Erased)
}
