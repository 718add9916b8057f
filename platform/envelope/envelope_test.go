package envelope

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

func newKey(t testing.TB, id, user string) Key {
	t.Helper()
	k := Key{ID: id, User: user, Data: make([]byte, KeySize)}
	if _, err := rand.Read(k.Data); err != nil {
		t.Fatal(err)
	}
	return k
}

// store is a key store for tests: the ids it holds are the keys that exist.
type store map[string][]byte

func (s store) lookup(_ context.Context, ids []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, id := range ids {
		if k, ok := s[id]; ok {
			out[id] = k
		}
	}
	return out, nil
}

func TestOpenReturnsTheUsersWhoseKeysRemainAndErasedWhenNoneDo(t *testing.T) {
	ada, bob := newKey(t, "0b6f", "ada"), newKey(t, "7c21", "bob")
	content := []byte(`{"title":"for ada and bob"}`)
	for _, tc := range []struct {
		name      string
		sealedFor []Key
		left      store
		users     []string
		erased    int
		err       error
	}{
		{"every key left", []Key{ada, bob}, store{ada.ID: ada.Data, bob.ID: bob.Data}, []string{"ada", "bob"}, 0, nil},
		{"one erased", []Key{ada, bob}, store{bob.ID: bob.Data}, []string{"", "bob"}, 1, nil},
		{"all erased", []Key{ada, bob}, store{}, nil, 2, ErrErased},
		{"one user", []Key{ada}, store{ada.ID: ada.Data}, []string{"ada"}, 0, nil},
		{"the same user twice", []Key{ada, ada}, store{ada.ID: ada.Data}, []string{"ada", "ada"}, 0, nil},
		{"no user at all", nil, store{}, nil, 0, ErrErased},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := Seal(content, tc.sealedFor)
			if err != nil {
				t.Fatal(err)
			}
			if !IsSealed(raw) {
				t.Fatalf("%s is not recognised as sealed", raw)
			}
			for _, k := range tc.sealedFor {
				if bytes.Contains(raw, []byte(k.User)) || bytes.Contains(raw, content) {
					t.Fatalf("sealed record holds a user id or the content in clear: %s", raw)
				}
			}
			o, err := Open(context.Background(), raw, tc.left.lookup)
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if o.Erased != tc.erased || (tc.err == nil && !slices.Equal(o.Users, tc.users)) {
				t.Fatalf("users %q erased %d, want %q and %d", o.Users, o.Erased, tc.users, tc.erased)
			}
			if tc.err == nil && !bytes.Equal(o.Content, content) {
				t.Fatalf("content %q", o.Content)
			}
			if tc.err != nil && o.Content != nil {
				t.Fatalf("an erased record opened to %q", o.Content)
			}
		})
	}
}

func TestOpenRefusesDamagedOrForeignRecords(t *testing.T) {
	ada := newKey(t, "k-ada", "ada")
	raw, err := Seal([]byte("content"), []Key{ada})
	if err != nil {
		t.Fatal(err)
	}
	var s Sealed
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(*Sealed)) []byte {
		c := s
		c.Keys = slices.Clone(s.Keys)
		c.Keys[0].W = slices.Clone(s.Keys[0].W)
		c.Data = slices.Clone(s.Data)
		f(&c)
		out, _ := json.Marshal(c)
		return out
	}
	other := newKey(t, "k-ada", "ada") // the same id, another key: a restored or forged key
	for _, tc := range []struct {
		name string
		raw  []byte
		keys store
	}{
		{"content flipped", mutate(func(c *Sealed) { c.Data[len(c.Data)-1] ^= 1 }), store{ada.ID: ada.Data}},
		{"wrap flipped", mutate(func(c *Sealed) { c.Keys[0].W[20] ^= 1 }), store{ada.ID: ada.Data}},
		{"wrap moved to another key id", mutate(func(c *Sealed) { c.Keys[0].KID = "k-bob" }), store{"k-bob": ada.Data}},
		{"content truncated", mutate(func(c *Sealed) { c.Data = c.Data[:5] }), store{ada.ID: ada.Data}},
		{"another version", mutate(func(c *Sealed) { c.V = 2 }), store{ada.ID: ada.Data}},
		{"the wrong key", raw, store{ada.ID: other.Data}},
		{"a key of the wrong size", raw, store{ada.ID: ada.Data[:16]}},
		{"not JSON", []byte(`{"herald_sealed":1,`), store{}},
		{"null", []byte(`null`), store{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := Open(context.Background(), tc.raw, tc.keys.lookup)
			if err == nil || errors.Is(err, ErrErased) || o.Content != nil {
				t.Fatalf("opened (%q, %v), want a damaged-record error", o.Content, err)
			}
		})
	}
}

func TestOpenReportsAnUnavailableKeyStoreApartFromErasure(t *testing.T) {
	raw, err := Seal([]byte("c"), []Key{newKey(t, "k", "ada")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), raw, func(context.Context, []string) (map[string][]byte, error) {
		return nil, errors.New("connection refused")
	})
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrErased) {
		t.Fatalf("err %v, want ErrUnavailable (retried), not ErrErased (dropped)", err)
	}
}

func TestIsSealedOnlyForTheEnvelope(t *testing.T) {
	for raw, want := range map[string]bool{
		`{"herald_sealed":1,"keys":[]}`:    true,
		`{"id":"n1","recipients":["ada"]}`: false,
		`{"Herald_sealed":1}`:              false,
		` {"herald_sealed":1}`:             false,
		``:                                 false,
	} {
		if got := IsSealed([]byte(raw)); got != want {
			t.Errorf("IsSealed(%q) = %v, want %v", raw, got, want)
		}
	}
}

func FuzzOpenNeverPanicsAndNeverOpensWithoutAKey(f *testing.F) {
	k := Key{ID: "k", User: "ada", Data: bytes.Repeat([]byte{7}, KeySize)}
	raw, _ := Seal([]byte("hello"), []Key{k})
	f.Add(raw)
	f.Add([]byte(`{"herald_sealed":1,"keys":[{"kid":"k","w":""}],"data":""}`))
	f.Add([]byte(strings.Repeat("[", 1000)))
	f.Fuzz(func(t *testing.T, raw []byte) {
		o, err := Open(context.Background(), raw, store{k.ID: k.Data}.lookup)
		if err == nil && len(o.Users) == 0 {
			t.Fatalf("opened with no user: %+v", o)
		}
		if _, err := Open(context.Background(), raw, store{}.lookup); err == nil {
			t.Fatal("opened without any key")
		}
	})
}

// BenchmarkSealAndOpenATask measures the cost a dispatch task's record adds: about 600 bytes
// sealed for one user, then opened.
func BenchmarkSealAndOpenATask(b *testing.B) {
	k := Key{ID: "6f1c2b8e-0d7a-4a59-9a57-1f1d8b7c1e11", User: "user-123456", Data: bytes.Repeat([]byte{7}, KeySize)}
	content := bytes.Repeat([]byte("x"), 600)
	keys := store{k.ID: k.Data}
	b.ReportAllocs()
	for b.Loop() {
		raw, err := Seal(content, []Key{k})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Open(context.Background(), raw, keys.lookup); err != nil {
			b.Fatal(err)
		}
	}
}
