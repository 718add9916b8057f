package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/platform/kafka"
)

// Sealer holds the data keys records are sealed under (*userkeys.Keys): the personal part of
// every record the region produces is readable only while its users' keys exist
// (crypto-shredding, docs/residency.md). A nil Sealer produces and reads plain records (the
// stages' unit tests); the region always sets one.
type Sealer interface {
	// For returns the data keys of users of app, in order, creating the missing ones (one
	// query for all); an erased user gets none (a zero Key): nothing is sealed for them again.
	For(ctx context.Context, app string, users []string) ([]envelope.Key, error)
	// Open opens a sealed record; envelope.ErrErased when no user's key is left.
	Open(ctx context.Context, raw []byte) (envelope.Opened, error)
}

var erasedDropped = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "herald_erased_records_dropped_total",
	Help: "Kafka records (or the erased users' part of them) dropped because the users' data keys were destroyed by an erasure, by stage.",
}, []string{"stage"})

// DroppedErased counts n records or recipients dropped as erased at stage.
func DroppedErased(stage string, n int) {
	if n > 0 {
		erasedDropped.WithLabelValues(stage).Add(float64(n))
	}
}

// ErrErased means a record concerns only erased users: it is dropped, never retried.
var ErrErased = envelope.ErrErased

// IsErased reports whether err is ErrErased.
func IsErased(err error) bool { return errors.Is(err, envelope.ErrErased) }

// EventMessage encodes e for topic. An event naming recipients is sealed for them, the
// recipients taken out of the content (each is only inside their own wrap); a topic send names
// no one and goes as it is. One recipient's events are keyed by their key id, so they stay in
// order without the key naming them. Erased recipients are left out and returned; when every
// recipient is erased the error is ErrErased and nothing is to be produced.
func EventMessage(ctx context.Context, s Sealer, topic string, e Event) (m kafka.Message, erased []string, err error) {
	if s == nil || len(e.Recipients) == 0 {
		raw, err := json.Marshal(e)
		if err != nil {
			return kafka.Message{}, nil, fmt.Errorf("encoding event: %w", err)
		}
		return kafka.Message{Topic: topic, Key: e.ID, Value: raw}, nil, nil
	}
	keys, err := s.For(ctx, e.AppID, e.Recipients)
	if err != nil {
		return kafka.Message{}, nil, err
	}
	return SealEvent(topic, e, keys)
}

// SealEvent is EventMessage for an event naming recipients whose keys were read already
// (Sealer.For, in the order of e.Recipients): a batch of events reads its users' keys at once.
func SealEvent(topic string, e Event, keys []envelope.Key) (m kafka.Message, erased []string, err error) {
	if len(keys) != len(e.Recipients) {
		return kafka.Message{}, nil, fmt.Errorf("sealing event %s: %d keys for %d recipients", e.ID, len(keys), len(e.Recipients))
	}
	keys, erased = live(keys, e.Recipients)
	if len(keys) == 0 {
		return kafka.Message{}, erased, ErrErased
	}
	e.Recipients = nil
	raw, err := json.Marshal(e)
	if err != nil {
		return kafka.Message{}, nil, fmt.Errorf("encoding event: %w", err)
	}
	value, key, err := seal(raw, keys, e.ID)
	if err != nil {
		return kafka.Message{}, nil, err
	}
	return kafka.Message{Topic: topic, Key: key, Value: value}, erased, nil
}

// live returns the keys that exist and the users (of the same order) that have none.
func live(keys []envelope.Key, users []string) (out []envelope.Key, erased []string) {
	out = make([]envelope.Key, 0, len(keys))
	for i, k := range keys {
		if k.ID == "" {
			erased = append(erased, users[i])
			continue
		}
		out = append(out, k)
	}
	return out, erased
}

// seal seals content for keys; the record key is the key id for one user, fallback otherwise.
func seal(content []byte, keys []envelope.Key, fallback string) ([]byte, string, error) {
	value, err := envelope.Seal(content, keys)
	if err != nil {
		return nil, "", fmt.Errorf("sealing record: %w", err)
	}
	if len(keys) == 1 {
		return value, keys[0].ID, nil
	}
	return value, fallback, nil
}

// DecodeEvent reads a tier topic's record. Recipients whose key was destroyed are left out and
// counted in erased; when none is left the error is ErrErased.
func DecodeEvent(ctx context.Context, s Sealer, raw []byte) (e Event, erased int, err error) {
	if !envelope.IsSealed(raw) {
		err = json.Unmarshal(raw, &e)
		return e, 0, err
	}
	o, err := open(ctx, s, raw)
	if err != nil {
		return Event{}, o.Erased, err
	}
	if err := json.Unmarshal(o.Content, &e); err != nil {
		return Event{}, 0, err
	}
	e.Recipients = alive(o.Users)
	return e, o.Erased, nil
}

// TaskMessage encodes t for topic, sealed for its recipient and keyed by their key id;
// ErrErased when the recipient is erased (nothing is to be produced).
func TaskMessage(ctx context.Context, s Sealer, topic string, t Task) (kafka.Message, error) {
	return SealedFor(ctx, s, topic, t.AppID, t.UserID, t, func(v *Task) { v.UserID = "" })
}

// DecodeTask reads a dispatch topic's record; ErrErased when its recipient's key is gone.
func DecodeTask(ctx context.Context, s Sealer, raw []byte) (Task, error) {
	var t Task
	user, err := OpenFor(ctx, s, raw, &t)
	if err != nil {
		return Task{}, err
	}
	if user != "" {
		t.UserID = user
	}
	return t, nil
}

// SealedFor encodes v, a record about user alone, for topic: sealed for user with the user id
// taken out by strip (it is only inside the user's wrap), keyed by the user's key id.
// ErrErased when the user is erased: nothing is to be produced.
func SealedFor[T any](ctx context.Context, s Sealer, topic, app, user string, v T, strip func(*T)) (kafka.Message, error) {
	if s == nil {
		raw, err := json.Marshal(v)
		if err != nil {
			return kafka.Message{}, fmt.Errorf("encoding record: %w", err)
		}
		return kafka.Message{Topic: topic, Key: user, Value: raw}, nil
	}
	keys, err := s.For(ctx, app, []string{user})
	if err != nil {
		return kafka.Message{}, err
	}
	if len(keys) != 1 || keys[0].ID == "" {
		return kafka.Message{}, ErrErased
	}
	strip(&v)
	raw, err := json.Marshal(v)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encoding record: %w", err)
	}
	value, key, err := seal(raw, keys, "")
	if err != nil {
		return kafka.Message{}, err
	}
	return kafka.Message{Topic: topic, Key: key, Value: value}, nil
}

// OpenFor decodes a record SealedFor wrote into v and returns its user ("" for a plain
// record, whose user is in v); ErrErased when the user's key is gone.
func OpenFor(ctx context.Context, s Sealer, raw []byte, v any) (string, error) {
	if !envelope.IsSealed(raw) {
		return "", json.Unmarshal(raw, v)
	}
	o, err := open(ctx, s, raw)
	if err != nil {
		return "", err
	}
	if len(o.Users) != 1 {
		return "", fmt.Errorf("sealed record for %d users, want 1", len(o.Users))
	}
	return o.Users[0], json.Unmarshal(o.Content, v)
}

func open(ctx context.Context, s Sealer, raw []byte) (envelope.Opened, error) {
	if s == nil {
		return envelope.Opened{}, errors.New("a sealed record and no keys to open it")
	}
	return s.Open(ctx, raw)
}

func alive(users []string) []string {
	out := make([]string, 0, len(users))
	for _, u := range users {
		if u != "" {
			out = append(out, u)
		}
	}
	return out
}
