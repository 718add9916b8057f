package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/platform/wire"
)

// part is the share of a send one region took.
type part struct {
	Region         string `json:"region"`
	NotificationID string `json:"notification_id"`
	Recipients     int    `json:"recipients"`
}

// sendStore records the parts of every send (counts and ids, no recipient) so the status
// endpoint can find them.
type sendStore struct{ db *pgxpool.Pool }

// saveSendTimeout is the least time saveSend gets when the request's deadline is closer.
const saveSendTimeout = 200 * time.Millisecond

// saveSend records a send's parts after the regions accepted them: past a cancelled client, but
// within what is left of the request's deadline (at least saveSendTimeout), so a hung Postgres
// never holds the answer. A send left unrecorded is recorded by the retry with its key (every
// region answers 409 with its part), and a single-region send needs no record.
func (s *Server) saveSend(c *gin.Context, sendID string, parts []part) error {
	budget := 2 * time.Second // no deadline
	if d, ok := c.Request.Context().Deadline(); ok {
		budget = max(time.Until(d), saveSendTimeout)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request.Context()), budget)
	defer cancel()
	return s.Sends.save(ctx, appOf(c), sendID, parts)
}

func (st *sendStore) save(ctx context.Context, app, sendID string, parts []part) error {
	b := &pgx.Batch{}
	for _, p := range parts {
		b.Queue(`INSERT INTO send_parts (app_id, send_id, region, notification_id, recipients) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (app_id, send_id, region) DO UPDATE SET notification_id = EXCLUDED.notification_id, recipients = EXCLUDED.recipients`,
			app, sendID, p.Region, p.NotificationID, p.Recipients)
	}
	if err := st.db.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("recording send parts: %w", err)
	}
	return nil
}

// claimKey returns the send id that holds the app's idempotency key: that of the first send
// made with it in the last 24 hours (the regions' window), or id, which holds it from now on.
// Concurrent claims of one key serialise on its row and all return the same id.
func (st *sendStore) claimKey(ctx context.Context, app, key, id string) (string, error) {
	var got string
	err := st.db.QueryRow(ctx, `INSERT INTO send_keys (app_id, idempotency_key, send_id) VALUES ($1, $2, $3)
		ON CONFLICT (app_id, idempotency_key) DO UPDATE SET
			send_id = CASE WHEN send_keys.created_at < now() - interval '24 hours' THEN EXCLUDED.send_id ELSE send_keys.send_id END,
			created_at = CASE WHEN send_keys.created_at < now() - interval '24 hours' THEN now() ELSE send_keys.created_at END
		RETURNING send_id`, app, key, id).Scan(&got)
	if err != nil {
		return "", fmt.Errorf("claiming an idempotency key: %w", err)
	}
	return got, nil
}

// find returns the parts of send id, or the one part whose notification id is id.
func (st *sendStore) find(ctx context.Context, app, id string) ([]part, error) {
	rows, err := st.db.Query(ctx, `SELECT region, notification_id, recipients FROM send_parts
		WHERE app_id = $1 AND (send_id = $2 OR notification_id = $2) ORDER BY region`, app, id)
	if err != nil {
		return nil, fmt.Errorf("reading send parts: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (part, error) {
		var p part
		err := r.Scan(&p.Region, &p.NotificationID, &p.Recipients)
		return p, err
	})
}

// send splits a notification by the recipients' home regions: each region receives the same
// event with only its own users. A topic send goes to every region whose topic has subscribers.
func (s *Server) send(c *gin.Context) {
	p := s.Policy.Current()
	if p == nil {
		unavailable(c, "no_policy", "the gateway has no residency policy loaded yet")
		return
	}
	// One reading: the send is decoded and checked here exactly as the regions will, and each
	// region receives a body encoded from what was read here, never the caller's bytes.
	raw, ok := readBody(c, wire.MaxSendBytes)
	if !ok {
		return
	}
	req, werr := readSend(raw, time.Now().UTC())
	if !valid(c, werr) {
		return
	}
	var targets map[string][]string // region -> its recipients; nil slice for a topic send
	if req.Topic != nil {
		if targets, ok = s.topicRegions(c, *req.Topic); !ok {
			return
		}
	} else if targets, ok = s.splitRecipients(c, req.Recipients); !ok {
		return
	}

	sendID := uuid.NewString()
	keyed := req.IdempotencyKey != ""
	if keyed {
		// One answer per key, whatever the regions: every send with the key is this send.
		var err error
		if sendID, err = s.Sends.claimKey(c.Request.Context(), appOf(c), req.IdempotencyKey, sendID); err != nil {
			s.Log.Error("claiming an idempotency key", "err", err, "request_id", reqID(c))
			unavailable(c, "store_unavailable", "the send could not be recorded; nothing was sent, retry")
			return
		}
	}
	regions := make([]string, 0, len(targets))
	for r := range targets {
		regions = append(regions, r)
	}
	sort.Strings(regions)
	bodyFor := func(region string) []byte { return partBody(req, targets[region]) }

	// The first part alone: a request the regions refuse (400, 409) is refused once, before
	// any other region accepted anything.
	parts := make([]part, 0, len(regions))
	type answer struct {
		status     int
		raw        []byte
		retryAfter string
		err        error
	}
	do := func(region string) answer {
		resp, err := s.call(c.Request.Context(), c, region, http.MethodPost, "/v1/notifications", "", bodyFor(region))
		if err != nil {
			return answer{err: err}
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return answer{status: resp.StatusCode, raw: raw, retryAfter: resp.Header.Get("Retry-After")}
	}
	answers := make([]answer, len(regions))
	answers[0] = do(regions[0])
	if a := answers[0]; a.err == nil && a.status != http.StatusAccepted && a.status != http.StatusConflict && !notResident(a.status, a.raw) {
		if a.retryAfter != "" {
			c.Header("Retry-After", a.retryAfter) // a region's 503 (unavailable, deadline_exceeded)
		}
		c.Data(a.status, "application/json", a.raw)
		return
	}
	var wg sync.WaitGroup
	for i := 1; i < len(regions); i++ {
		wg.Add(1)
		go func() { defer wg.Done(); answers[i] = do(regions[i]) }()
	}
	wg.Wait()

	conflicts := 0
	var failed []string
	for i, a := range answers {
		var out struct {
			NotificationID string `json:"notification_id"`
		}
		switch {
		case a.err == nil && (a.status == http.StatusAccepted || a.status == http.StatusConflict):
			// 409: this region took the same idempotency key before; its part stands.
			_ = json.Unmarshal(a.raw, &out)
			if a.status == http.StatusConflict {
				conflicts++
				if out.NotificationID == "" {
					// A 409 for another reason than a reused key: relay it.
					c.Data(a.status, "application/json", a.raw)
					return
				}
			}
			parts = append(parts, part{Region: regions[i], NotificationID: out.NotificationID, Recipients: len(targets[regions[i]])})
		default:
			if a.err == nil && notResident(a.status, a.raw) {
				// The directory routed a registered user to a region that does not know them
				// (registered while that region was down): nothing was stored there; the client
				// retries, and the home region takes it once it is back.
				s.Log.Error("region refused a registered user as not resident", "region", regions[i], "body", string(a.raw), "request_id", reqID(c))
			} else if a.err != nil {
				s.Log.Warn("send part failed", "region", regions[i], "err", a.err, "request_id", reqID(c))
			} else {
				s.Log.Warn("send part refused", "region", regions[i], "status", a.status, "body", string(a.raw), "request_id", reqID(c))
			}
			failed = append(failed, regions[i])
		}
	}
	if conflicts == len(regions) && len(regions) > 0 {
		// The whole send was accepted before: answer its id, as a region does.
		if err := s.saveSend(c, sendID, parts); err != nil {
			s.Log.Error("recording a send", "err", err, "request_id", reqID(c))
		}
		c.JSON(http.StatusConflict, gin.H{"error": gin.H{"code": "duplicate_idempotency_key", "message": "this idempotency_key was used within 24 h", "field": "idempotency_key"},
			"notification_id": sendID, "parts": parts})
		return
	}
	if len(parts) == 1 && len(failed) == 0 && !keyed {
		// One region took it all: the send is that region's notification. Nothing needs
		// recording: the status endpoint finds an unrecorded id by asking the regions.
		sendID = parts[0].NotificationID
	} else if len(parts) > 0 {
		if err := s.saveSend(c, sendID, parts); err != nil {
			s.Log.Error("recording a send", "err", err, "request_id", reqID(c))
		}
	}
	if len(failed) > 0 && len(parts) == 0 {
		// Nothing was accepted anywhere: the answer says why, and the client retries as is.
		switch {
		case timedOut(c):
			unavailable(c, "deadline_exceeded", fmt.Sprintf("regions %v did not answer within the gateway's deadline; retry with the same idempotency_key", failed))
		case len(answers) == 1 && answers[0].err == nil && answers[0].status == http.StatusServiceUnavailable:
			// The region's own 503 (unavailable, deadline_exceeded) with its reason.
			c.Header("Retry-After", "2")
			c.Data(answers[0].status, "application/json", answers[0].raw)
		default:
			unavailable(c, "region_unavailable", fmt.Sprintf("regions %v did not take the send; nothing was accepted, retry", failed))
		}
		return
	}
	if len(failed) > 0 {
		c.Header("Retry-After", "2")
		c.JSON(http.StatusServiceUnavailable, gin.H{
			"error":           gin.H{"code": "partially_accepted", "message": fmt.Sprintf("regions %v did not take their part; the parts listed were accepted. Retry with the same idempotency_key: accepted parts answer as duplicates, the rest is sent", failed)},
			"notification_id": sendID, "parts": parts, "failed_regions": failed,
		})
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"notification_id": sendID, "parts": parts})
}

// readSend is the gateway's reading of a send: the one every region applies too (package
// wire). The differential fuzz test holds the two readings equal.
func readSend(raw []byte, now time.Time) (*wire.Send, *wire.Error) { return wire.DecodeSend(raw, now) }

// partBody is the body one region receives: the send as read here, with that region's share
// of the recipients (a topic send goes whole to each region).
func partBody(req *wire.Send, recipients []string) []byte {
	if req.Topic != nil {
		return wire.Encode(req)
	}
	return wire.Encode(req.ForRecipients(recipients))
}

// notResident reports whether a region's answer is its residency refusal.
func notResident(status int, raw []byte) bool {
	if status != http.StatusForbidden {
		return false
	}
	var out struct {
		Error struct{ Code string } `json:"error"`
	}
	return json.Unmarshal(raw, &out) == nil && out.Error.Code == "not_resident"
}

// splitRecipients groups recipients by the region that serves them now. Every recipient must be
// registered (404 names the first that is not) and routable (503 otherwise: nothing is sent).
func (s *Server) splitRecipients(c *gin.Context, recipients []string) (map[string][]string, bool) {
	p := s.Policy.Current()
	found, missing, err := s.Directory.LookupMany(c.Request.Context(), appOf(c), recipients)
	if err != nil {
		s.Log.Error("directory lookup", "err", err)
		unavailable(c, "directory_unavailable", "the user directory cannot be read right now; retry")
		return nil, false
	}
	if len(missing) > 0 {
		i := missing[0]
		abort(c, http.StatusNotFound, "unknown_user", fmt.Sprintf("recipient %q is not registered (%d unregistered recipients)", recipients[i], len(missing)), fmt.Sprintf("recipients[%d]", i))
		return nil, false
	}
	targets := map[string][]string{}
	seen := make(map[string]bool, len(recipients))
	for i, u := range recipients {
		if seen[u] {
			continue
		}
		seen[u] = true
		d := s.decide(p, found[i])
		s.record(c, u, d)
		switch d.Reason {
		case reasonRedirect:
			c.Header("Location", d.RedirectTo+c.Request.URL.RequestURI())
			abort(c, http.StatusTemporaryRedirect, "redirect_jurisdiction", fmt.Sprintf("recipient %q is in %s, whose requests must go through %s", u, d.Jurisdiction, d.RedirectTo), fmt.Sprintf("recipients[%d]", i))
			return nil, false
		case reasonRefused:
			unavailable(c, "region_unavailable", fmt.Sprintf("no region of %s is healthy (recipient %q); nothing was sent", d.Jurisdiction, u))
			return nil, false
		}
		targets[d.Region] = append(targets[d.Region], u)
	}
	return targets, true
}

// topicRegions asks each jurisdiction's serving region for the topic's subscriber count and
// returns those with subscribers. A jurisdiction's regions share its subscriptions, so one
// region per jurisdiction fans the send out: asking two would deliver it twice. A jurisdiction
// with no healthy region is skipped (its subscribers are served by nobody else, by design);
// when no region has subscribers the send still goes to one region, which records it (and its
// empty fan-out).
func (s *Server) topicRegions(c *gin.Context, topic string) (map[string][]string, bool) {
	counts, _ := s.topicCounts(c, topic)
	targets := map[string][]string{}
	for r, n := range counts {
		if n > 0 {
			targets[r] = nil
		}
	}
	if len(targets) == 0 {
		targets[s.anyRegion()] = nil
	}
	return targets, true
}

// anyRegion is a healthy region (the first by name), for requests that concern no user.
func (s *Server) anyRegion() string {
	for _, st := range s.Regions.Statuses() {
		if st.Healthy {
			return st.Region
		}
	}
	return ""
}

// topicCounts asks each jurisdiction's serving region (its first healthy one in policy
// order: the one a failover would choose) for a topic's subscribers; down lists the
// jurisdictions' registered regions when none of them is healthy or the one asked did not
// answer.
func (s *Server) topicCounts(c *gin.Context, topic string) (counts map[string]int, down []string) {
	counts = map[string]int{}
	p := s.Policy.Current()
	if p == nil {
		return counts, nil
	}
	registered := map[string][]string{} // jurisdiction -> its regions that registered
	for _, st := range s.Regions.Statuses() {
		registered[st.Jurisdiction] = append(registered[st.Jurisdiction], st.Region)
	}
	var ask []string
	for _, j := range p.Codes() {
		r, _, err := p.Route(j, func(r string) bool { return s.Regions.HealthyIn(r, j) })
		if err != nil {
			down = append(down, registered[j]...)
			continue
		}
		ask = append(ask, r)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, region := range ask {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := s.call(c.Request.Context(), c, region, http.MethodGet, "/v1/topics/"+topic, "", nil)
			var out struct {
				Subscribers int `json:"subscribers"`
			}
			if err == nil {
				defer resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					err = json.NewDecoder(resp.Body).Decode(&out)
				} else {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				down = append(down, region)
				return
			}
			counts[region] = out.Subscribers
		}()
	}
	wg.Wait()
	slices.Sort(down)
	return counts, down
}

// topicInfo sums a topic's subscribers over the jurisdictions (by_region names the region
// asked for each).
func (s *Server) topicInfo(c *gin.Context) {
	topic := c.Param("topic")
	if !wire.ValidTopic(topic) {
		abort(c, http.StatusBadRequest, wire.CodeInvalidField, "topic names must match "+wire.TopicRE.String()+" and not be . or ..", "topic")
		return
	}
	counts, down := s.topicCounts(c, topic)
	total := 0
	for _, n := range counts {
		total += n
	}
	out := gin.H{"topic": topic, "subscribers": total, "by_region": counts}
	if len(down) > 0 {
		out["regions_unavailable"] = down
	}
	c.JSON(http.StatusOK, out)
}

// status merges the status of every part of a send (or answers one part's).
func (s *Server) status(c *gin.Context) {
	parts, err := s.Sends.find(c.Request.Context(), appOf(c), c.Param("id"))
	if err != nil {
		s.Log.Error("reading send parts", "err", err)
		unavailable(c, "store_unavailable", "send records cannot be read right now; retry")
		return
	}
	if len(parts) == 0 {
		// Not recorded (yet): a single-region send's id is the region's own.
		s.firstFound(c, "/v1/notifications/"+c.Param("id")+"/status", "")
		return
	}
	if len(parts) == 1 && parts[0].NotificationID == c.Param("id") {
		resp, err := s.call(c.Request.Context(), c, parts[0].Region, http.MethodGet, "/v1/notifications/"+parts[0].NotificationID+"/status", "", nil)
		if err != nil {
			s.regionFailed(c, parts[0].Region, err)
			return
		}
		relay(c, resp)
		return
	}
	type partStatus struct {
		part
		Status any    `json:"status,omitempty"`
		Error  string `json:"error,omitempty"`
	}
	out := make([]partStatus, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		out[i].part = p
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := s.call(c.Request.Context(), c, p.Region, http.MethodGet, "/v1/notifications/"+p.NotificationID+"/status", "", nil)
			if err != nil {
				out[i].Error = "region unavailable"
				return
			}
			defer resp.Body.Close()
			var st any
			if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
				out[i].Error = fmt.Sprintf("region answered %d", resp.StatusCode)
				return
			}
			out[i].Status = st
		}()
	}
	wg.Wait()
	c.JSON(http.StatusOK, gin.H{"notification_id": c.Param("id"), "parts": out})
}

// firstFound asks every healthy region for path (with rawQuery) and relays the first 200 (ids
// are random and carry no user data, so asking every region reveals nothing).
func (s *Server) firstFound(c *gin.Context, path, rawQuery string) {
	type answer struct {
		status int
		raw    []byte
		ctype  string
	}
	var mu sync.Mutex
	var best *answer
	var wg sync.WaitGroup
	for _, st := range s.Regions.Statuses() {
		if !st.Healthy {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := s.call(c.Request.Context(), c, st.Region, http.MethodGet, path, rawQuery, nil)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			mu.Lock()
			defer mu.Unlock()
			if resp.StatusCode == http.StatusOK || best == nil {
				if best == nil || best.status != http.StatusOK {
					best = &answer{resp.StatusCode, raw, resp.Header.Get("Content-Type")}
				}
			}
		}()
	}
	wg.Wait()
	if best == nil {
		unavailable(c, "region_unavailable", "no region answered; retry")
		return
	}
	c.Data(best.status, best.ctype, best.raw)
}
