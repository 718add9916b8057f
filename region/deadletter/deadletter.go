package deadletter

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/retry"
)

// The stages that dead-letter, in topic names and the stage label.
const (
	StageScheduler = "scheduler"
	StageExport    = "export"
	StageWebhooks  = "webhooks"
)

// FanoutStage is a tier's fan-out stage: "fanout.marketing".
func FanoutStage(tier string) string { return "fanout." + tier }

// DispatchStage is a channel's dispatch stage, its dispatch topic and retry levels together:
// "dispatch.push". Tasks a provider will not take (retries spent) stay on the channel's own
// dead-letter topic (dispatch.DLQTopic); this one holds the records dispatch cannot handle.
func DispatchStage(channel string) string { return "dispatch." + channel }

// Topic is a stage's dead-letter topic: "eu-west-1.dlq.fanout.social".
func Topic(region, stage string) string { return region + ".dlq." + stage }

// Stages lists the stages of a region with tiers and dispatch channels.
func Stages(tiers, channels []string) []string {
	var out []string
	for _, t := range tiers {
		out = append(out, FanoutStage(t))
	}
	out = append(out, StageScheduler)
	for _, ch := range channels {
		out = append(out, DispatchStage(ch))
	}
	return append(out, StageExport, StageWebhooks)
}

// Retention is how long a dead-letter topic keeps its letters: two weeks to look and replay.
// The records stay sealed, so an erasure still makes an erased user's letters unreadable.
const Retention = 14 * 24 * time.Hour

// Topics lists the dead-letter topics of the stages.
func Topics(region string, stages []string, partitions int32) []kafka.Topic {
	out := make([]kafka.Topic, 0, len(stages))
	for _, s := range stages {
		out = append(out, kafka.Topic{Name: Topic(region, s), Partitions: partitions, Retention: Retention})
	}
	return out
}

// Origin is where a dead letter came from. For the scheduler, which reads Postgres rather than
// a topic, Topic is the tier topic the event was due on, Partition -1 and Offset the
// scheduled_sends row id.
type Origin struct {
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Time      time.Time `json:"time"`
}

// Letter is one record of a stage's dead-letter topic.
type Letter struct {
	Stage  string `json:"stage"`
	Class  Class  `json:"class"`
	Reason string `json:"reason"`
	// Error is the failure's text (the store's message, not its detail: no field values).
	Error string `json:"error"`
	// Attempts is how many times the stage tried the record.
	Attempts int       `json:"attempts"`
	At       time.Time `json:"at"`
	Origin   Origin    `json:"origin"`
	// Key and Value are the original record's, byte for byte: a record sealed for its users
	// stays sealed, and is unreadable once they are erased.
	Key   []byte `json:"key,omitempty"`
	Value []byte `json:"value"`
}

// maxErrorText bounds the error text kept in a dead letter.
const maxErrorText = 2048

// FromMessage starts the dead letter of a consumed record failed with err after attempts.
func FromMessage(stage string, m *sarama.ConsumerMessage, err error, attempts int, now time.Time) Letter {
	l := New(stage, err, attempts, now)
	l.Origin = Origin{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Time: m.Timestamp}
	l.Key, l.Value = m.Key, m.Value
	return l
}

// New starts a dead letter of a failure: its class and reason from Classify, unless exhausted
// (a transient failure past the stage's Policy).
func New(stage string, err error, attempts int, now time.Time) Letter {
	class, reason := Classify(err)
	if class == Transient {
		reason = ReasonExhausted
	}
	text := err.Error()
	if len(text) > maxErrorText {
		text = text[:maxErrorText] + "…"
	}
	return Letter{Stage: stage, Class: class, Reason: reason, Error: text, Attempts: attempts, At: now.UTC()}
}

// maxLetterBytes keeps a dead letter under Kafka's default record limit (1 MB, and sarama's
// Producer.MaxMessageBytes): a letter is never refused for its size, or it would be poison itself.
const maxLetterBytes = 900_000

// Message is l as a record of region's dead-letter topic of its stage, keyed by the original
// record's key (one user's dead letters stay in order). A record too large to fit (it was
// itself refused as too large) is left out, and the error says so.
func (l Letter) Message(region string) (kafka.Message, error) {
	raw, err := json.Marshal(l)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encoding dead letter: %w", err)
	}
	if len(raw) > maxLetterBytes {
		l.Error += fmt.Sprintf(" (the record, %d bytes, is not kept: too large for the dead-letter topic)", len(l.Value))
		l.Value = nil
		if raw, err = json.Marshal(l); err != nil {
			return kafka.Message{}, fmt.Errorf("encoding dead letter: %w", err)
		}
	}
	return kafka.Message{Topic: Topic(region, l.Stage), Key: string(l.Key), Value: raw}, nil
}

// Decode reads a dead-letter record.
func Decode(raw []byte) (Letter, error) {
	var l Letter
	if err := json.Unmarshal(raw, &l); err != nil {
		return Letter{}, fmt.Errorf("dead letter: %w", err)
	}
	return l, nil
}

var deadLetters = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "herald_dead_letters_total",
	Help: "Records set aside on a stage's dead-letter topic (herald dlq list), by stage and reason (undecodable, invalid, bad_data, constraint, refused, too_large, retries_exhausted).",
}, []string{"region", "stage", "reason"})

// Reasons lists every reason label.
var Reasons = []string{ReasonUndecodable, ReasonInvalid, ReasonBadData, ReasonConstraint, ReasonRefused, ReasonTooLarge, ReasonExhausted}

// Register creates herald_dead_letters_total at 0 for every stage and reason of the region, so
// the first dead letter after a start is an increase Prometheus can see (a series born at 1 is
// not), and dashboards show 0 rather than nothing.
func Register(region string, stages []string) {
	for _, s := range stages {
		for _, r := range Reasons {
			deadLetters.WithLabelValues(region, s, r)
		}
	}
}

// Counted counts l in herald_dead_letters_total and logs it; call it once l is durable.
func Counted(log *slog.Logger, region string, l Letter) {
	deadLetters.WithLabelValues(region, l.Stage, l.Reason).Inc()
	if log != nil {
		log.Error("record dead-lettered; the partition moves on", "stage", l.Stage, "class", l.Class, "reason", l.Reason,
			"origin_topic", l.Origin.Topic, "origin_partition", l.Origin.Partition, "origin_offset", l.Origin.Offset,
			"attempts", l.Attempts, "err", l.Error, "dlq", Topic(region, l.Stage))
	}
}

// Producer hands records durably to Kafka (*kafka.Producer).
type Producer interface {
	Send(ctx context.Context, msgs ...kafka.Message) error
}

// Writer puts dead letters on their topics for the consumers that commit offsets themselves
// (dispatch, the exporter, the scheduler); fan-out adds them to its hand-off transaction.
type Writer struct {
	Region   string
	Producer Producer
	Log      *slog.Logger
}

// Put produces l and returns once Kafka acknowledged it, retrying while Kafka is unavailable
// (the origin's offset must not move before its dead letter is durable), then counts it. It
// fails only when ctx ends first.
func (w *Writer) Put(ctx context.Context, l Letter) error {
	m, err := l.Message(w.Region)
	if err != nil {
		return err
	}
	_, err = backoff.Retry(ctx, func() (struct{}, error) { return struct{}{}, w.Producer.Send(ctx, m) },
		backoff.WithMaxElapsedTime(0), backoff.WithBackOff(retry.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.5}.BackOff()),
		backoff.WithNotify(func(err error, wait time.Duration) {
			if w.Log != nil {
				w.Log.Warn("producing dead letter failed; retrying", "stage", l.Stage, "err", err, "backoff", wait)
			}
		}))
	if err != nil {
		return fmt.Errorf("dead letter for %s: %w", l.Stage, err)
	}
	Counted(w.Log, w.Region, l)
	return nil
}
