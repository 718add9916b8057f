//go:build integration

package apikey_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/gateway"
	"github.com/herald-notify/herald/gateway/apikey"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/testenv"
)

func TestAPIKeyCreateVerifyRevoke(t *testing.T) {
	cfg := gateway.DefaultConfig(t.TempDir())
	cfg.Postgres = testenv.Postgres(t)
	ctx := testenv.Context(t, time.Minute)
	if err := gateway.Migrate(ctx, cfg, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	pool, err := postgres.Connect(ctx, cfg.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store := apikey.NewStore(pool)

	limit := 50
	plain, k, err := store.Create(ctx, "app-1", "ci", &limit)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(plain, "hk_"+k.ID+"_") {
		t.Fatalf("key %q does not carry its id %s", plain, k.ID)
	}
	var stored int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM api_keys WHERE secret_hash = convert_to($1, 'UTF8')`, plain).Scan(&stored); err != nil || stored != 0 {
		t.Fatalf("plaintext key is stored (count %d, err %v)", stored, err)
	}
	got, err := store.Verify(ctx, plain)
	if err != nil || got.AppID != "app-1" || got.RateLimitPerMin == nil || *got.RateLimitPerMin != 50 {
		t.Fatalf("verify: %+v %v", got, err)
	}
	for _, bad := range []string{"", "hk_", plain + "x", strings.Replace(plain, k.ID, "000000000000", 1), "Bearer " + plain} {
		if _, err := store.Verify(ctx, bad); !errors.Is(err, apikey.ErrInvalid) {
			t.Errorf("verify(%q): want ErrInvalid, got %v", bad, err)
		}
	}
	keys, err := store.List(ctx, "app-1")
	if err != nil || len(keys) != 1 || keys[0].ID != k.ID {
		t.Fatalf("list: %+v %v", keys, err)
	}
	if err := store.Revoke(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Verify(ctx, plain); !errors.Is(err, apikey.ErrInvalid) {
		t.Fatalf("revoked key still verifies: %v", err)
	}
	if err := store.Revoke(ctx, "nope"); !errors.Is(err, apikey.ErrNotFound) {
		t.Fatalf("revoking unknown key: %v", err)
	}
	if _, _, err := store.Create(ctx, "Bad App!", "", nil); err == nil {
		t.Fatal("invalid app id accepted")
	}
}
