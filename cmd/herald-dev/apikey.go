package main

import (
	"context"

	"github.com/herald-notify/herald/gateway"
	"github.com/herald-notify/herald/gateway/apikey"
	"github.com/herald-notify/herald/platform/cli"
	"github.com/herald-notify/herald/platform/postgres"
)

// tempKey makes an API key of app, in the store of the gateway whose config is at path, with a
// limit high enough for a benchmark or load run; revoke revokes it (call it when the run ends).
func tempKey(ctx context.Context, path, app, name string) (key string, revoke func(), err error) {
	cfg := gateway.DefaultConfig(cli.HomeDir("discovery"))
	if err := cli.LoadConfig(path, &cfg); err != nil {
		return "", nil, err
	}
	pool, err := postgres.Connect(ctx, cfg.Postgres)
	if err != nil {
		return "", nil, err
	}
	store := apikey.NewStore(pool)
	limit := 100_000_000
	key, k, err := store.Create(ctx, app, name, &limit)
	if err != nil {
		pool.Close()
		return "", nil, err
	}
	return key, func() { _ = store.Revoke(context.WithoutCancel(ctx), k.ID); pool.Close() }, nil
}
