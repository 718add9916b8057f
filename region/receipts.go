package region

import (
	"context"
	"log/slog"
	"time"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/credentials"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/receipts"
	"github.com/herald-notify/herald/region/sealtoken"
)

// receiptsKeyring loads the region's receipts key (made on first use) into a keyring.
func receiptsKeyring(ctx context.Context, stores *Stores, region string) (*sealtoken.Keyring, error) {
	return purposeKeyring(ctx, stores, region, receipts.Purpose)
}

// emailReceiptsKeyring loads the region's key of email receipt tokens (made on first use).
func emailReceiptsKeyring(ctx context.Context, stores *Stores, region string) (*sealtoken.Keyring, error) {
	return purposeKeyring(ctx, stores, region, receipts.EmailPurpose)
}

func purposeKeyring(ctx context.Context, stores *Stores, region, purpose string) (*sealtoken.Keyring, error) {
	key, err := sealtoken.LoadKey(ctx, stores.PG, purpose)
	if err != nil {
		return nil, err
	}
	return sealtoken.NewKeyring(region, purpose, key)
}

// emailReceipt makes the receipt token an email carries in X-SMTPAPI for SendGrid to echo in
// its events: it names the delivery and the provider called, and only this region opens it.
// SendGrid posts the events to the jurisdiction's gateway, configured in SendGrid's console,
// so no URL is minted; "" when the policy names no gateway yet (the email then counts as
// delivered once the relay took it, as a text without a status callback does).
func emailReceipt(keys *sealtoken.Keyring, gatewayURL func() string, log *slog.Logger) func(notify.Task, string) string {
	return func(t notify.Task, provider string) string {
		if gatewayURL() == "" {
			return ""
		}
		tok, err := keys.Seal(receipts.Claim{App: t.AppID, Notification: t.NotificationID, User: t.UserID,
			Channel: t.Channel, Tier: t.Tier, Category: t.Category, Provider: provider, Due: t.Due(), IssuedAt: time.Now().UTC()})
		if err != nil {
			log.Warn("minting an email receipt token failed", "err", err)
			return ""
		}
		return tok
	}
}

// statusCallback makes the StatusCallback URL of an SMS task: the jurisdiction's gateway (its
// gateway_url in the residency policy in force) and a token naming the delivery and the
// provider called, which only this region can open. "" when the policy names no gateway yet:
// the text then counts as delivered once the provider took it.
func statusCallback(keys *sealtoken.Keyring, gatewayURL func() string, log *slog.Logger) func(notify.Task, string) string {
	return func(t notify.Task, provider string) string {
		base := gatewayURL()
		if base == "" {
			return ""
		}
		u, err := receipts.CallbackURL(keys, base, receipts.Claim{App: t.AppID, Notification: t.NotificationID, User: t.UserID,
			Channel: t.Channel, Tier: t.Tier, Category: t.Category, Provider: provider, Due: t.Due(), IssuedAt: time.Now().UTC()})
		if err != nil {
			log.Warn("minting a receipt token failed", "err", err)
			return ""
		}
		return u
	}
}

// twilioAuthToken returns the auth token a status callback's signature is checked with: the
// region's own Twilio provider's, by name, or, for a text sent through an app's own account
// (dispatch.AppProviderName), the app's stored one. A credential that cannot be read is "not
// found" for the callback: Twilio posts it again, and nothing is recorded meanwhile.
func twilioAuthToken(own map[string]string, creds *credentials.Store, jurisdiction string) func(ctx context.Context, app, provider string) (string, bool) {
	return func(ctx context.Context, app, provider string) (string, bool) {
		if provider != dispatch.AppProviderName(dispatch.KindSMS) {
			t, ok := own[provider]
			return t, ok
		}
		l, err := creds.Load(ctx, app, jurisdiction, wire.CredentialTwilio)
		if err != nil {
			return "", false
		}
		return l.Twilio.AuthToken, true
	}
}
