package dedup

import (
	"fmt"
	"strings"
	"testing"
)

func TestKeyIsShortStableAndDistinctPerRecipientAndChannel(t *testing.T) {
	k := New(nil, "eu-west-1:", 0)
	a := k.Key("01a2-notification", "user-1", "push")
	if a != k.Key("01a2-notification", "user-1", "push") {
		t.Fatal("key not stable")
	}
	for _, other := range []string{k.Key("01a2-notification", "user-1", "email"), k.Key("01a2-notification", "user-2", "push"),
		k.Key("01a2-notificatio", "nuser-1", "push"), k.Key("01a3-notification", "user-1", "push")} {
		if other == a {
			t.Fatalf("keys collide: %s", a)
		}
	}
	if len(a) > len("eu-west-1:dd:")+16+2+1+22 {
		t.Fatalf("key %q longer than expected", a)
	}
}

func TestKeysOfANotificationShareAFewHashesAndOtherNotificationsNone(t *testing.T) {
	k := New(nil, "eu-west-1:", 0)
	var keys, other []string
	for i := range 500 {
		keys = append(keys, k.Key("n1", fmt.Sprint("user-", i), "in_app"))
		other = append(other, k.Key("n2", fmt.Sprint("user-", i), "in_app"))
	}
	gs, err := groups(keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != Buckets {
		t.Fatalf("500 recipients fell in %d hashes, want all %d buckets used", len(gs), Buckets)
	}
	seen := map[int]bool{}
	for _, g := range gs {
		if !strings.HasPrefix(g.hash, "eu-west-1:dd:") {
			t.Fatalf("hash %q outside the region's prefix", g.hash)
		}
		for j, f := range g.fields {
			if keys[g.at[j]] != g.hash+sep+f {
				t.Fatalf("position %d maps to %s%s%s, not its key %s", g.at[j], g.hash, sep, f, keys[g.at[j]])
			}
			seen[g.at[j]] = true
		}
	}
	if len(seen) != len(keys) {
		t.Fatalf("%d of %d keys grouped", len(seen), len(keys))
	}
	og, _ := groups(other)
	for _, g := range og {
		for _, h := range gs {
			if g.hash == h.hash {
				t.Fatalf("notifications n1 and n2 share hash %s", g.hash)
			}
		}
	}
}

func TestForeignKeyIsAnErrorNotAGuess(t *testing.T) {
	if _, err := groups([]string{"eu-west-1:dd:abc"}); err == nil {
		t.Fatal("a key without a field was accepted")
	}
}
