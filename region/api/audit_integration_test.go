//go:build integration

package api

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/migrate"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/audit"
	regionschema "github.com/herald-notify/herald/region/schema"
)

func TestAuditEndpointRecordsABatchOnceAndRefusesABadOneWhole(t *testing.T) {
	c := testenv.Postgres(t)
	ctx := testenv.Context(t, time.Minute)
	if err := migrate.Database(ctx, c, regionschema.Postgres(), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	pool, err := postgres.Connect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store := audit.NewStore(pool)
	engine := testEngine(&Server{InternalToken: "s3cret", Audit: store, Logger: slog.New(slog.DiscardHandler)})
	auth := map[string]string{"Authorization": "Bearer s3cret"}

	other := strings.NewReplacer("019ab3f0-6c1e-7d2a-9b4f-3e2d1c0b9a87", "019ab3f0-6c1e-7d2a-9b4f-3e2d1c0b9a88", `"request_id":"req-1"`, `"request_id":"req-2"`).Replace(validAuditEntry)
	batch := `{"entries":[` + validAuditEntry + `,` + other + `]}`
	for try := 1; try <= 2; try++ { // the gateway retries after a lost answer
		if w := serve(engine, "POST", "/internal/v1/audit", batch, auth); w.Code != http.StatusNoContent || w.Body.Len() != 0 {
			t.Fatalf("try %d: %d %s", try, w.Code, w.Body)
		}
	}
	bad := `{"entries":[` + strings.Replace(validAuditEntry, "019ab3f0-6c1e-7d2a-9b4f-3e2d1c0b9a87", "019ab3f0-6c1e-7d2a-9b4f-3e2d1c0b9a89", 1) +
		`,` + strings.Replace(other, `"jurisdiction":"EU"`, `"jurisdiction":"eu"`, 1) + `]}`
	w := serve(engine, "POST", "/internal/v1/audit", bad, auth)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"field":"entries[1].jurisdiction"`) {
		t.Fatalf("bad batch: %d %s", w.Code, w.Body)
	}
	v, err := store.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v.Break != nil || v.Entries != 2 || v.Head.Seq != 2 {
		t.Fatalf("after a batch sent twice and a bad one: %d entries, head %d, break %v; want 2, 2, none", v.Entries, v.Head.Seq, v.Break)
	}
}
