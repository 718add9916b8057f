//go:build integration

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/deadletter"
	"github.com/herald-notify/herald/region/notify"
)

// countRecords counts the records of a one-partition topic.
func countRecords(t *testing.T, kc kafka.Config, topic string) int {
	t.Helper()
	sc, err := kc.Sarama()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := sarama.NewClient(kc.Brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cons, err := sarama.NewConsumerFromClient(cl)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	newest, err := cl.GetOffset(topic, 0, sarama.OffsetNewest)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if _, err := kafka.ReadRange(t.Context(), cons, topic, 0, sarama.OffsetOldest, newest, 2*time.Second, func(*sarama.ConsumerMessage) { n++ }); err != nil && !errors.Is(err, kafka.ErrIdle) {
		t.Fatal(err)
	}
	return n
}

// herald dlq list --stage shows a stage's letters with their origin and reason, and replay puts
// them back on their origin topic once.
func TestDLQCommandListsAndReplaysAStagesDeadLettersOnce(t *testing.T) {
	dir := t.TempDir()
	cfg, _ := auditRegion(t, dir, "EU", true)
	path := filepath.Join(dir, "region-"+cfg.Name+".yaml")
	ctx := testenv.Context(t, 2*time.Minute)
	p, err := kafka.NewProducer(cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	origin := notify.EventsTopic(cfg.Name)
	for i, value := range []string{"not json", `{"app":"a","outcomes":"x"}`} {
		l := deadletter.New(deadletter.StageExport, deadletter.MarkPermanent(errors.New("does not decode"), deadletter.ReasonUndecodable), 1, time.Now())
		l.Origin = deadletter.Origin{Topic: origin, Partition: 0, Offset: int64(10 + i), Time: time.Now()}
		l.Key, l.Value = []byte("k"), []byte(value)
		m, err := l.Message(cfg.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if err := runDLQ(context.Background(), args, &out, &errb); err != nil {
			t.Fatalf("herald dlq %v: %v\n%s", args, err, errb.String())
		}
		return out.String()
	}
	table := run("list", "--config", path, "--stage", "export")
	if !strings.Contains(table, "undecodable") || !strings.Contains(table, origin+" 0/10") || !strings.Contains(table, origin+" 0/11") {
		t.Fatalf("list:\n%s", table)
	}
	lines := strings.Split(strings.TrimSpace(run("list", "--config", path, "--stage", "export", "--json", "--limit", "1")), "\n")
	var l deadletter.Listed
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &l) != nil || string(l.Value) != "not json" || l.Origin.Offset != 10 {
		t.Fatalf("list --json --limit 1: %q", lines)
	}
	before := countRecords(t, cfg.Kafka, origin)
	if out := run("replay", "--config", path, "--stage", "export"); !strings.Contains(out, "replayed 2 dead letters") {
		t.Fatalf("replay: %s", out)
	}
	if out := run("replay", "--config", path, "--stage", "export"); !strings.Contains(out, "replayed 0 dead letters") {
		t.Fatalf("second replay: %s", out)
	}
	if got := countRecords(t, cfg.Kafka, origin) - before; got != 2 {
		t.Fatalf("%d records put back on %s, want 2", got, origin)
	}
	var errb bytes.Buffer
	if err := runDLQ(context.Background(), []string{"list", "--config", path, "--stage", "fanout.nope"}, &bytes.Buffer{}, &errb); err == nil {
		t.Fatal("an unknown stage was accepted")
	}
	if err := runDLQ(context.Background(), []string{"list", "--config", path, "--stage", "export", "--channel", "sms"}, &bytes.Buffer{}, &errb); err == nil {
		t.Fatal("--stage with --channel was accepted")
	}
}
