package dedup

import "testing"

func TestKeyIsShortStableAndDistinctPerRecipientAndChannel(t *testing.T) {
	k := New(nil, "eu-west-1:", 0)
	a := k.Key("01a2-notification", "user-1", "push")
	if a != k.Key("01a2-notification", "user-1", "push") {
		t.Fatal("key not stable")
	}
	for _, other := range []string{k.Key("01a2-notification", "user-1", "email"), k.Key("01a2-notification", "user-2", "push"),
		k.Key("01a2-notificatio", "nuser-1", "push")} {
		if other == a {
			t.Fatalf("keys collide: %s", a)
		}
	}
	if len(a) > len("eu-west-1:dd:")+22 {
		t.Fatalf("key %q longer than expected", a)
	}
}
