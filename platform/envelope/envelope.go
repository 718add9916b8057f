// Package envelope seals records under per-user data keys (crypto-shredding): a record's
// content is encrypted with a fresh record key, and that key is wrapped, together with the user
// id, under the data key of each user the record concerns. Destroying a user's data key makes
// every record wrapped only for that user unreadable, and takes the user's id out of records
// shared with others (it is only ever inside the user's own wrap).
//
// A data key is found by its key id, a random UUID that names no one; the key store maps it
// back to (app, user) only while the key exists. Ciphers are AES-256-GCM.
package envelope

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
)

// Version is the envelope format written; a record is sealed when its JSON has the
// "herald_sealed" member.
const Version = 1

// KeySize is the size of data keys and record keys (AES-256).
const KeySize = 32

// ErrErased means none of the users a record was sealed for has a data key any more: the
// record is unreadable and is dropped as erased.
var ErrErased = errors.New("record of erased users")

// ErrUnavailable means the keys could not be looked up (the key store is down): retry.
var ErrUnavailable = errors.New("data keys unavailable")

// Key is one user's data key.
type Key struct {
	ID   string // key id: a random UUID, the only name records carry
	User string
	Data []byte // KeySize bytes
}

// Sealed is the JSON form of a sealed record.
type Sealed struct {
	V    int    `json:"herald_sealed"`
	Keys []Wrap `json:"keys"`
	Data []byte `json:"data"` // nonce || AES-GCM(record key, content)
}

// Wrap is the record key and one user's id, sealed under that user's data key.
type Wrap struct {
	KID string `json:"kid"`
	W   []byte `json:"w"` // nonce || AES-GCM(data key, record key || user id), additional data kid
}

// IsSealed reports whether raw is a sealed record (cheaply: it does not parse raw).
func IsSealed(raw []byte) bool {
	return bytes.HasPrefix(raw, []byte(`{"herald_sealed":`))
}

// Seal encrypts content for keys (one per user the record concerns, in order); Open returns
// those users again, in the same order, minus the erased ones.
func Seal(content []byte, keys []Key) ([]byte, error) {
	rk := make([]byte, KeySize)
	if _, err := rand.Read(rk); err != nil {
		return nil, err
	}
	data, err := encrypt(rk, content, nil)
	if err != nil {
		return nil, err
	}
	s := Sealed{V: Version, Data: data, Keys: make([]Wrap, 0, len(keys))}
	for _, k := range keys {
		w, err := encrypt(k.Data, append(append(make([]byte, 0, KeySize+len(k.User)), rk...), k.User...), []byte(k.ID))
		if err != nil {
			return nil, err
		}
		s.Keys = append(s.Keys, Wrap{KID: k.ID, W: w})
	}
	return json.Marshal(s)
}

// Lookup returns the data keys that still exist among ids (key id to key bytes); a missing id
// is a destroyed key.
type Lookup func(ctx context.Context, ids []string) (map[string][]byte, error)

// Opened is a sealed record read back.
type Opened struct {
	Content []byte
	// Users has an entry per user the record was sealed for, in order: the user's id, or ""
	// when their key was destroyed.
	Users []string
	// Erased is how many of the users the record was sealed for have no key any more.
	Erased int
}

// Open decrypts a sealed record with the keys lookup finds. It returns ErrErased when no key
// is left (the record is unreadable), and an error naming the fault for a damaged record.
func Open(ctx context.Context, raw []byte, lookup Lookup) (Opened, error) {
	var s Sealed
	if err := json.Unmarshal(raw, &s); err != nil {
		return Opened{}, fmt.Errorf("sealed record: %w", err)
	}
	if s.V != Version {
		return Opened{}, fmt.Errorf("sealed record: version %d, want %d", s.V, Version)
	}
	ids := make([]string, 0, len(s.Keys))
	for _, w := range s.Keys {
		ids = append(ids, w.KID)
	}
	keys, err := lookup(ctx, ids)
	if err != nil {
		return Opened{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var o Opened
	var rk []byte
	for _, w := range s.Keys {
		dk, ok := keys[w.KID]
		if !ok {
			o.Erased++
			o.Users = append(o.Users, "")
			continue
		}
		plain, err := decrypt(dk, w.W, []byte(w.KID))
		if err != nil || len(plain) < KeySize {
			return Opened{}, fmt.Errorf("sealed record: wrap for key %s does not open", w.KID)
		}
		if rk == nil {
			rk = plain[:KeySize]
		} else if !bytes.Equal(rk, plain[:KeySize]) {
			return Opened{}, fmt.Errorf("sealed record: wraps disagree")
		}
		o.Users = append(o.Users, string(plain[KeySize:]))
	}
	if rk == nil {
		return Opened{Erased: o.Erased}, ErrErased
	}
	o.Content, err = decrypt(rk, s.Data, nil)
	if err != nil {
		return Opened{}, fmt.Errorf("sealed record: content does not open")
	}
	return o, nil
}

func encrypt(key, plain, ad []byte) ([]byte, error) {
	g, err := gcm(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize(), g.NonceSize()+len(plain)+g.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return g.Seal(nonce, nonce, plain, ad), nil
}

func decrypt(key, sealed, ad []byte) ([]byte, error) {
	g, err := gcm(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < g.NonceSize() {
		return nil, errors.New("too short")
	}
	return g.Open(nil, sealed[:g.NonceSize()], sealed[g.NonceSize():], ad)
}

func gcm(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("key of %d bytes, want %d", len(key), KeySize)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}
