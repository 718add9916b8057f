package gateway

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/wire"
)

// sendGridPath is where SendGrid's signed Event Webhook posts (public: SendGrid's signature is
// the credential), and the regions' internal route the gateway forwards each region's events
// to.
const sendGridPath = "/v1/receipts/sendgrid"

var metricSendGridEvents = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "herald_gateway_sendgrid_events_total",
	Help: "SendGrid events in verified batches, by what the gateway did: forwarded to the region their token names, or skipped (no token, or a token of no region the policy knows).",
}, []string{"outcome"})

var metricReceiptsRefused = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "herald_gateway_receipts_refused_total",
	Help: "Provider event batches the gateway refused, by provider and error code (invalid_signature and stale_timestamp: the provider's key or clock, or a forger; HeraldProviderReceiptsRefused).",
}, []string{"provider", "code"})

// refuseSendGrid answers a SendGrid batch with an error and counts it.
func refuseSendGrid(c *gin.Context, status int, code, msg, field string) {
	metricReceiptsRefused.WithLabelValues("sendgrid", code).Inc()
	abort(c, status, code, msg, field)
}

// ReceiptsConfig configures the providers' event feeds the gateway takes.
type ReceiptsConfig struct {
	SendGrid SendGridReceiptsConfig `yaml:"sendgrid"`
}

// SendGridReceiptsConfig is SendGrid's signed Event Webhook (POST /v1/receipts/sendgrid).
// Without a key the route answers 404.
type SendGridReceiptsConfig struct {
	// PublicKeys are the verification keys SendGrid shows for the webhook (Settings, Mail
	// Settings, Signed Event Webhook): base64 of the DER key, or PEM. More than one is taken
	// during a rotation: a batch verifying with any of them is genuine.
	PublicKeys []string `yaml:"public_keys"`
	// PublicKeyFiles are files holding one such key each (the simulator writes its own).
	PublicKeyFiles []string `yaml:"public_key_files"`
	// MaxAge is how old a batch's signed timestamp may be (default 10m); older ones, and
	// repeats of a batch this gateway took within it, are refused as replays.
	MaxAge time.Duration `yaml:"max_age"`
}

// Keys parses every configured key, the files' included.
func (c SendGridReceiptsConfig) Keys() ([]*ecdsa.PublicKey, error) {
	var out []*ecdsa.PublicKey
	for i, k := range c.PublicKeys {
		pk, err := wire.ParseSendGridKey(k)
		if err != nil {
			return nil, config.Errorf(fmt.Sprintf("public_keys[%d]", i), "(key)", "%v", err)
		}
		out = append(out, pk)
	}
	for i, f := range c.PublicKeyFiles {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, config.Errorf(fmt.Sprintf("public_key_files[%d]", i), f, "%v", err)
		}
		pk, err := wire.ParseSendGridKey(string(raw))
		if err != nil {
			return nil, config.Errorf(fmt.Sprintf("public_key_files[%d]", i), f, "%v", err)
		}
		out = append(out, pk)
	}
	return out, nil
}

func (c SendGridReceiptsConfig) validate() error {
	if c.MaxAge < 0 || c.MaxAge > 24*time.Hour {
		return config.Errorf("max_age", c.MaxAge.String(), "must be 0 (10m) to 24h")
	}
	_, err := c.Keys()
	return err
}

// maxAge is MaxAge or its default.
func (c SendGridReceiptsConfig) maxAge() time.Duration {
	if c.MaxAge == 0 {
		return 10 * time.Minute
	}
	return c.MaxAge
}

// replays remembers the signatures of the batches this gateway took, until they are too old
// to verify anyway, so the same batch posted again is refused. Bounded: when full of live
// entries, a batch is taken without being remembered (its events are idempotent; this only
// spares the regions the work).
type replays struct {
	mu   sync.Mutex
	seen map[[32]byte]time.Time // signature hash -> when it stops verifying
	max  int
}

func newReplays(max int) *replays { return &replays{seen: map[[32]byte]time.Time{}, max: max} }

func (r *replays) has(sig string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	until, ok := r.seen[sha256.Sum256([]byte(sig))]
	return ok && now.Before(until)
}

func (r *replays) add(sig string, until, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) >= r.max {
		for k, u := range r.seen {
			if !now.Before(u) {
				delete(r.seen, k)
			}
		}
		if len(r.seen) >= r.max {
			return
		}
	}
	r.seen[sha256.Sum256([]byte(sig))] = until
}

// sendGridAnswer is the gateway's answer to a batch it took.
type sendGridAnswer struct {
	Events    int `json:"events"`
	Forwarded int `json:"forwarded"`
	Recorded  int `json:"recorded"`
	Unchanged int `json:"unchanged"`
	Skipped   int `json:"skipped"`
}

// sendGridReceipts serves POST /v1/receipts/sendgrid: a batch of SendGrid's signed Event
// Webhook. The gateway verifies the signature over the raw body and its timestamp (max_age),
// parses the batch once, strictly, and splits it by the region each event's receipt token
// names: each region receives only its events, and re-checks every token itself. An event
// without a token, or whose token names no region the policy knows, is counted and skipped,
// not refused: one stale event must not make SendGrid post the rest again for a day. A region
// that cannot take its events fails the batch with 503, and SendGrid posts it again (every
// event is idempotent).
func (s *Server) sendGridReceipts(c *gin.Context) {
	if len(s.SendGridKeys) == 0 {
		abort(c, http.StatusNotFound, "not_found", "this gateway takes no SendGrid events (receipts.sendgrid.public_keys)", "")
		return
	}
	raw, err := io.ReadAll(io.LimitReader(c.Request.Body, wire.MaxSendGridBytes+1))
	if err != nil {
		refuseSendGrid(c, http.StatusBadRequest, wire.CodeInvalidField, "the body cannot be read", "")
		return
	}
	if len(raw) > wire.MaxSendGridBytes {
		refuseSendGrid(c, http.StatusRequestEntityTooLarge, wire.CodePayloadTooLarge, fmt.Sprintf("the batch is over %d bytes", wire.MaxSendGridBytes), "")
		return
	}
	sigs, tss := c.Request.Header.Values(wire.SendGridSignatureHeader), c.Request.Header.Values(wire.SendGridTimestampHeader)
	if len(sigs) != 1 || sigs[0] == "" {
		refuseSendGrid(c, http.StatusForbidden, "invalid_signature", "a batch carries one "+wire.SendGridSignatureHeader, wire.SendGridSignatureHeader)
		return
	}
	if len(tss) != 1 || tss[0] == "" {
		refuseSendGrid(c, http.StatusForbidden, "invalid_signature", "a batch carries one "+wire.SendGridTimestampHeader, wire.SendGridTimestampHeader)
		return
	}
	now := s.now()
	switch err := wire.VerifySendGrid(s.SendGridKeys, raw, sigs[0], tss[0], now, s.SendGridMaxAge); {
	case errors.Is(err, wire.ErrSendGridStale):
		refuseSendGrid(c, http.StatusForbidden, "stale_timestamp", fmt.Sprintf("the batch was signed more than %s ago, or in the future: a replay", s.SendGridMaxAge), wire.SendGridTimestampHeader)
		return
	case err != nil:
		refuseSendGrid(c, http.StatusForbidden, "invalid_signature", "the signature does not verify with any configured key", wire.SendGridSignatureHeader)
		return
	}
	events, e := wire.ParseSendGrid(raw)
	if e != nil {
		status := http.StatusBadRequest
		if e.Code == wire.CodePayloadTooLarge {
			status = http.StatusRequestEntityTooLarge
		}
		refuseSendGrid(c, status, e.Code, e.Message, e.Field)
		return
	}
	if s.sendGridSeen != nil && s.sendGridSeen.has(sigs[0], now) {
		refuseSendGrid(c, http.StatusConflict, "replayed", "this gateway took this batch already", wire.SendGridSignatureHeader)
		return
	}
	ans := sendGridAnswer{Events: len(events)}
	byRegion := map[string][]wire.SendGridEvent{}
	p := s.Policy.Current()
	for _, ev := range events {
		// As tokenRegion routes an unsubscribe link's token, without the redirect: a batch
		// holds events of every jurisdiction, and each goes home from here (SendGrid posts to
		// one URL per account; give each jurisdiction's account its own gateway's).
		region, _, known := regionOfToken(p, ev.Token)
		if !known {
			ans.Skipped++
			continue
		}
		byRegion[region] = append(byRegion[region], ev)
	}
	metricSendGridEvents.WithLabelValues("skipped").Add(float64(ans.Skipped))
	regions := make([]string, 0, len(byRegion))
	for r := range byRegion {
		regions = append(regions, r)
	}
	slices.Sort(regions)
	for _, region := range regions {
		body, _ := json.Marshal(wire.SendGridBatch{Events: byRegion[region]}) // strings and numbers: it cannot fail
		resp, err := s.call(c.Request.Context(), c, region, http.MethodPost, sendGridPath, "", body)
		if err != nil {
			s.regionFailed(c, region, err)
			return
		}
		var out struct{ Recorded, Unchanged, Skipped int }
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		switch {
		case resp.StatusCode >= 500:
			s.Log.Warn("a region could not take its SendGrid events", "region", region, "status", resp.StatusCode, "request_id", reqID(c))
			unavailable(c, "region_unavailable", "region "+region+" could not take its events now; SendGrid posts the batch again")
			return
		case resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &out) != nil:
			// The gateway validated what it forwards: a refusal is a version skew, logged, and
			// its events counted as skipped rather than retried by SendGrid for a day.
			s.Log.Error("a region refused its SendGrid events", "region", region, "status", resp.StatusCode, "body", string(raw), "request_id", reqID(c))
			ans.Skipped += len(byRegion[region])
			continue
		}
		ans.Forwarded += len(byRegion[region])
		ans.Recorded += out.Recorded
		ans.Unchanged += out.Unchanged
		ans.Skipped += out.Skipped
		metricSendGridEvents.WithLabelValues("forwarded").Add(float64(len(byRegion[region])))
	}
	if s.sendGridSeen != nil {
		unix, _ := strconv.ParseInt(tss[0], 10, 64) // digits: VerifySendGrid took it
		ts := time.Unix(unix, 0)
		s.sendGridSeen.add(sigs[0], ts.Add(s.SendGridMaxAge), now)
	}
	c.JSON(http.StatusOK, ans)
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}
