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
// records under read_committed) end it after idle, with ErrIdle.
func ReadRange(ctx context.Context, consumer sarama.Consumer, topic string, partition int32, start, end int64, idle time.Duration, fn func(*sarama.ConsumerMessage)) (int64, error) {
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
		if last >= end-2 {
			return min(idle, markerWait)
		}
		return idle
	}
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
			last = m.Offset
			if last >= end-1 {
				return last, nil
			}
			timer.Reset(wait())
		case err := <-pc.Errors():
			return last, err
		case <-timer.C:
			if last >= end-2 {
				return last, nil // the last offset is a transaction marker
			}
			return last, fmt.Errorf("%s/%d: %w: nothing for %s after offset %d of %d", topic, partition, ErrIdle, idle, last, end)
		case <-ctx.Done():
			return last, ctx.Err()
		}
	}
}
