package userkeys

import (
	"bytes"
	"testing"

	"github.com/google/uuid"
)

func TestAADNamesTheRowUnambiguously(t *testing.T) {
	id, other := uuid.New(), uuid.New()
	base := AAD("app", "user", id)
	for _, tc := range []struct {
		name           string
		app, user      string
		id             uuid.UUID
		wantSameAsBase bool
	}{
		{"same row", "app", "user", id, true},
		{"another user", "app", "user2", id, false},
		{"another app", "app2", "user", id, false},
		{"another key id", "app", "user", other, false},
		{"the boundary moved between app and user", "appu", "ser", id, false},
		{"app and user swapped", "user", "app", id, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := bytes.Equal(AAD(tc.app, tc.user, tc.id), base); got != tc.wantSameAsBase {
				t.Fatalf("AAD equal to the row's: %v, want %v", got, tc.wantSameAsBase)
			}
		})
	}
	// Ids holding the separator cannot collide either: lengths are part of the data.
	if bytes.Equal(AAD("a\x00b", "c", id), AAD("a", "b\x00c", id)) {
		t.Fatal("two rows share additional data")
	}
}
