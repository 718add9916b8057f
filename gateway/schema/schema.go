// Package schema holds the gateway's global-tier migrations. The global tier holds apps and API
// keys, never a raw user id.
package schema

import (
	"embed"
	"io/fs"
)

//go:embed postgres/*.sql
var files embed.FS

// Postgres returns the Postgres migrations.
func Postgres() fs.FS { sub, _ := fs.Sub(files, "postgres"); return sub }
