package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// ErrIdle is returned by ReadRange when a partition gave nothing for the idle time before its
// end was reached.
var ErrIdle = errors.New("partition idle before its end")

// markerWait is how long ReadRange waits for the last offset of a range once every other one
// was handed over: it arrives with the fetch before it unless it is a transaction marker,
// which no consumer is ever handed.
const markerWait = time.Second

// ReadRange hands fn the records of one partition from start up to end (exclusive; the
// newest offset when the caller looked) and returns the last offset handed over. A partition
// written in transactions ends with a commit marker, which is never delivered: once only the
// last offset is missing, a short pause ends the read. Other gaps (an aborted transaction's
// records under read_committed, several markers at the end) end it after idle, with ErrIdle;
// ReadRangeOf tells those apart.
func ReadRange(ctx context.Context, consumer sarama.Consumer, topic string, partition int32, start, end int64, idle time.Duration, fn func(*sarama.ConsumerMessage)) (int64, error) {
	return readRange(ctx, consumer, topic, partition, start, end, idle, fn, nil)
}

// ReadRangeOf is ReadRange for a consumer made from client with the given isolation level:
// whenever the partition pauses before end, it asks the partition's leader whether any record
// the consumer would be handed is left before end. When none is (only transaction markers, and
// under read_committed aborted transactions' records), the read is complete and ends at once,
// however many markers close the range; ErrIdle means records were left and did not come.
func ReadRangeOf(ctx context.Context, client sarama.Client, isolation sarama.IsolationLevel, consumer sarama.Consumer, topic string, partition int32, start, end int64, idle time.Duration, fn func(*sarama.ConsumerMessage)) (int64, error) {
	left := func(from int64) (int64, bool, error) {
		return dataRecords(client, topic, partition, from, end, isolation)
	}
	return readRange(ctx, consumer, topic, partition, start, end, idle, fn, left)
}

func readRange(ctx context.Context, consumer sarama.Consumer, topic string, partition int32, start, end int64, idle time.Duration,
	fn func(*sarama.ConsumerMessage), left func(from int64) (int64, bool, error)) (int64, error) {
	last := start - 1
	if start >= end {
		return last, nil
	}
	pc, err := consumer.ConsumePartition(topic, partition, start)
	if err != nil {
		return last, err
	}
	defer pc.Close()
	wait := func() time.Duration {
		if last >= end-2 || left != nil {
			return min(idle, markerWait)
		}
		return idle
	}
	progress := time.Now()
	timer := time.NewTimer(wait())
	defer timer.Stop()
	for {
		select {
		case m, ok := <-pc.Messages():
			if !ok {
				return last, fmt.Errorf("%s/%d: consumer closed at offset %d of %d", topic, partition, last+1, end)
			}
			if m.Offset >= end {
				return last, nil
			}
			fn(m)
			last, progress = m.Offset, time.Now()
			if last >= end-1 {
				return last, nil
			}
			timer.Reset(wait())
		case err := <-pc.Errors():
			return last, err
		case <-timer.C:
			if left != nil {
				if n, covered, err := left(last + 1); err == nil && covered && n == 0 {
					return last, nil // nothing but markers (or records this isolation skips) is left
				}
			} else if last >= end-2 {
				return last, nil // the last offset is a transaction marker
			}
			if time.Since(progress) < idle {
				timer.Reset(min(markerWait, idle-time.Since(progress)))
				continue
			}
			return last, fmt.Errorf("%s/%d: %w: nothing for %s after offset %d of %d", topic, partition, ErrIdle, idle, last, end)
		case <-ctx.Done():
			return last, ctx.Err()
		}
	}
}
