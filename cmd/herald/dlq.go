package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herald-notify/herald/platform/cli"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/deadletter"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/userkeys"
)

// runDLQ inspects and replays a region's dead letters: herald dlq list|replay.
func runDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		return cli.UsageError("usage: herald dlq (list [--limit N] [--json] | replay) --config REGION.yaml (--channel push|email|sms | --stage STAGE)")
	}
	sub := args[0]
	fs := cli.NewFlags("dlq "+sub, stderr)
	path := fs.String("config", "", "region config file")
	channel := fs.String("channel", "", "push, email or sms: the tasks a channel's provider never took (retries spent)")
	stage := fs.String("stage", "", "a stage's records set aside as poison: "+strings.Join(region.DeadLetterStages(), ", "))
	limit := fs.Int("limit", 100, "list at most this many")
	asJSON := fs.Bool("json", false, "print JSON lines")
	if err := cli.Parse(fs, args[1:]); err != nil {
		return err
	}
	if (*channel == "") == (*stage == "") {
		return cli.UsageError("give --channel or --stage")
	}
	if *stage != "" {
		if !slices.Contains(region.DeadLetterStages(), *stage) {
			return cli.UsageError("--stage must be one of %s", strings.Join(region.DeadLetterStages(), ", "))
		}
		cfg := region.DefaultConfig(cli.HomeDir("discovery"))
		if err := cli.LoadConfig(*path, &cfg); err != nil {
			return err
		}
		return stageDLQ(ctx, cfg, sub, *stage, *limit, *asJSON, stdout)
	}
	switch *channel {
	case "push", "email", "sms":
	default:
		return cli.UsageError("--channel must be push, email or sms")
	}
	cfg := region.DefaultConfig(cli.HomeDir("discovery"))
	if err := cli.LoadConfig(*path, &cfg); err != nil {
		return err
	}
	// The dead letters are sealed for their recipients: the region's data keys open them.
	pg, err := postgres.Connect(ctx, cfg.Postgres)
	if err != nil {
		return err
	}
	defer pg.Close()
	ring, err := cfg.Keyring()
	if err != nil {
		return err
	}
	keys := userkeys.New(pg, ring)
	if sub == "list" {
		letters, err := dispatch.ListDeadLetters(ctx, cfg.Kafka, keys, cfg.Name, *channel, *limit)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			for _, dl := range letters {
				if err := enc.Encode(dl); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PARTITION/OFFSET\tNOTIFICATION\tUSER\tATTEMPTS\tAT\tLAST ERROR")
		for _, dl := range letters {
			fmt.Fprintf(tw, "%d/%d\t%s\t%s\t%d\t%s\t%s\n", dl.Partition, dl.Offset, dl.Task.NotificationID, dl.Task.UserID, dl.Task.Attempt,
				dl.At.UTC().Format("2006-01-02T15:04:05Z"), dl.LastError)
		}
		return tw.Flush()
	}
	p, err := kafka.NewProducer(cfg.Kafka)
	if err != nil {
		return err
	}
	defer p.Close()
	n, err := dispatch.ReplayDeadLetters(ctx, cfg.Kafka, p, keys, cfg.Name, *channel)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "replayed %d dead letters from %s onto their tiers' %s dispatch topics (%s.dispatch.<tier>.%s)\n", n, dispatch.DLQTopic(cfg.Name, *channel), *channel, cfg.Name, *channel)
	return nil
}

// stageDLQ lists or replays a stage's dead letters. Nothing is opened: a letter's record stays
// sealed as it was on its origin topic, and list shows where it came from and why it failed.
func stageDLQ(ctx context.Context, cfg region.Config, sub, stage string, limit int, asJSON bool, stdout io.Writer) error {
	if sub == "list" {
		letters, err := deadletter.List(ctx, cfg.Kafka, cfg.Name, stage, limit)
		if err != nil {
			return err
		}
		if asJSON {
			enc := json.NewEncoder(stdout)
			for _, l := range letters {
				if err := enc.Encode(l); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PARTITION/OFFSET\tCLASS\tREASON\tORIGIN\tORIGIN TIME\tAT\tATTEMPTS\tERROR")
		for _, l := range letters {
			fmt.Fprintf(tw, "%d/%d\t%s\t%s\t%s %d/%d\t%s\t%s\t%d\t%s\n", l.Partition, l.Offset, l.Class, l.Reason,
				l.Origin.Topic, l.Origin.Partition, l.Origin.Offset, l.Origin.Time.UTC().Format(time.RFC3339),
				l.At.UTC().Format(time.RFC3339), l.Attempts, l.Error)
		}
		return tw.Flush()
	}
	p, err := kafka.NewProducer(cfg.Kafka)
	if err != nil {
		return err
	}
	defer p.Close()
	r, err := deadletter.Replay(ctx, cfg.Kafka, p, cfg.Name, stage)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "replayed %d dead letters from %s onto their origin topics", r.Replayed, deadletter.Topic(cfg.Name, stage))
	if r.Skipped > 0 {
		fmt.Fprintf(stdout, "; %d carry no record and were left (see herald dlq list)", r.Skipped)
	}
	fmt.Fprintln(stdout)
	return nil
}
