package faults

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// marker is the unique text a send carries in its body: the run, the fault's round and the
// send's number. The counting finds it in the simulators' payloads and in the inbox items.
func marker(run string, round, n int) string { return fmt.Sprintf("fz%sr%dn%dx", run, round, n) }

var markerRE = regexp.MustCompile(`fz([a-z0-9]+)r(\d+)n(\d+)x`)

// notificationRE finds the region's notification id in a delivery: the push payload's
// notification_id, the mail's Message-ID (<id.hash@host>). SMS carries none.
var notificationRE = regexp.MustCompile(`(?:notification_id"\s*:\s*"|\\u003c|<)([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})`)

func notificationIn(text []byte) string {
	if m := notificationRE.FindSubmatch(text); m != nil {
		return string(m[1])
	}
	return ""
}

// sendsIn returns the send numbers of the run's round found in text, each once: one record or
// item is one delivery, however often its payload repeats the body.
func sendsIn(text []byte, run string, round int) []int {
	var out []int
	for _, m := range markerRE.FindAllSubmatch(text, -1) {
		if string(m[1]) != run || string(m[2]) != strconv.Itoa(round) {
			continue
		}
		if n, err := strconv.Atoi(string(m[3])); err == nil && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

type client struct {
	base, sim, key string
	http           *http.Client // the sends: the request deadline plus a margin
	admin          *http.Client
}

func newClient(o Options) *client {
	tr := &http.Transport{MaxIdleConnsPerHost: 512, IdleConnTimeout: 30 * time.Second}
	return &client{base: o.BaseURL, sim: o.SimURL, key: o.APIKey,
		http:  &http.Client{Timeout: o.Deadline + 10*time.Second, Transport: tr},
		admin: &http.Client{Timeout: 30 * time.Second}}
}

// send makes one attempt: the attempt, the status (0: no answer), Retry-After, and the
// notification id of a 202 or 409 (the regions of its parts in the attempt).
func (c *client) send(body map[string]any) (attempt, int, time.Duration, string) {
	raw, _ := json.Marshal(body)
	a := attempt{start: time.Now()}
	req, _ := http.NewRequest(http.MethodPost, c.base+"/v1/notifications", bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	a.latency = time.Since(a.start)
	if err != nil {
		var ne interface{ Timeout() bool }
		a.timeout = errors.As(err, &ne) && ne.Timeout()
		a.answer = "no answer"
		if a.timeout {
			a.answer = "timeout"
		}
		return a, 0, 0, ""
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	a.latency = time.Since(a.start)
	var ra time.Duration
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
		ra = time.Duration(s) * time.Second
	}
	var answer struct {
		NotificationID string `json:"notification_id"`
		Parts          []struct {
			Region string `json:"region"`
		} `json:"parts"`
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(out, &answer)
	for _, p := range answer.Parts {
		a.regions = append(a.regions, p.Region)
	}
	switch {
	case resp.StatusCode == http.StatusAccepted:
		a.ok = true
	case resp.StatusCode == http.StatusConflict && answer.NotificationID != "":
		a.ok = true // the retry of a send accepted before: its original id
	default:
		a.answer = strings.TrimSpace(strconv.Itoa(resp.StatusCode) + " " + answer.Error.Code)
	}
	return a, resp.StatusCode, ra, answer.NotificationID
}

// do is one JSON request that must succeed (setup), retried briefly.
func (c *client) do(ctx context.Context, method, path string, body any) error {
	var last error
	for i := 0; i < 5; i++ {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+c.key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.admin.Do(req)
		if err == nil {
			raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
			last = fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
			if resp.StatusCode != 429 && resp.StatusCode < 500 {
				return last
			}
		} else {
			last = err
		}
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
	}
	return last
}

// setupUsers registers the fault's users: DE (home eu-west-1) and US (us-east-1) alternating,
// each with an email address, a phone number and one device (iOS: APNs; Android: FCM).
func (c *client) setupUsers(ctx context.Context, o Options, round int) ([]string, error) {
	users := make([]string, o.Users)
	errs := make(chan error, len(users))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range users {
		u := fmt.Sprintf("fz-%s-%d-%d", o.RunID, round, i)
		users[i] = u
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			country := []string{"DE", "US"}[i%2] // homes: see homeRegion
			reg := map[string]any{"country": country, "email": u + "@example.com", "phone": fmt.Sprintf("+1202%07d", (round*10000+i)%10_000_000)}
			if err := c.do(ctx, "PUT", "/v1/users/"+u, reg); err != nil {
				errs <- err
				return
			}
			platform := []string{"ios", "android", "android", "ios"}[i%4] // both platforms in both regions
			if err := c.do(ctx, "POST", "/v1/users/"+u+"/devices", map[string]any{"platform": platform, "token": deviceToken(u, platform), "device_id": "fz-" + u}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, fmt.Errorf("setting up users: %w", err)
	}
	return users, nil
}

func deviceToken(user, platform string) string {
	s := sha256.Sum256([]byte(user))
	if platform == "ios" {
		return hex.EncodeToString(s[:]) // APNs: 64 hex
	}
	return "fcm-" + hex.EncodeToString(s[:16])
}

// inboxCounts reads every user's inbox and counts the items of each send of the round, noting
// the notification ids of their items in ids.
func (c *client) inboxCounts(ctx context.Context, users []string, run string, round int, ids *deliveryIDs) map[int]int {
	counts := map[int]int{}
	var mu sync.Mutex
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cursor := ""
			for page := 0; page < 1000; page++ {
				q := url.Values{"limit": {"100"}}
				if cursor != "" {
					q.Set("cursor", cursor)
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/users/"+u+"/notifications?"+q.Encode(), nil)
				if err != nil {
					return
				}
				req.Header.Set("Authorization", "Bearer "+c.key)
				resp, err := c.admin.Do(req)
				if err != nil {
					return
				}
				var p struct {
					Items []struct {
						Body           string `json:"body"`
						NotificationID string `json:"notification_id"`
					} `json:"items"`
					NextCursor *string `json:"next_cursor"`
				}
				err = json.NewDecoder(resp.Body).Decode(&p)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					return
				}
				mu.Lock()
				for _, it := range p.Items {
					for _, n := range sendsIn([]byte(it.Body), run, round) {
						counts[n]++
						ids.add(n, it.NotificationID)
					}
				}
				mu.Unlock()
				if p.NextCursor == nil || *p.NextCursor == "" {
					return
				}
				cursor = *p.NextCursor
			}
		}()
	}
	wg.Wait()
	return counts
}

// simNames are the simulators whose records count deliveries.
var simNames = []string{"apns", "fcm", "smtp", "sms"}

// recordPoller reads the simulators' records as they come (each record once, by its seq),
// and keeps per send how many times a provider accepted it and when first.
type recordPoller struct {
	c     *client
	run   string
	round int

	polling sync.Mutex // one poll at a time: each reads on from where the last one ended
	mu      sync.Mutex
	after   map[string]uint64
	count   map[int]int
	first   map[int]time.Time
	ids     *deliveryIDs
	cancel  context.CancelFunc
	done    chan struct{}
}

func newRecordPoller(c *client, run string, round int) *recordPoller {
	return &recordPoller{c: c, run: run, round: round, after: map[string]uint64{}, count: map[int]int{}, first: map[int]time.Time{}, ids: newDeliveryIDs()}
}

// start reads the records every second until stop. Records from before the round do not carry
// its markers, so starting from the first one is right (only slower).
func (p *recordPoller) start(ctx context.Context) {
	ctx, p.cancel = context.WithCancel(ctx)
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		for ctx.Err() == nil {
			p.poll(ctx)
			_ = sleep(ctx, time.Second)
		}
	}()
}

func (p *recordPoller) stop() {
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
}

// reset forgets the read positions: the simulators were restarted and number from 1 again.
func (p *recordPoller) reset() {
	p.mu.Lock()
	p.after = map[string]uint64{}
	p.mu.Unlock()
}

// successful reports whether a record is a provider's acceptance.
func successful(status int) bool { return status == 200 || status == 201 || status == 250 }

func (p *recordPoller) poll(ctx context.Context) {
	p.polling.Lock()
	defer p.polling.Unlock()
	for _, name := range simNames {
		p.mu.Lock()
		after := p.after[name]
		p.mu.Unlock()
		recs, err := p.c.records(ctx, name, url.Values{"after": {strconv.FormatUint(after, 10)}})
		if err != nil {
			continue // the simulators are down; the next poll reads on
		}
		if len(recs) == 0 && after > 0 {
			// A restarted simulator numbers from 1 again: its newest seq is below ours.
			if newest, err := p.c.records(ctx, name, url.Values{"limit": {"1"}}); err == nil && len(newest) == 1 && newest[0].Seq < after {
				recs, err = p.c.records(ctx, name, url.Values{})
				if err != nil {
					continue
				}
			}
		}
		p.mu.Lock()
		for _, r := range recs {
			p.after[name] = max(p.after[name], r.Seq)
			if !successful(r.Status) {
				continue
			}
			for _, n := range sendsIn(r.Payload, p.run, p.round) {
				p.count[n]++
				p.ids.add(n, notificationIn(r.Payload))
				if f, ok := p.first[n]; !ok || r.ReceivedAt.Before(f) {
					p.first[n] = r.ReceivedAt
				}
			}
		}
		if len(recs) > 0 {
			p.after[name] = recs[len(recs)-1].Seq
		}
		p.mu.Unlock()
	}
}

func (p *recordPoller) counts() map[int]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[int]int, len(p.count))
	for k, v := range p.count {
		out[k] = v
	}
	return out
}

func (p *recordPoller) firsts() map[int]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[int]time.Time, len(p.first))
	for k, v := range p.first {
		out[k] = v
	}
	return out
}

type record struct {
	Seq        uint64          `json:"seq"`
	ReceivedAt time.Time       `json:"received_at"`
	Status     int             `json:"status"`
	Payload    json.RawMessage `json:"payload"`
}

// records reads a simulator's records (query: after, limit).
func (c *client) records(ctx context.Context, name string, q url.Values) ([]record, error) {
	u := c.sim + "/sim/" + name + "/messages?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.admin.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d", u, resp.StatusCode)
	}
	var out struct {
		Messages []record `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	return out.Messages, nil
}

// outage makes every simulator answer 503 (SMTP 421) for d.
func (p *recordPoller) outage(ctx context.Context, d time.Duration) error {
	body := fmt.Sprintf(`{"outage_seconds": %d}`, int(d.Round(time.Second).Seconds()))
	for _, name := range simNames {
		if err := p.c.admin1(ctx, http.MethodPut, "/sim/"+name+"/faults", body); err != nil {
			return err
		}
	}
	return nil
}

func (p *recordPoller) clearFaults(ctx context.Context) error {
	for _, name := range simNames {
		if err := p.c.admin1(ctx, http.MethodDelete, "/sim/"+name+"/faults", ""); err != nil {
			return err
		}
	}
	return nil
}

func (c *client) admin1(ctx context.Context, method, path, body string) error {
	req, err := http.NewRequestWithContext(ctx, method, c.sim+path, bytes.NewReader([]byte(body)))
	if err != nil {
		return err
	}
	resp, err := c.admin.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		raw, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	return nil
}

// deliveryIDs keeps, per send, the distinct notification ids its deliveries carried: a send
// delivered twice under one id was repeated by the pipeline; under two ids it was accepted twice
// (its retry was taken for a new send).
type deliveryIDs struct {
	mu  sync.Mutex
	ids map[int]map[string]bool
}

func newDeliveryIDs() *deliveryIDs { return &deliveryIDs{ids: map[int]map[string]bool{}} }

func (d *deliveryIDs) add(n int, id string) {
	if id == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ids[n] == nil {
		d.ids[n] = map[string]bool{}
	}
	d.ids[n][id] = true
}

func (d *deliveryIDs) distinct(n int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.ids[n])
}

// homeRegion is the home region of the fault's user number i (DE: eu-west-1, US: us-east-1).
func homeRegion(i int) string { return []string{"eu-west-1", "us-east-1"}[i%2] }

// deliveredBefore reports whether the status of send id records a provider's acceptance from
// before t.
func (c *client) deliveredBefore(ctx context.Context, id string, t time.Time) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/notifications/"+url.PathEscape(id)+"/status", nil)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	resp, err := c.admin.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var st struct {
		Parts []struct {
			Status struct {
				Attempts []struct {
					At      time.Time `json:"at"`
					Outcome string    `json:"outcome"`
				} `json:"attempts"`
			} `json:"status"`
		} `json:"parts"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return false
	}
	for _, p := range st.Parts {
		for _, a := range p.Status.Attempts {
			// delivered, or dispatched for a text whose provider reports later (a receipt).
			if (a.Outcome == "delivered" || a.Outcome == "dispatched") && a.At.Before(t) {
				return true
			}
		}
	}
	return false
}
