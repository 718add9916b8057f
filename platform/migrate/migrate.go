// Package migrate applies numbered schema migrations (0001_name.sql, 0002_name.sql, ...) to
// Postgres and Cassandra. Applied migrations are recorded with a checksum; editing one that was
// applied is refused, since the fix for a bad migration is a new migration.
package migrate

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Migration is one numbered schema change.
type Migration struct {
	Version  int
	Name     string
	Body     string
	Checksum string
}

var fileRE = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.(sql|cql)$`)

// Load reads the migrations with extension ext ("sql" or "cql") from the root of fsys. Versions
// must start at 1 and have no gaps, so a missing file is caught before anything runs.
func Load(fsys fs.FS, ext string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("reading migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != "."+ext {
			continue
		}
		m := fileRE.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q: name must be NNNN_name.%s", e.Name(), ext)
		}
		body, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", e.Name(), err)
		}
		v, _ := strconv.Atoi(m[1])
		sum := sha256.Sum256(body)
		out = append(out, Migration{Version: v, Name: m[2], Body: string(body), Checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration %04d_%s: expected version %04d (versions start at 1 with no gaps or repeats)", m.Version, m.Name, i+1)
		}
	}
	return out, nil
}

// Statements splits a migration body into statements at semicolons that end a line, dropping
// comment lines. CQL has no multi-statement requests, so each runs on its own.
func Statements(body string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(body, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteString("\n")
		if strings.HasSuffix(trimmed, ";") {
			if s := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"); s != "" {
				out = append(out, s)
			}
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// ChangedError reports an applied migration whose file no longer matches what was applied.
type ChangedError struct {
	Version int
	Name    string
}

func (e *ChangedError) Error() string {
	return fmt.Sprintf("migration %04d_%s was edited after it was applied; add a new migration instead", e.Version, e.Name)
}

// Result lists what a run applied.
type Result struct {
	Applied []string
}

func label(m Migration) string { return fmt.Sprintf("%04d_%s", m.Version, m.Name) }
