package deadletter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/gocql/gocql"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/platform/kafka"
)

// cqlErr is a Cassandra error frame as gocql returns it (RequestError).
type cqlErr struct{ code int }

func (e cqlErr) Code() int       { return e.code }
func (e cqlErr) Message() string { return "cql" }
func (e cqlErr) Error() string   { return fmt.Sprintf("cql error %x", e.code) }

func TestClassifyTellsPermanentFromTransientThroughTheErrorChain(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("fan-out: scheduling n1: %w", err) }
	var syntax *json.SyntaxError
	jsonErr := json.Unmarshal([]byte("{not json"), &struct{}{})
	if !errors.As(jsonErr, &syntax) {
		t.Fatalf("json error %T", jsonErr)
	}
	var typ struct{ N int }
	typeErr := json.Unmarshal([]byte(`{"N":"x"}`), &typ)
	for _, c := range []struct {
		name   string
		err    error
		class  Class
		reason string
	}{
		{"NUL in jsonb (22P05)", wrap(&pgconn.PgError{Code: "22P05", Message: "unsupported Unicode escape sequence"}), Permanent, ReasonBadData},
		{"NUL in text (22021)", wrap(&pgconn.PgError{Code: "22021"}), Permanent, ReasonBadData},
		{"value too long (22001)", &pgconn.PgError{Code: "22001"}, Permanent, ReasonBadData},
		{"unique violation (23505)", wrap(&pgconn.PgError{Code: "23505"}), Permanent, ReasonConstraint},
		{"not null violation (23502)", &pgconn.PgError{Code: "23502"}, Permanent, ReasonConstraint},
		{"postgres shutting down (57P01)", wrap(&pgconn.PgError{Code: "57P01"}), Transient, ""},
		{"postgres connection failure (08006)", &pgconn.PgError{Code: "08006"}, Transient, ""},
		{"serialization failure (40001)", &pgconn.PgError{Code: "40001"}, Transient, ""},
		{"undefined table (42P01): a deployment fault, not the record's", &pgconn.PgError{Code: "42P01"}, Transient, ""},
		{"cassandra invalid request", wrap(cqlErr{gocql.ErrCodeInvalid}), Permanent, ReasonRefused},
		{"cassandra unavailable", wrap(cqlErr{gocql.ErrCodeUnavailable}), Transient, ""},
		{"cassandra write timeout", cqlErr{gocql.ErrCodeWriteTimeout}, Transient, ""},
		{"cassandra overloaded", cqlErr{gocql.ErrCodeOverloaded}, Transient, ""},
		{"cassandra no hosts", wrap(gocql.ErrNoConnections), Transient, ""},
		{"cql marshal error", wrap(gocql.MarshalError("can not marshal")), Permanent, ReasonBadData},
		{"json syntax", wrap(jsonErr), Permanent, ReasonUndecodable},
		{"json type", wrap(typeErr), Permanent, ReasonUndecodable},
		{"marked undecodable", MarkPermanent(errors.New("sealed record: content does not open"), ReasonUndecodable), Permanent, ReasonUndecodable},
		{"marked invalid, wrapped", wrap(MarkPermanent(errors.New("no id"), ReasonInvalid)), Permanent, ReasonInvalid},
		{"kafka record too large", wrap(sarama.ErrMessageSizeTooLarge), Permanent, ReasonTooLarge},
		{"kafka record larger than the producer's max", fmt.Errorf("%w: %w", kafka.ErrUnavailable,
			sarama.ConfigurationError("Attempt to produce message larger than configured Producer.MaxMessageBytes: 2000000 > 1000000")), Permanent, ReasonTooLarge},
		{"other kafka configuration error", sarama.ConfigurationError("Net.SASL.User must not be empty"), Transient, ""},
		{"kafka not leader", wrap(sarama.ErrNotLeaderForPartition), Transient, ""},
		{"kafka unavailable", fmt.Errorf("%w: %w", kafka.ErrUnavailable, sarama.ErrOutOfBrokers), Transient, ""},
		{"data keys unavailable", fmt.Errorf("%w: boom", envelope.ErrUnavailable), Transient, ""},
		{"deadline", wrap(context.DeadlineExceeded), Transient, ""},
		{"deadline around a store error", fmt.Errorf("%w: %w", context.DeadlineExceeded, &pgconn.PgError{Code: "23505"}), Transient, ""},
		{"canceled", context.Canceled, Transient, ""},
		{"net error", wrap(&net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}), Transient, ""},
		{"unknown", errors.New("something odd"), Transient, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			class, reason := Classify(c.err)
			if class != c.class || reason != c.reason {
				t.Fatalf("Classify(%v) = %s/%q, want %s/%q", c.err, class, reason, c.class, c.reason)
			}
		})
	}
	if MarkPermanent(nil, ReasonInvalid) != nil {
		t.Fatal("MarkPermanent(nil) is not nil")
	}
}

func fastPolicy(attempts int, elapsed time.Duration) Policy {
	return Policy{MaxAttempts: attempts, MaxElapsed: elapsed, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
}

func TestPolicyDoStopsAtOnceOnAPermanentFailure(t *testing.T) {
	n := 0
	bad := MarkPermanent(errors.New("bad"), ReasonInvalid)
	attempts, err := fastPolicy(50, time.Minute).Do(context.Background(), func(context.Context) error { n++; return bad }, nil)
	if !errors.Is(err, bad) || attempts != 1 || n != 1 || Stopped(err) {
		t.Fatalf("attempts %d, calls %d, err %v", attempts, n, err)
	}
}

func TestPolicyDoRetriesATransientFailureThatClears(t *testing.T) {
	n, told := 0, 0
	attempts, err := fastPolicy(50, time.Minute).Do(context.Background(), func(context.Context) error {
		if n++; n < 4 {
			return &pgconn.PgError{Code: "57P01"}
		}
		return nil
	}, func(error, time.Duration) { told++ })
	if err != nil || attempts != 4 || told != 3 {
		t.Fatalf("attempts %d, retries told %d, err %v", attempts, told, err)
	}
}

func TestPolicyDoGivesUpATransientFailureAtMaxAttempts(t *testing.T) {
	down := errors.New("store down")
	attempts, err := fastPolicy(5, time.Minute).Do(context.Background(), func(context.Context) error { return down }, nil)
	if !errors.Is(err, down) || attempts != 5 || Stopped(err) {
		t.Fatalf("attempts %d, err %v", attempts, err)
	}
	if l := New("fanout.social", err, attempts, time.Now()); l.Class != Transient || l.Reason != ReasonExhausted {
		t.Fatalf("letter %+v", l)
	}
}

func TestPolicyDoGivesUpATransientFailureAtMaxElapsed(t *testing.T) {
	p := Policy{MaxAttempts: 100_000, MaxElapsed: 150 * time.Millisecond, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	start := time.Now()
	attempts, err := p.Do(context.Background(), func(context.Context) error { return errors.New("down") }, nil)
	if err == nil || Stopped(err) || attempts < 2 {
		t.Fatalf("attempts %d, err %v", attempts, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("gave up after %s, want about 150ms", took)
	}
}

func TestPolicyDoReportsStoppedWhenItsContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	attempts, err := fastPolicy(100_000, time.Hour).Do(ctx, func(context.Context) error { cancel(); return errors.New("down") }, nil)
	if !Stopped(err) || attempts != 1 {
		t.Fatalf("attempts %d, err %v, want stopped", attempts, err)
	}
}

func TestPolicyValidateNamesTheBadKeyAndFillsDefaults(t *testing.T) {
	if err := (Policy{}).Validate(); err != nil {
		t.Fatalf("zero policy (defaults): %v", err)
	}
	if d := (Policy{}).WithDefaults(); d != DefaultPolicy() {
		t.Fatalf("defaults %+v", d)
	}
	for _, c := range []struct {
		p   Policy
		key string
	}{
		{Policy{MaxAttempts: -1}, "max_attempts"},
		{Policy{MaxAttempts: 200_000}, "max_attempts"},
		{Policy{MaxElapsed: -time.Second}, "max_elapsed"},
		{Policy{MaxElapsed: 200 * time.Hour}, "max_elapsed"},
		{Policy{InitialBackoff: -time.Second}, "initial_backoff"},
		{Policy{InitialBackoff: time.Minute, MaxBackoff: time.Second}, "max_backoff"},
	} {
		err := c.p.Validate()
		if err == nil || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%+v: %v, want an error naming %s", c.p, err, c.key)
		}
	}
}

func TestLetterKeepsTheOriginalBytesAndItsOrigin(t *testing.T) {
	sealed := []byte(`{"v":1,"keys":[{"kid":"k1","w":"AAAA"}],"data":"BBBB"}`)
	m := &sarama.ConsumerMessage{Topic: "eu-west-1.notify.social", Partition: 3, Offset: 42, Key: []byte("k1"), Value: sealed,
		Timestamp: time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)}
	l := FromMessage(FanoutStage("social"), m, &pgconn.PgError{Code: "22P05", Message: "unsupported Unicode escape sequence"}, 1, time.Now())
	msg, err := l.Message("eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	if msg.Topic != "eu-west-1.dlq.fanout.social" || msg.Key != "k1" {
		t.Fatalf("topic %s key %s", msg.Topic, msg.Key)
	}
	got, err := Decode(msg.Value)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Value) != string(sealed) || string(got.Key) != "k1" || got.Origin.Topic != m.Topic || got.Origin.Partition != 3 ||
		got.Origin.Offset != 42 || !got.Origin.Time.Equal(m.Timestamp) || got.Class != Permanent || got.Reason != ReasonBadData ||
		!strings.Contains(got.Error, "22P05") || got.Stage != "fanout.social" {
		t.Fatalf("letter %+v", got)
	}
	huge := l
	huge.Value = bytes.Repeat([]byte("x"), 2<<20)
	hm, err := huge.Message("eu-west-1")
	if err != nil || len(hm.Value) > maxLetterBytes {
		t.Fatalf("a letter of a 2 MiB record is %d bytes (%v)", len(hm.Value), err)
	}
	if got, _ := Decode(hm.Value); got.Value != nil || !strings.Contains(got.Error, "not kept") || got.Origin.Offset != 42 {
		t.Fatalf("letter of a record too large: %+v", got)
	}
	long := New(StageExport, errors.New(strings.Repeat("x", 10_000)), 1, time.Now())
	if len(long.Error) > maxErrorText+10 {
		t.Fatalf("error text of %d bytes kept", len(long.Error))
	}
}

func TestTopicsNameEveryStageOfTheRegion(t *testing.T) {
	var names []string
	for _, tp := range Topics("eu-west-1", Stages([]string{"transactional", "social"}, []string{"push"}), 3) {
		names = append(names, tp.Name)
		if tp.Partitions != 3 || tp.Retention != Retention {
			t.Errorf("%s: %d partitions, retention %s", tp.Name, tp.Partitions, tp.Retention)
		}
	}
	want := "eu-west-1.dlq.fanout.transactional eu-west-1.dlq.fanout.social eu-west-1.dlq.scheduler eu-west-1.dlq.dispatch.push eu-west-1.dlq.export eu-west-1.dlq.webhooks"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("topics %s\nwant %s", got, want)
	}
}

func FuzzDecodeNeverPanicsAndRoundTripsWhatItReads(f *testing.F) {
	l := New(StageExport, MarkPermanent(errors.New("x"), ReasonUndecodable), 1, time.Unix(0, 0))
	l.Value = []byte("\x00\xff raw")
	m, _ := l.Message("eu-west-1")
	f.Add(m.Value)
	f.Add([]byte(`{"stage":"fanout.social","value":"not base64"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := Decode(raw)
		if err != nil {
			return
		}
		again, err := got.Message("r")
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(again.Value)
		if err != nil || !bytes.Equal(back.Value, got.Value) || back.Origin.Topic != got.Origin.Topic || back.Origin.Offset != got.Origin.Offset ||
			!back.Origin.Time.Equal(got.Origin.Time) || back.Error != got.Error {
			t.Fatalf("round trip changed the letter: %+v -> %+v (%v)", got, back, err)
		}
	})
}

func TestPolicyDoStopsOnAnErasedRecordForTheCallerToDrop(t *testing.T) {
	attempts, err := fastPolicy(50, time.Minute).Do(context.Background(), func(context.Context) error {
		return fmt.Errorf("sealing tasks: %w", envelope.ErrErased)
	}, nil)
	if !errors.Is(err, envelope.ErrErased) || attempts != 1 || Stopped(err) {
		t.Fatalf("attempts %d, err %v", attempts, err)
	}
}
