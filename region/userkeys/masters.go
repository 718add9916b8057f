package userkeys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// SweepBatch is how many rows Sweep wraps or rewraps per transaction.
const SweepBatch = 500

var (
	rowsGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_user_keys_rows",
		Help: "Rows of user_keys by the master key their data key is wrapped under (master_key_id; \"\" for a key still in clear), as of the last sweep. An id other than the current one still in use must stay in user_keys.master_keys.",
	}, []string{"region", "master_key_id", "current"})
	sweptCounter = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_user_keys_swept_total",
		Help: "Keys wrapped by the sweep: data keys from clear (wrapped) or from an older master key (rewrapped); the other tables' secrets from an older master key (<table>_rewrapped, e.g. webhook_endpoints_rewrapped).",
	}, []string{"region", "action"})
	tableRowsGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_master_key_wrapped_secrets",
		Help: "Secrets of tables other than user_keys wrapped under the region's master keyring (table: webhook_endpoints, current and previous signing secrets), by master key id, as of the last sweep. An id other than the current one still in use must stay in user_keys.master_keys.",
	}, []string{"region", "table", "master_key_id", "current"})
)

// Wrapped is another table whose secrets the region's master keyring wraps (the webhook
// endpoints' signing secrets, region/webhooks): Sweep rewraps them under the current master key
// too, and CheckMasters refuses a keyring that lacks an id they use, so retiring a master key
// leaves none of them unreadable.
type Wrapped interface {
	// MasterCounts returns the table's secrets per master key id.
	MasterCounts(ctx context.Context) (map[string]int, error)
	// RewrapBatch rewraps, under the current master key, the secrets of up to n rows that hold
	// one under another master key (rows another process holds locked are left to it); it
	// returns how many rows it rewrapped: 0 when none is left.
	RewrapBatch(ctx context.Context, n int) (int, error)
}

// Table names a Wrapped table (in logs and the metrics' table label).
type Table struct {
	Name    string
	Wrapped Wrapped
}

// Include makes Sweep and CheckMasters cover table's secrets too (before the first sweep).
func (k *Keys) Include(table string, w Wrapped) {
	k.tables = append(k.tables, Table{Name: table, Wrapped: w})
}

// TableSweep is what one sweep did to another table's secrets.
type TableSweep struct {
	Rewrapped int            // rows whose secrets moved to the current master key
	Rows      map[string]int // secrets per master key id afterwards
}

// ErrWrongMasterKey means a master key of the keyring is not the one the database knows by its
// id: it would wrap keys no other process opens, and open none of the stored ones.
var ErrWrongMasterKey = errors.New("master key differs from the one the database knows by this id")

// ErrMissingMasterKey means rows are wrapped under a master key the keyring lacks.
var ErrMissingMasterKey = errors.New("rows are wrapped under a master key the keyring lacks")

const checkText = "herald user_keys master key check v1"

// CheckMasters verifies, before anything is wrapped, that no row is wrapped under an id the
// keyring lacks, and that each master key of the keyring is the one the database knows by its
// id (user_key_masters; a new id is recorded with its check value). Either failure names the
// id and the config key to fix.
func (k *Keys) CheckMasters(ctx context.Context) error {
	counts, err := k.Counts(ctx)
	if err != nil {
		return err
	}
	for id, n := range counts {
		if id != "" && !k.ring.Has(id) {
			return fmt.Errorf("user_keys.master_keys: %w: %d rows are wrapped under master key %q, which the keyring (%v) lacks: put its file back under that id (docs/runbook.md)", ErrMissingMasterKey, n, id, k.ring.IDs())
		}
	}
	for _, t := range k.tables {
		counts, err := t.Wrapped.MasterCounts(ctx)
		if err != nil {
			return fmt.Errorf("counting the secrets of %s: %w", t.Name, err)
		}
		for id, n := range counts {
			if !k.ring.Has(id) {
				return fmt.Errorf("user_keys.master_keys: %w: %d secrets of %s are wrapped under master key %q, which the keyring (%v) lacks: put its file back under that id (docs/runbook.md)", ErrMissingMasterKey, n, t.Name, id, k.ring.IDs())
			}
		}
	}
	for _, id := range k.ring.IDs() {
		check, err := k.ring.WrapWith(id, []byte(checkText), []byte("user_key_masters\x00"+id))
		if err != nil {
			return err
		}
		if _, err := k.db.Exec(ctx, `INSERT INTO user_key_masters (master_key_id, check_value) VALUES ($1, $2) ON CONFLICT DO NOTHING`, id, check); err != nil {
			return fmt.Errorf("recording master key %q: %w", id, err)
		}
		var stored []byte
		if err := k.db.QueryRow(ctx, `SELECT check_value FROM user_key_masters WHERE master_key_id = $1`, id).Scan(&stored); err != nil {
			return fmt.Errorf("reading master key %q's check value: %w", id, err)
		}
		if got, err := k.ring.Unwrap(id, stored, []byte("user_key_masters\x00"+id)); err != nil || string(got) != checkText {
			return fmt.Errorf("user_keys.master_keys.%s: %w (its check value in user_key_masters does not open): no data key wrapped under %q opens with this file; every region sharing the database needs the same key files", id, ErrWrongMasterKey, id)
		}
	}
	return nil
}

// Counts returns the rows of user_keys per master key id ("" for rows in clear).
func (k *Keys) Counts(ctx context.Context) (map[string]int, error) {
	rows, err := k.db.Query(ctx, `SELECT coalesce(master_key_id, ''), count(*) FROM user_keys GROUP BY 1`)
	if err != nil {
		return nil, fmt.Errorf("counting user_keys rows: %w", err)
	}
	out := map[string]int{}
	var id string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error { out[id] = n; return nil }); err != nil {
		return nil, fmt.Errorf("counting user_keys rows: %w", err)
	}
	return out, nil
}

// SweepResult is what one sweep did and found.
type SweepResult struct {
	Wrapped   int            // rows in clear wrapped under the current master key
	Rewrapped int            // rows moved from an older master key to the current one
	Rows      map[string]int // rows per master key id afterwards ("" in clear)
	// Tables is what the sweep did to the secrets of the tables Include added, by table.
	Tables map[string]TableSweep
}

// Old is how many rows of user_keys still use a master key other than the current one, or none.
func (r SweepResult) Old(current string) int { return outside(r.Rows, current) }

// OldSecrets is how many secrets of the other tables still use a master key other than the
// current one.
func (r SweepResult) OldSecrets(current string) int {
	n := 0
	for _, t := range r.Tables {
		n += outside(t.Rows, current)
	}
	return n
}

// outside is how many of rows (per master key id) are under an id other than current.
func outside(rows map[string]int, current string) int {
	n := 0
	for id, c := range rows {
		if id != current {
			n += c
		}
	}
	return n
}

// Sweep wraps every row still in clear (data_key emptied in the same update) and rewraps every
// row of an older master key under the current one, SweepBatch rows per transaction, then does
// the same for the secrets of the tables Include added; rows another process holds locked are
// left to it. Idempotent: a second sweep finds nothing to do.
func (k *Keys) Sweep(ctx context.Context) (SweepResult, error) {
	var res SweepResult
	for {
		n, err := k.sweepBatch(ctx, `data_key IS NOT NULL`)
		res.Wrapped += n
		if err != nil {
			return res, fmt.Errorf("wrapping data keys in clear: %w", err)
		}
		if n == 0 {
			break
		}
	}
	for {
		n, err := k.sweepBatch(ctx, `master_key_id <> $1`, k.ring.Current())
		res.Rewrapped += n
		if err != nil {
			return res, fmt.Errorf("rewrapping data keys under master key %q: %w", k.ring.Current(), err)
		}
		if n == 0 {
			break
		}
	}
	var err error
	if res.Rows, err = k.Counts(ctx); err != nil {
		return res, err
	}
	for _, t := range k.tables {
		var ts TableSweep
		for {
			n, err := t.Wrapped.RewrapBatch(ctx, SweepBatch)
			ts.Rewrapped += n
			if err != nil {
				return res, fmt.Errorf("rewrapping the secrets of %s under master key %q: %w", t.Name, k.ring.Current(), err)
			}
			if n == 0 {
				break
			}
		}
		if ts.Rows, err = t.Wrapped.MasterCounts(ctx); err != nil {
			return res, fmt.Errorf("counting the secrets of %s: %w", t.Name, err)
		}
		if res.Tables == nil {
			res.Tables = map[string]TableSweep{}
		}
		res.Tables[t.Name] = ts
	}
	return res, nil
}

// sweepBatch (re)wraps up to SweepBatch rows matching where (with its args) under the current
// master key.
func (k *Keys) sweepBatch(ctx context.Context, where string, args ...any) (int, error) {
	current := k.ring.Current()
	n := 0
	err := pgx.BeginFunc(ctx, k.db, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT app_id, `+columns+` FROM user_keys WHERE `+where+`
			LIMIT `+fmt.Sprint(SweepBatch)+` FOR UPDATE SKIP LOCKED`, args...)
		if err != nil {
			return err
		}
		var ids []uuid.UUID
		var wrapped [][]byte
		var app string
		var r stored
		_, err = pgx.ForEachRow(rows, append([]any{&app}, r.dest()...), func() error {
			key, err := k.open(app, r)
			if err != nil {
				return err
			}
			w, _, err := k.ring.Wrap(key.Data, AAD(app, r.user, r.id))
			if err != nil {
				return err
			}
			ids, wrapped = append(ids, r.id), append(wrapped, w)
			r = stored{}
			return nil
		})
		if err != nil || len(ids) == 0 {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE user_keys u SET wrapped_key = t.w, master_key_id = $3, data_key = NULL
			FROM unnest($1::uuid[], $2::bytea[]) AS t(id, w) WHERE u.key_id = t.id`, ids, wrapped, current)
		n = int(tag.RowsAffected())
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Run sweeps every interval until ctx ends (the first sweep is the caller's, at start),
// logging and exporting the rows per master key id.
func (k *Keys) Run(ctx context.Context, region string, interval time.Duration, log *slog.Logger) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		res, err := k.Sweep(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("user keys: sweep failed (retried next interval)", "err", err)
			continue
		}
		k.Report(region, res, log)
	}
}

// Report logs a sweep's outcome (at Info when it did anything or rows still use an older master
// key) and sets herald_user_keys_rows.
func (k *Keys) Report(region string, res SweepResult, log *slog.Logger) {
	current := k.ring.Current()
	rowsGauge.DeletePartialMatch(prometheus.Labels{"region": region})
	ids := make([]string, 0, len(res.Rows))
	for id, n := range res.Rows {
		ids = append(ids, id)
		rowsGauge.WithLabelValues(region, id, fmt.Sprint(id == current)).Set(float64(n))
	}
	slices.Sort(ids)
	sweptCounter.WithLabelValues(region, "wrapped").Add(float64(res.Wrapped))
	sweptCounter.WithLabelValues(region, "rewrapped").Add(float64(res.Rewrapped))
	old := res.Old(current)
	attrs := []any{"current_master_key", current, "wrapped_from_clear", res.Wrapped, "rewrapped", res.Rewrapped, "rows_under_other_master_keys", old}
	for _, id := range ids {
		name := id
		if name == "" {
			name = "in_clear"
		}
		attrs = append(attrs, "rows."+name, res.Rows[id])
	}
	tableRowsGauge.DeletePartialMatch(prometheus.Labels{"region": region})
	tables := slices.Sorted(maps.Keys(res.Tables))
	rewrappedSecrets := 0
	for _, table := range tables {
		t := res.Tables[table]
		rewrappedSecrets += t.Rewrapped
		sweptCounter.WithLabelValues(region, table+"_rewrapped").Add(float64(t.Rewrapped))
		attrs = append(attrs, table+".rewrapped", t.Rewrapped, table+".under_other_master_keys", outside(t.Rows, current))
		for id, n := range t.Rows {
			tableRowsGauge.WithLabelValues(region, table, id, fmt.Sprint(id == current)).Set(float64(n))
		}
	}
	if res.Wrapped > 0 || res.Rewrapped > 0 || old > 0 || rewrappedSecrets > 0 || res.OldSecrets(current) > 0 {
		log.Info("user keys: swept", attrs...)
	} else {
		log.Debug("user keys: swept", attrs...)
	}
}
