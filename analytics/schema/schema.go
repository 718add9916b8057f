// Package schema holds central analytics' migrations (database herald_analytics). It stores
// counts only: every text column is a closed vocabulary or a registered name, checked by the
// database as well as at ingest, so no column can hold a user id, token, address or content.
package schema

import (
	"embed"
	"io/fs"
)

//go:embed postgres/*.sql
var files embed.FS

// Postgres returns the Postgres migrations.
func Postgres() fs.FS { sub, _ := fs.Sub(files, "postgres"); return sub }
