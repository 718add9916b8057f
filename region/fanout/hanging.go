package fanout

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/kafka"
)

// hangingAfter is how long a tier's group may be refused its offsets (UNSTABLE_OFFSET_COMMIT)
// before it looks for a hanging transaction of its own holding them, and how long such a
// transaction must have written nothing: the longest a transaction of ours lasts
// (kafka.TxnTimeout). What makes one hanging is its coordinator's word (not in progress at that
// epoch); the quiet time keeps a transaction that just began from being taken for the one before.
const hangingAfter = kafka.TxnTimeout

// hangingEvery spaces the looks while the group stays refused.
const hangingEvery = 10 * time.Second

// unstableWatch follows a group's Consume errors and says when to look for hanging
// transactions: once it has been refused its offsets for after, then every hangingEvery while
// it still is. Any other outcome starts the count again.
type unstableWatch struct {
	after       time.Duration
	since, last time.Time
}

// unstableOffsets reports whether err is the group's offsets held by an open transaction.
func unstableOffsets(err error) bool {
	return err != nil && (errors.Is(err, sarama.ErrUnstableOffsetCommit) || strings.Contains(err.Error(), sarama.ErrUnstableOffsetCommit.Error()))
}

func (w *unstableWatch) observe(err error, now time.Time) bool {
	if !unstableOffsets(err) {
		w.since, w.last = time.Time{}, time.Time{}
		return false
	}
	if w.since.IsZero() {
		w.since = now
	}
	if now.Sub(w.since) < w.after || (!w.last.IsZero() && now.Sub(w.last) < hangingEvery) {
		return false
	}
	w.last = now
	return true
}

// abortHanging aborts the hanging transactions of this tier's hand-off producers (this process
// or an earlier one of the region: transactional ids "<group>.<instance>") on the group's
// offsets, so the fan-out can start again; their events are repeated from the last committed
// offsets, never visible before.
func (c *Consumer) abortHanging(ctx context.Context) {
	aborted, err := kafka.AbortHangingOffsets(ctx, c.Kafka, c.Group, c.Group+".", hangingAfter, time.Now())
	for _, t := range aborted {
		hangingAborted.WithLabelValues(c.Fanout.set.Region, c.Tier).Inc()
		c.Log.Warn("aborted a hanging transaction that held the tier's offsets", "tier", c.Tier, "group", c.Group,
			"transactional_id", t.TransactionalID, "producer_id", t.ProducerID, "producer_epoch", t.ProducerEpoch,
			"offsets_partition", t.Partition, "start_offset", t.StartOffset, "last_write", t.LastWrite)
	}
	if err != nil {
		c.Log.Warn("looking for hanging transactions on the tier's offsets", "tier", c.Tier, "group", c.Group, "err", err)
	} else if len(aborted) == 0 {
		c.Log.Warn("the tier's offsets are held by a transaction that is not ours or not hanging yet", "tier", c.Tier, "group", c.Group)
	}
}
