// Package schema holds a region's numbered migrations: Postgres (preferences, devices,
// templates, topics) and Cassandra (inbox, delivery log).
package schema

import (
	"embed"
	"io/fs"
)

//go:embed postgres/*.sql cassandra/*.cql
var files embed.FS

// Postgres returns the Postgres migrations.
func Postgres() fs.FS { sub, _ := fs.Sub(files, "postgres"); return sub }

// Cassandra returns the Cassandra migrations.
func Cassandra() fs.FS { sub, _ := fs.Sub(files, "cassandra"); return sub }
