package region

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/herald-notify/herald/region/userkeys"
)

// openUserKeys returns the region's data-key store under its master keyring, once the keyring
// is checked against the database (userkeys.CheckMasters: the same keys by the same ids, none
// missing) and every row is wrapped under the current master key: rows still in clear are
// wrapped and emptied, rows of an older master key rewrapped (userkeys.Sweep), so no key is in
// clear once a region has started. The secrets of tables (the webhook endpoints') are wrapped
// under the same keyring: the check and every sweep cover them too.
func openUserKeys(ctx context.Context, c Config, stores *Stores, log *slog.Logger, tables ...userkeys.Table) (*userkeys.Keys, error) {
	ring, err := c.Keyring()
	if err != nil {
		return nil, err
	}
	keys := userkeys.New(stores.PG, ring)
	for _, t := range tables {
		keys.Include(t.Name, t.Wrapped)
	}
	if err := keys.CheckMasters(ctx); err != nil {
		return nil, fmt.Errorf("region %s: user keys: %w", c.Name, err)
	}
	start := time.Now()
	res, err := keys.Sweep(ctx)
	if err != nil {
		return nil, fmt.Errorf("region %s: user keys: %w", c.Name, err)
	}
	keys.Report(c.Name, res, log.With("took", time.Since(start).Round(time.Millisecond).String()))
	return keys, nil
}
