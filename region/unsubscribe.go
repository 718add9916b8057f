package region

import (
	"context"
	"log/slog"
	"time"

	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/unsubscribe"
)

// unsubscribeKeyring loads the region's unsubscribe key (made on first use) into a keyring.
func unsubscribeKeyring(ctx context.Context, stores *Stores, region string) (*unsubscribe.Keyring, error) {
	key, err := unsubscribe.LoadKey(ctx, stores.PG)
	if err != nil {
		return nil, err
	}
	return unsubscribe.NewKeyring(region, key)
}

// unsubscribeLink makes the one-click unsubscribe link of an email task: the jurisdiction's
// gateway (its gateway_url in the residency policy in force) and a token naming the task's
// app, user and category, which only this region can open. "" when the policy names no
// gateway yet (the dispatcher counts the email sent without one).
func unsubscribeLink(keys *unsubscribe.Keyring, gatewayURL func() string, log *slog.Logger) func(notify.Task) string {
	return func(t notify.Task) string {
		base := gatewayURL()
		if base == "" {
			return ""
		}
		token, err := keys.Mint(unsubscribe.Claim{App: t.AppID, User: t.UserID, Category: t.Category, Channel: notify.Email, IssuedAt: time.Now().UTC()})
		if err != nil {
			log.Warn("minting an unsubscribe token failed", "err", err)
			return ""
		}
		return base + "/v1/unsubscribe/" + token
	}
}
