// Package lagwatch reads the lag of every consumer group of a region as the broker sees it (log
// end offset minus committed offset, per group and partition) and exports it for Prometheus. A
// consumer's own view cannot be trusted for this: one stuck on a record never reports again, and
// its last report was taken when it was caught up.
package lagwatch

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/herald-notify/herald/platform/kafka"
)

var (
	lagGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_kafka_consumer_group_lag",
		Help: "Records a consumer group has yet to consume on a partition, as the broker sees it: the last stable offset minus the group's committed offset, transaction markers and aborted records left out.",
	}, []string{"region", "group", "topic", "partition"})
	committedGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_kafka_consumer_group_committed_offset",
		Help: "A consumer group's committed offset on a partition (the next record it consumes). Not moving while the lag is above zero: the partition is stalled.",
	}, []string{"region", "group", "topic", "partition"})
	endGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_kafka_partition_end_offset",
		Help: "A partition's last stable offset: where the log a read_committed consumer sees ends.",
	}, []string{"region", "topic", "partition"})
	errorsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_kafka_consumer_group_lag_errors_total",
		Help: "Rounds of reading the consumer groups' lag that failed (the gauges keep their last values).",
	}, []string{"region"})
	lastSuccess = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_kafka_consumer_group_lag_last_success_timestamp_seconds",
		Help: "When the consumer groups' lag was last read completely.",
	}, []string{"region"})
)

// Watcher reads the lag of the region's consumer groups every Interval.
type Watcher struct {
	Region   string
	Kafka    kafka.Config
	Interval time.Duration
	Log      *slog.Logger

	client sarama.Client
	admin  sarama.ClusterAdmin
	seen   map[string][]string // label values exported last round, by series key
}

// Groups is the filter on the cluster's consumer groups: the region's own ("<region>." and
// more: fan-out per tier, dispatch per channel and retry level, the exporter, and whatever
// consumer a later stage adds under the region's name), but not the bookkeeping groups of `herald
// dlq replay` ("....replay"), whose committed offset marks what an operator replayed and is
// meant to stand still.
func Groups(region string, all []string) []string {
	var out []string
	for _, g := range all {
		if strings.HasPrefix(g, region+".") && !strings.HasSuffix(g, ".replay") {
			out = append(out, g)
		}
	}
	return out
}

// Run reads the lag at once and then every Interval until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.close()
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, w.Interval)
		if err := w.Collect(rctx); err != nil && ctx.Err() == nil {
			errorsTotal.WithLabelValues(w.Region).Inc()
			w.Log.Warn("reading consumer group lag", "err", err)
			w.close() // connect again next round: the broker may have moved or restarted
		}
		cancel()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Collect reads every group's lag once and updates the gauges; series of groups or partitions
// that are gone are removed.
func (w *Watcher) Collect(ctx context.Context) error {
	if w.client == nil {
		sc, err := w.Kafka.Sarama()
		if err != nil {
			return err
		}
		if w.client, err = sarama.NewClient(w.Kafka.Brokers, sc); err != nil {
			return fmt.Errorf("connecting to kafka: %w", err)
		}
		if w.admin, err = sarama.NewClusterAdminFromClient(w.client); err != nil {
			w.close()
			return fmt.Errorf("kafka admin: %w", err)
		}
	}
	listed := make(chan error, 1)
	var all map[string]string
	go func() {
		var err error
		all, err = w.admin.ListConsumerGroups()
		listed <- err
	}()
	select {
	case err := <-listed:
		if err != nil {
			return fmt.Errorf("listing consumer groups: %w", err)
		}
	case <-ctx.Done():
		return fmt.Errorf("listing consumer groups: %w", ctx.Err())
	}
	names := make([]string, 0, len(all))
	for g := range all {
		names = append(names, g)
	}
	lags, err := kafka.GroupLags(ctx, w.client, w.admin, Groups(w.Region, names))
	if err != nil {
		return err
	}
	now := map[string][]string{}
	for _, l := range lags {
		p := strconv.Itoa(int(l.Partition))
		lagGauge.WithLabelValues(w.Region, l.Group, l.Topic, p).Set(float64(l.Lag))
		committedGauge.WithLabelValues(w.Region, l.Group, l.Topic, p).Set(float64(l.Committed))
		endGauge.WithLabelValues(w.Region, l.Topic, p).Set(float64(l.End))
		now["g\x00"+l.Group+"\x00"+l.Topic+"\x00"+p] = []string{w.Region, l.Group, l.Topic, p}
		now["t\x00"+l.Topic+"\x00"+p] = []string{w.Region, l.Topic, p}
	}
	for k, labels := range w.seen {
		if _, ok := now[k]; ok {
			continue
		}
		if k[0] == 'g' {
			lagGauge.DeleteLabelValues(labels...)
			committedGauge.DeleteLabelValues(labels...)
		} else {
			endGauge.DeleteLabelValues(labels...)
		}
	}
	w.seen = now
	lastSuccess.WithLabelValues(w.Region).SetToCurrentTime()
	return nil
}

func (w *Watcher) close() {
	if w.admin != nil {
		_ = w.admin.Close() // closes the client it was made from
	} else if w.client != nil {
		_ = w.client.Close()
	}
	w.admin, w.client = nil, nil
}
