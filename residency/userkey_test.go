package residency

import "testing"

func TestUserKeyDependsOnSecretAppAndUser(t *testing.T) {
	base := UserKey([]byte("s1"), "app", "alice")
	if len(base) != 64 {
		t.Fatalf("key %q is not 32 hex bytes", base)
	}
	if again := UserKey([]byte("s1"), "app", "alice"); again != base {
		t.Fatalf("same input gave %q then %q", base, again)
	}
	for name, other := range map[string]string{
		"other secret": UserKey([]byte("s2"), "app", "alice"),
		"other app":    UserKey([]byte("s1"), "app2", "alice"),
		"other user":   UserKey([]byte("s1"), "app", "bob"),
		"shifted":      UserKey([]byte("s1"), "appa", "lice"),
	} {
		if other == base {
			t.Errorf("%s gives the same key", name)
		}
	}
}
