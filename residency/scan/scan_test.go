package scan

import (
	"slices"
	"testing"
)

func TestSplitsListsEveryAppUserPairAKeyCanName(t *testing.T) {
	tests := []struct {
		rest string
		want [][2]string
	}{
		{"app:ada", [][2]string{{"app", "ada"}}},
		{"acme:mobile:ada", [][2]string{{"acme", "mobile:ada"}, {"acme:mobile", "ada"}}},
		{"app:", nil},
		{":ada", nil},
		{"noseparator", nil},
	}
	for _, tt := range tests {
		if got := splits(tt.rest); !slices.Equal(got, tt.want) {
			t.Errorf("splits(%q) = %v, want %v", tt.rest, got, tt.want)
		}
	}
}

func TestGlobEscapeKeepsAPrefixLiteral(t *testing.T) {
	if got := globEscape(`eu-west-1:*?[x]\`); got != `eu-west-1:\*\?\[x\]\\` {
		t.Fatalf("got %q", got)
	}
}
