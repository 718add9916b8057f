package scan

import (
	"bytes"
	"encoding/json"
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

func TestOriginalRecordOpensADeadLetterAndLeavesOtherRecords(t *testing.T) {
	sealed := []byte(`{"v":1,"keys":[{"kid":"k1","w":"AAAA"}],"data":"BBBB"}`)
	letter, _ := json.Marshal(map[string]any{"stage": "fanout.social", "origin": map[string]any{"topic": "eu-west-1.notify.social"},
		"value": sealed, "error": "x"})
	for _, c := range []struct {
		name     string
		in, want []byte
	}{
		{"dead letter", letter, sealed},
		{"sealed record", sealed, sealed},
		{"plain record", []byte(`{"app_id":"a","recipients":["ada"]}`), []byte(`{"app_id":"a","recipients":["ada"]}`)},
		{"record with a stage field but no origin", []byte(`{"stage":"x","value":"AA=="}`), []byte(`{"stage":"x","value":"AA=="}`)},
		{"not json", []byte("garbage"), []byte("garbage")},
	} {
		if got := originalRecord(c.in); !bytes.Equal(got, c.want) {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}
