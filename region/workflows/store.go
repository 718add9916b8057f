// Package workflows keeps an app's workflows (docs/workflows.md) in the jurisdiction's Postgres
// database. Every saved version is kept and never changed, so a run that pinned a version reads
// the same steps however the workflow changes later.
package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/platform/wire"
)

// ErrNotFound means the app has no such workflow (or no such version of it).
var ErrNotFound = errors.New("workflow not found")

// ErrCorrupt means a stored version does not pass the one reading (a row changed by hand).
var ErrCorrupt = errors.New("stored workflow does not decode")

// Workflow is one stored version of a workflow.
type Workflow struct {
	ID      string `json:"id"`
	Version int64  `json:"version"`
	wire.Workflow
	CreatedAt time.Time `json:"created_at"`
}

// Store keeps workflows.
type Store struct{ db *pgxpool.Pool }

// NewStore returns a Store.
func NewStore(db *pgxpool.Pool) *Store { return &Store{db: db} }

// Put stores w as version of the app's workflow id and makes it the latest unless a later
// version is already stored. version is the gateway's number, the same in every jurisdiction;
// 0 takes the next one here. Storing a version again is a no-op that returns what is stored.
// created reports that no earlier version existed.
func (s *Store) Put(ctx context.Context, app, id string, version int64, w wire.Workflow) (saved Workflow, created bool, err error) {
	def, err := json.Marshal(w)
	if err != nil {
		return Workflow{}, false, fmt.Errorf("encoding workflow: %w", err)
	}
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		// One writer per workflow at a time: the regions of a jurisdiction share this database.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 7))`, app, id); err != nil {
			return err
		}
		var latest int64
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM workflow_versions WHERE app_id = $1 AND workflow_id = $2`, app, id).Scan(&latest); err != nil {
			return err
		}
		created = latest == 0
		if version == 0 {
			version = latest + 1
		}
		if _, err := tx.Exec(ctx, `INSERT INTO workflow_versions (app_id, workflow_id, version, definition) VALUES ($1, $2, $3, $4)
			ON CONFLICT (app_id, workflow_id, version) DO NOTHING`, app, id, version, def); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO workflows (app_id, workflow_id, version) VALUES ($1, $2, $3)
			ON CONFLICT (app_id, workflow_id) DO UPDATE SET version = EXCLUDED.version, deleted = false, updated_at = now()
			WHERE workflows.version < EXCLUDED.version`, app, id, version)
		return err
	})
	if err != nil {
		return Workflow{}, false, fmt.Errorf("storing workflow %s: %w", id, err)
	}
	saved, err = s.Version(ctx, app, id, version)
	return saved, created, err
}

// Latest returns the latest version of a workflow that is not deleted.
func (s *Store) Latest(ctx context.Context, app, id string) (Workflow, error) {
	var v int64
	err := s.db.QueryRow(ctx, `SELECT version FROM workflows WHERE app_id = $1 AND workflow_id = $2 AND NOT deleted`, app, id).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return Workflow{}, ErrNotFound
	}
	if err != nil {
		return Workflow{}, fmt.Errorf("reading workflow %s: %w", id, err)
	}
	return s.Version(ctx, app, id, v)
}

// Version returns one version of a workflow, deleted or not: runs read the version they pinned.
func (s *Store) Version(ctx context.Context, app, id string, version int64) (Workflow, error) {
	w := Workflow{ID: id, Version: version}
	var def []byte
	err := s.db.QueryRow(ctx, `SELECT definition, created_at FROM workflow_versions WHERE app_id = $1 AND workflow_id = $2 AND version = $3`,
		app, id, version).Scan(&def, &w.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Workflow{}, ErrNotFound
	}
	if err != nil {
		return Workflow{}, fmt.Errorf("reading workflow %s version %d: %w", id, version, err)
	}
	// Stored only after it was checked; read back through the one reading all the same, so a row
	// changed by hand is refused, never run.
	stored, e := wire.DecodeWorkflow(def)
	if e != nil {
		return Workflow{}, fmt.Errorf("%w: %s version %d: %w", ErrCorrupt, id, version, e)
	}
	w.Workflow = *stored
	return w, nil
}

// Delete marks a workflow deleted as of version (the gateway's; 0: as of its latest). Its
// versions stay, for the runs that pinned them; a later Put brings it back.
func (s *Store) Delete(ctx context.Context, app, id string, version int64) error {
	tag, err := s.db.Exec(ctx, `UPDATE workflows SET deleted = true, version = greatest(version, $3), updated_at = now()
		WHERE app_id = $1 AND workflow_id = $2 AND NOT deleted AND ($3 = 0 OR version <= $3)`, app, id, version)
	if err != nil {
		return fmt.Errorf("deleting workflow %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}
