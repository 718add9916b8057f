// Package deadletter keeps poison records from stopping a partition. Every consumer of the
// region (fan-out per tier, the scheduler, dispatch per channel and retry level, the exporter)
// classifies a failure with Classify: a permanent one (the record can never succeed) goes at
// once to the stage's dead-letter topic, "<region>.dlq.<stage>", and the consumer moves on; a
// transient one (a store down, a timeout) is retried under a bounded Policy, then dead-lettered
// the same way. A dead letter carries the original record's key and bytes as they were on the
// origin topic (still sealed for their users), the error, its class and reason, the stage and
// the record's origin (topic, partition, offset, time); Replay puts it back on its origin topic.
package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"

	"github.com/IBM/sarama"
	"github.com/gocql/gocql"
	"github.com/jackc/pgx/v5/pgconn"
)

// Class says whether a failed record can ever succeed.
type Class string

const (
	// Permanent: the record can never succeed (it does not decode, its data is refused by a
	// store, it fails validation). It is dead-lettered at once.
	Permanent Class = "permanent"
	// Transient: the failure is the environment's (a store down, a timeout); the record is
	// retried under the stage's Policy, then dead-lettered.
	Transient Class = "transient"
)

// Reasons, the reason label of herald_dead_letters_total.
const (
	ReasonUndecodable = "undecodable"       // the record does not decode
	ReasonInvalid     = "invalid"           // it decodes but fails validation
	ReasonBadData     = "bad_data"          // a store refuses its data (SQLSTATE class 22, a CQL marshal error)
	ReasonConstraint  = "constraint"        // a store constraint refuses it (SQLSTATE class 23)
	ReasonRefused     = "refused"           // a store refuses the request as invalid (CQL invalid request)
	ReasonTooLarge    = "too_large"         // Kafka refuses the record as too large
	ReasonExhausted   = "retries_exhausted" // a transient failure outlasted the stage's Policy
)

// permanentError marks an error permanent with its reason.
type permanentError struct {
	reason string
	err    error
}

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// MarkPermanent marks err permanent for reason (ReasonUndecodable, ReasonInvalid, ...): a
// consumer's own verdict, such as a record that does not decode. Nil stays nil.
func MarkPermanent(err error, reason string) error {
	if err == nil {
		return nil
	}
	return &permanentError{reason: reason, err: err}
}

// Classify tells a permanent failure from a transient one by the error chain, and names the
// reason of a permanent one. Anything it does not know is transient: retried under the bounded
// Policy, so a failure misjudged transient is still dead-lettered, only later.
//
// Erased records (notify.IsErased) are not failures: consumers drop them before classifying.
func Classify(err error) (Class, string) {
	if err == nil {
		return Transient, ""
	}
	var pe *permanentError
	if errors.As(err, &pe) {
		return Permanent, pe.reason
	}
	// The environment's failures first: a timeout wrapping a store error is still a timeout.
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return Transient, ""
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch {
		case strings.HasPrefix(pg.Code, "22"): // data exception: 22P05 unsupported Unicode escape, 22001 too long, ...
			return Permanent, ReasonBadData
		case strings.HasPrefix(pg.Code, "23"): // integrity constraint violation
			return Permanent, ReasonConstraint
		}
		return Transient, "" // 08 connection, 40 serialization, 53 resources, 57 shutdown, ...
	}
	var cql gocql.RequestError
	if errors.As(err, &cql) {
		switch cql.Code() {
		case gocql.ErrCodeInvalid: // e.g. "Key may not be empty", a value too large for its type
			return Permanent, ReasonRefused
		}
		return Transient, "" // unavailable, overloaded, timeouts, bootstrapping, ...
	}
	var cm gocql.MarshalError
	if errors.As(err, &cm) {
		return Permanent, ReasonBadData
	}
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	if errors.As(err, &syntax) || errors.As(err, &typ) {
		return Permanent, ReasonUndecodable
	}
	var cerr sarama.ConfigurationError
	if errors.As(err, &cerr) && strings.Contains(string(cerr), "MaxMessageBytes") {
		return Permanent, ReasonTooLarge // refused by the client before it reached a broker
	}
	var kerr sarama.KError
	if errors.As(err, &kerr) {
		switch kerr {
		case sarama.ErrMessageSizeTooLarge, sarama.ErrInvalidMessageSize:
			return Permanent, ReasonTooLarge
		case sarama.ErrInvalidMessage, sarama.ErrInvalidRecord:
			return Permanent, ReasonInvalid
		}
		return Transient, ""
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return Transient, ""
	}
	return Transient, ""
}
