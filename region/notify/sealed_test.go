package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/envelope"
)

// memKeys is a Sealer over an in-memory key store, for the codecs' tests (the region's is
// userkeys.Keys over Postgres, tested in the integration tests).
type memKeys struct {
	keys   map[string]envelope.Key
	erased map[string]bool // as erased_users: no key is made for them again
}

func (m *memKeys) key(app, user string) envelope.Key {
	k, ok := m.keys[app+"/"+user]
	if !ok {
		k = envelope.Key{ID: fmt.Sprintf("kid-%d", len(m.keys)), User: user, Data: make([]byte, envelope.KeySize)}
		_, _ = rand.Read(k.Data)
		m.keys[app+"/"+user] = k
	}
	return k
}

func (m *memKeys) For(_ context.Context, app string, users []string) ([]envelope.Key, error) {
	var keys []envelope.Key
	for _, u := range users {
		if m.erased[app+"/"+u] {
			keys = append(keys, envelope.Key{})
			continue
		}
		keys = append(keys, m.key(app, u))
	}
	return keys, nil
}

func (m *memKeys) Open(ctx context.Context, raw []byte) (envelope.Opened, error) {
	return envelope.Open(ctx, raw, func(_ context.Context, ids []string) (map[string][]byte, error) {
		out := map[string][]byte{}
		for _, k := range m.keys {
			if slices.Contains(ids, k.ID) {
				out[k.ID] = k.Data
			}
		}
		return out, nil
	})
}

func (m *memKeys) destroy(app, user string) {
	delete(m.keys, app+"/"+user)
	m.erased[app+"/"+user] = true
}

func TestSealedEventsNameTheirRecipientsOnlyInsideTheirWraps(t *testing.T) {
	const ada, bob = "ada-lovelace", "bob-kahn"
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		recipients []string
		erase      []string
		want       []string
		erased     int
		err        error
		keyIsID    bool
	}{
		// Ids with a '-', which base64 never writes: a three-letter id turned up by chance in
		// the ciphertext's base64 about once in 700 runs.
		{"one recipient", []string{ada}, nil, []string{ada}, 0, nil, false},
		{"one recipient erased", []string{ada}, []string{ada}, nil, 1, ErrErased, false},
		{"two, one erased", []string{ada, bob}, []string{ada}, []string{bob}, 1, nil, true},
		{"two, both erased", []string{ada, bob}, []string{ada, bob}, nil, 2, ErrErased, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &memKeys{keys: map[string]envelope.Key{}, erased: map[string]bool{}}
			e := Event{ID: "n1", AppID: "app", Tier: Social, Recipients: tc.recipients, Content: map[string]Content{InApp: {Title: "Hello"}},
				Metadata: map[string]string{"order": "42"}, AcceptedAt: time.Now().UTC()}
			m, _, err := EventMessage(ctx, s, "r.notify.social", e)
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range tc.recipients {
				if bytes.Contains(m.Value, []byte(u)) || m.Key == u {
					t.Fatalf("record or key names %s: key %q value %s", u, m.Key, m.Value)
				}
			}
			if bytes.Contains(m.Value, []byte("Hello")) || bytes.Contains(m.Value, []byte("order")) {
				t.Fatalf("content in clear: %s", m.Value)
			}
			if tc.keyIsID != (m.Key == "n1") {
				t.Fatalf("record key %q", m.Key)
			}
			for _, u := range tc.erase {
				s.destroy("app", u)
			}
			got, erased, err := DecodeEvent(ctx, s, m.Value)
			if err != tc.err || erased != tc.erased {
				t.Fatalf("err %v erased %d, want %v and %d", err, erased, tc.err, tc.erased)
			}
			if err == nil && (!slices.Equal(got.Recipients, tc.want) || got.Content[InApp].Title != "Hello" || got.ID != "n1") {
				t.Fatalf("decoded %+v", got)
			}
		})
	}
}

func TestPlainRecordsStillDecode(t *testing.T) {
	s := &memKeys{keys: map[string]envelope.Key{}, erased: map[string]bool{}}
	e, erased, err := DecodeEvent(context.Background(), s, []byte(`{"id":"n1","app_id":"a","recipients":["ada"]}`))
	if err != nil || erased != 0 || !slices.Equal(e.Recipients, []string{"ada"}) {
		t.Fatalf("%+v %d %v", e, erased, err)
	}
	topic, _, err := EventMessage(context.Background(), s, "t", Event{ID: "n2", AppID: "a", Topic: "news"})
	if err != nil || envelope.IsSealed(topic.Value) || topic.Key != "n2" {
		t.Fatalf("a topic send names no one and goes plain: %s %v", topic.Value, err)
	}
}

func TestSealedTasksAndDeliveryEventsDropOnlyTheErasedUsers(t *testing.T) {
	const ada, bob = "ada-lovelace", "bob-kahn" // a '-', which base64 never writes
	ctx := context.Background()
	s := &memKeys{keys: map[string]envelope.Key{}, erased: map[string]bool{}}
	task := Task{NotificationID: "n1", AppID: "app", UserID: ada, Channel: Email, Target: Target{Email: "ada@example.com"}}
	m, err := TaskMessage(ctx, s, "r.dispatch.email", task)
	if err != nil || bytes.Contains(m.Value, []byte(ada)) || m.Key != s.key("app", ada).ID {
		t.Fatalf("task record %s key %q (%v)", m.Value, m.Key, err)
	}
	if got, err := DecodeTask(ctx, s, m.Value); err != nil || got.UserID != ada || got.Target.Email != "ada@example.com" {
		t.Fatalf("decoded %+v (%v)", got, err)
	}
	b := EventBatch{App: "app", NotificationID: "n1", Outcomes: []Outcome{
		{User: ada, Channel: ChannelAll, Stage: StageAccepted}, {User: bob, Channel: ChannelAll, Stage: StageAccepted},
		{User: ada, Channel: Email, Stage: StageFannedOut}}}
	em, ok, err := b.Message(ctx, s, "r")
	if err != nil || !ok || bytes.Contains(em.Value, []byte(ada)) || bytes.Contains(em.Value, []byte(bob)) {
		t.Fatalf("events record %s (%v)", em.Value, err)
	}
	if b.Outcomes[0].User != ada {
		t.Fatal("Message changed the caller's outcomes")
	}
	s.destroy("app", ada)
	if _, err := DecodeTask(ctx, s, m.Value); err != ErrErased {
		t.Fatalf("erased user's task: %v", err)
	}
	got, erased, err := DecodeEventBatch(ctx, s, em.Value)
	if err != nil || erased != 2 || len(got.Outcomes) != 1 || got.Outcomes[0].User != bob || got.Outcomes[0].Ref != 0 {
		t.Fatalf("decoded %+v erased %d (%v)", got, erased, err)
	}
}

func TestNothingIsSealedForAnErasedUser(t *testing.T) {
	ctx := context.Background()
	s := &memKeys{keys: map[string]envelope.Key{}, erased: map[string]bool{}}
	s.destroy("app", "ada")
	m, erased, err := EventMessage(ctx, s, "t", Event{ID: "n1", AppID: "app", Recipients: []string{"ada", "bob"}})
	if err != nil || !slices.Equal(erased, []string{"ada"}) || m.Key != s.key("app", "bob").ID {
		t.Fatalf("key %q erased %v (%v)", m.Key, erased, err)
	}
	if e, _, err := DecodeEvent(ctx, s, m.Value); err != nil || !slices.Equal(e.Recipients, []string{"bob"}) {
		t.Fatalf("decoded %+v (%v)", e, err)
	}
	if _, erased, err := EventMessage(ctx, s, "t", Event{ID: "n2", AppID: "app", Recipients: []string{"ada"}}); err != ErrErased || len(erased) != 1 {
		t.Fatalf("an event for ada alone: erased %v, err %v; want ErrErased", erased, err)
	}
	if _, err := TaskMessage(ctx, s, "t", Task{AppID: "app", UserID: "ada"}); err != ErrErased {
		t.Fatalf("a task for ada: %v, want ErrErased", err)
	}
	b := EventBatch{App: "app", Outcomes: []Outcome{{User: "ada", Stage: StageSuppressed, Reason: ReasonErased}}}
	if _, ok, err := b.Message(ctx, s, "r"); ok || err != nil {
		t.Fatalf("an events record of ada alone was produced (%v)", err)
	}
}
