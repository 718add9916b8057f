package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/herald-notify/herald/gateway"
	"github.com/herald-notify/herald/gateway/apikey"
	"github.com/herald-notify/herald/platform/cli"
	"github.com/herald-notify/herald/platform/postgres"
)

// runAPIKey manages API keys in the gateway's global database.
func runAPIKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return cli.UsageError("usage: herald apikey (create --app ID [--name N] [--rate-limit N] [--out FILE] | list [--app ID] [--json] | revoke KEY_ID | token-secret --app ID)")
	}
	sub, args := args[0], args[1:]
	fs := cli.NewFlags("apikey "+sub, stderr)
	path := fs.String("config", "", "gateway config file (YAML)")
	var (
		app, name, out *string
		rate           *int
		asJSON         *bool
	)
	switch sub {
	case "create":
		app = fs.String("app", "", "app id the key belongs to (created if new)")
		name = fs.String("name", "", "a label for the key")
		rate = fs.Int("rate-limit", 0, "requests per minute for this key (0: the gateway default)")
		out = fs.String("out", "", "also write the key to this file (mode 0600)")
	case "list":
		app = fs.String("app", "", "only this app's keys")
		asJSON = fs.Bool("json", false, "print JSON")
	case "revoke":
	case "token-secret":
		app = fs.String("app", "", "app whose clients' user tokens the new secret signs (rotates it)")
	default:
		return cli.UsageError("unknown apikey command %q (create, list, revoke or token-secret)", sub)
	}
	var positional []string
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &cli.ExitError{Code: 2, Err: err}
	}
	positional = fs.Args()

	store, closeStore, err := keyStore(ctx, *path)
	if err != nil {
		return err
	}
	defer closeStore()

	switch sub {
	case "token-secret":
		secret, err := store.RotateTokenSecret(ctx, *app)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, secret)
		fmt.Fprintln(stderr, "the app's server signs user tokens with this secret (platform/usertoken.Sign); it is shown once, and tokens signed with the previous one stop working")
		return nil
	case "create":
		if *app == "" {
			return cli.UsageError("--app is required")
		}
		var limit *int
		if *rate > 0 {
			limit = rate
		}
		plain, k, err := store.Create(ctx, *app, *name, limit)
		if err != nil {
			return err
		}
		if *out != "" {
			if err := os.WriteFile(*out, []byte(plain+"\n"), 0o600); err != nil {
				return fmt.Errorf("writing key file: %w", err)
			}
		}
		fmt.Fprintf(stderr, "created key %s for app %s (shown once; only its hash is stored)\n", k.ID, k.AppID)
		fmt.Fprintln(stdout, plain)
	case "list":
		keys, err := store.List(ctx, *app)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(keys)
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY ID\tAPP\tNAME\tRATE/MIN\tCREATED\tSTATUS")
		for _, k := range keys {
			rateStr, status := "default", "active"
			if k.RateLimitPerMin != nil {
				rateStr = fmt.Sprint(*k.RateLimitPerMin)
			}
			if k.RevokedAt != nil {
				status = "revoked " + k.RevokedAt.UTC().Format("2006-01-02T15:04:05Z")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.AppID, k.Name, rateStr, k.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"), status)
		}
		return tw.Flush()
	case "revoke":
		if len(positional) != 1 {
			return cli.UsageError("usage: herald apikey revoke KEY_ID")
		}
		if err := store.Revoke(ctx, positional[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s\n", positional[0])
	}
	return nil
}

// keyStore opens the API-key store of the gateway whose config is at path.
func keyStore(ctx context.Context, path string) (*apikey.Store, func(), error) {
	cfg := gateway.DefaultConfig(cli.HomeDir("discovery"))
	if err := cli.LoadConfig(path, &cfg); err != nil {
		return nil, nil, err
	}
	pool, err := postgres.Connect(ctx, cfg.Postgres)
	if err != nil {
		return nil, nil, err
	}
	return apikey.NewStore(pool), pool.Close, nil
}
