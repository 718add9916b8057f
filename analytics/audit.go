package analytics

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// AuditReport is what Audit finds in central's database: every stored minute cell and latency
// histogram must have at least k distinct recipients, and no table may have a column beyond the
// counts and closed dimensions of SchemaColumns (a column that could hold an identifier).
type AuditReport struct {
	K                int
	Cells, Latency   int64 // minute cells and histograms checked
	CellsBelowK      int64
	HistogramsBelowK int64
	// BelowK lists the first findings: "cell eu-west-1 2026-12-06T05:00:00Z 3 recipients".
	BelowK []string
	// UnexpectedColumns and MissingColumns compare the schema with SchemaColumns.
	UnexpectedColumns, MissingColumns []string
}

// Clean reports whether the audit found nothing.
func (r AuditReport) Clean() bool {
	return r.CellsBelowK == 0 && r.HistogramsBelowK == 0 && len(r.UnexpectedColumns) == 0 && len(r.MissingColumns) == 0
}

// SchemaColumns are the columns of central's tables ("table.column type"): counts, and
// dimensions that are closed vocabularies or registered names. Nothing else may be added.
var SchemaColumns = []string{
	"batches.digest bytea", "batches.latency_withheld bigint", "batches.received_at timestamp with time zone",
	"batches.region text", "batches.seq integer", "batches.window_start timestamp with time zone", "batches.withheld bigint",
	"cells.app text", "cells.category text", "cells.channel text", "cells.count bigint", "cells.country text",
	"cells.distinct_recipients bigint", "cells.reason text", "cells.region text", "cells.seq integer", "cells.stage text",
	"cells.tier text", "cells.window_start timestamp with time zone",
	"cells_hourly.app text", "cells_hourly.category text", "cells_hourly.channel text", "cells_hourly.count bigint",
	"cells_hourly.country text", "cells_hourly.hour timestamp with time zone", "cells_hourly.reason text",
	"cells_hourly.region text", "cells_hourly.stage text", "cells_hourly.tier text",
	"latency.bounds_ms ARRAY", "latency.channel text", "latency.counts ARRAY", "latency.distinct_recipients bigint",
	"latency.region text", "latency.seq integer", "latency.tier text", "latency.window_start timestamp with time zone",
	"latency_hourly.channel text", "latency_hourly.counts ARRAY", "latency_hourly.hour timestamp with time zone",
	"latency_hourly.region text", "latency_hourly.tier text",
}

// maxListed bounds AuditReport.BelowK.
const maxListed = 100

// Audit checks central's database against k (herald audit analytics): every minute cell and
// histogram it keeps has at least k distinct recipients, and its schema is SchemaColumns. The
// hourly sums carry no recipients; they are sums of minute data that passed the same check at
// ingest, and minute data older than minute_retention is gone, so only the kept minutes are
// re-checked here.
func Audit(ctx context.Context, db *pgxpool.Pool, k int) (AuditReport, error) {
	rep := AuditReport{K: k}
	err := pgx.BeginTxFunc(ctx, db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM cells), (SELECT count(*) FROM cells WHERE distinct_recipients < $1),
			(SELECT count(*) FROM latency), (SELECT count(*) FROM latency WHERE distinct_recipients < $1)`, k).
			Scan(&rep.Cells, &rep.CellsBelowK, &rep.Latency, &rep.HistogramsBelowK); err != nil {
			return fmt.Errorf("counting cells below k: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT 'cell', region, window_start, distinct_recipients FROM cells WHERE distinct_recipients < $1
			UNION ALL SELECT 'histogram', region, window_start, distinct_recipients FROM latency WHERE distinct_recipients < $1
			ORDER BY 3, 2 LIMIT $2`, k, maxListed)
		if err != nil {
			return fmt.Errorf("listing cells below k: %w", err)
		}
		for rows.Next() {
			var kind, region string
			var ws time.Time
			var n int64
			if err := rows.Scan(&kind, &region, &ws, &n); err != nil {
				rows.Close()
				return fmt.Errorf("listing cells below k: %w", err)
			}
			rep.BelowK = append(rep.BelowK, fmt.Sprintf("%s %s %s %d recipients", kind, region, ws.UTC().Format(time.RFC3339), n))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("listing cells below k: %w", err)
		}
		cols, err := tx.Query(ctx, `SELECT table_name || '.' || column_name || ' ' || data_type FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name <> 'schema_migrations' ORDER BY 1`)
		if err != nil {
			return fmt.Errorf("reading the schema: %w", err)
		}
		got, err := pgx.CollectRows(cols, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("reading the schema: %w", err)
		}
		for _, c := range got {
			if !slices.Contains(SchemaColumns, c) {
				rep.UnexpectedColumns = append(rep.UnexpectedColumns, c)
			}
		}
		for _, c := range SchemaColumns {
			if !slices.Contains(got, c) {
				rep.MissingColumns = append(rep.MissingColumns, c)
			}
		}
		return nil
	})
	return rep, err
}
