package migrate

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/gocql/gocql"
)

func TestLoadOrdersByVersionAndChecksNumbering(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		want    []string
		wantErr string
	}{
		{"ordered", map[string]string{"0002_b.sql": "B", "0001_a.sql": "A", "README.md": "x"}, []string{"a", "b"}, ""},
		{"other extension ignored", map[string]string{"0001_a.sql": "A", "0001_a.cql": "C"}, []string{"a"}, ""},
		{"gap", map[string]string{"0001_a.sql": "A", "0003_c.sql": "C"}, nil, "expected version 0002"},
		{"repeat", map[string]string{"0001_a.sql": "A", "0001_b.sql": "B"}, nil, "expected version 0002"},
		{"bad name", map[string]string{"1_a.sql": "A"}, nil, "name must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for n, b := range tt.files {
				fsys[n] = &fstest.MapFile{Data: []byte(b)}
			}
			ms, err := Load(fsys, "sql")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("want error containing %q, got %v", tt.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, m := range ms {
				names = append(names, m.Name)
			}
			if !reflect.DeepEqual(names, tt.want) {
				t.Fatalf("got %v want %v", names, tt.want)
			}
		})
	}
}

func TestStatementsSplitsAtLineEndingSemicolons(t *testing.T) {
	body := "-- a comment\nCREATE TABLE a (x int);\n\nCREATE TABLE b (\n  y text -- 'a;b'\n);\nINSERT INTO c VALUES ('x;y')"
	got := Statements(body)
	want := []string{"CREATE TABLE a (x int)", "CREATE TABLE b (\n  y text -- 'a;b'\n)", "INSERT INTO c VALUES ('x;y')"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

func TestOnlyASchemaStatementWhoseOutcomeIsUnknownIsSentAgain(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"no answer in time", gocql.ErrTimeoutNoResponse, true},
		{"no answer, wrapped", fmt.Errorf("exec: %w", gocql.ErrTimeoutNoResponse), true},
		{"a write timeout", &gocql.RequestErrWriteTimeout{}, true},
		{"a syntax error", errors.New("line 1:7 no viable alternative"), false},
		{"an ended context", context.Canceled, false},
	}
	for _, tt := range tests {
		if got := timedOut(tt.err); got != tt.want {
			t.Errorf("%s: timedOut = %v, want %v", tt.name, got, tt.want)
		}
	}
}
