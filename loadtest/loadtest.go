// Package loadtest runs Herald's load scenarios against a local deployment (loopback only),
// with bounded request counts and time, and measures latency end to end: from the accepted
// request to the provider simulator receiving the push, or to the item being readable in the
// inbox; not just the HTTP answer time. The k6 scripts beside this package are the same
// scenarios for SREs with k6 (loadtest/README.md).
package loadtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// Options bound and aim a run.
type Options struct {
	BaseURL  string // the gateway, loopback only
	SimURL   string // the simulators' admin API
	APIKey   string
	Users    int           // users per scenario
	Duration time.Duration // load phase length
	Rate     float64       // requests (or sends) per second of the measured stream
	// Disrupt lets the failover scenario stop and restart a local region process.
	Disrupt func(ctx context.Context, region string, stop bool) error
	RunID   string
}

// Row is one measured stream of a scenario, judged against its threshold.
type Row struct {
	Stream     string
	Count      int
	Errors     int
	P50, P99   time.Duration
	Threshold  time.Duration // p99 must be below; 0: not judged on latency
	MaxErrRate float64
	Note       string
}

// Pass reports whether the row meets its thresholds.
func (r Row) Pass() bool {
	if r.Count == 0 {
		return false
	}
	if r.Threshold > 0 && r.P99 >= r.Threshold {
		return false
	}
	return float64(r.Errors)/float64(r.Count) <= r.MaxErrRate
}

// Scenario is one named load scenario.
type Scenario struct {
	Name string
	Doc  string
	Run  func(ctx context.Context, c *Client, o Options) ([]Row, error)
}

// Scenarios lists them in the order `herald-dev loadtest all` runs them.
var Scenarios = []Scenario{
	{"otp-during-blast", "transactional OTP pushes while a marketing blast drains; accept to APNs simulator", otpDuringBlast},
	{"social-topic", "one social push to a topic of many subscribers; accept to APNs simulator per recipient", socialTopic},
	{"inbox-storm", "concurrent inbox page reads through the gateway", inboxStorm},
	{"prefs-churn", "preference writes while sending; accept to readable in the inbox", prefsChurn},
	{"failover", "EU traffic while eu-west-1 stops and comes back; only EU regions answer", failover},
}

// CheckLoopback refuses a base URL that is not on this machine: these scenarios are for local
// deployments (SREs use the k6 scripts elsewhere).
func CheckLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	ip := net.ParseIP(u.Hostname())
	if u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s is not a loopback address", raw)
	}
	return nil
}

// Client talks to the gateway and the simulators.
type Client struct {
	base, sim, key string
	http           *http.Client
}

// NewClient returns a client for o.
func NewClient(o Options) *Client {
	return &Client{base: o.BaseURL, sim: o.SimURL, key: o.APIKey,
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
}

// Do sends a JSON request to the gateway and decodes the answer into out (when not nil).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) (int, http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		_ = json.Unmarshal(raw, out)
	}
	if resp.StatusCode >= 300 && out == nil {
		return resp.StatusCode, resp.Header, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header, nil
}

// must is Do that wants a 2xx.
func (c *Client) must(ctx context.Context, method, path string, body, out any) error {
	code, _, err := c.Do(ctx, method, path, body, out)
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return fmt.Errorf("%s %s: %d", method, path, code)
	}
	return nil
}

// simRecord is one request a simulator received.
type simRecord struct {
	Seq        uint64    `json:"seq"`
	To         string    `json:"to"`
	ReceivedAt time.Time `json:"received_at"`
	Status     int       `json:"status"`
}

// simRecords lists a simulator's newest records (to "" for all).
func (c *Client) simRecords(ctx context.Context, name, to string, limit int) ([]simRecord, error) {
	q := url.Values{"limit": {fmt.Sprint(limit)}}
	if to != "" {
		q.Set("to", to)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.sim+"/sim/"+name+"/messages?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Messages []simRecord `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("simulator records: %w", err)
	}
	return out.Messages, nil
}

// token is a device token (64 hex) unique to the run and user.
func token(run, user string) string {
	s := sha256.Sum256([]byte(run + "/" + user))
	return hex.EncodeToString(s[:])
}

// setupUsers registers n users (country alternating DE/US unless fixed) with one iOS device each.
func setupUsers(ctx context.Context, c *Client, o Options, prefix string, n int, countries ...string) ([]string, error) {
	if len(countries) == 0 {
		countries = []string{"DE", "US"}
	}
	users := make([]string, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range users {
		users[i] = fmt.Sprintf("lt-%s-%s-%d", o.RunID, prefix, i)
		wg.Add(1)
		sem <- struct{}{}
		go func(u, country string) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := c.must(ctx, "PUT", "/v1/users/"+u, map[string]any{"country": country}, &struct{}{}); err != nil {
				errs <- err
				return
			}
			if err := c.must(ctx, "POST", "/v1/users/"+u+"/devices", map[string]any{"platform": "ios", "token": token(o.RunID, u), "device_id": "lt-" + u}, &struct{}{}); err != nil {
				errs <- err
			}
		}(users[i], countries[i%len(countries)])
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, fmt.Errorf("setting up users: %w", err)
	}
	return users, nil
}

// ticker calls fn at rate per second until d passes or ctx ends, each call in its own goroutine,
// and waits for them.
func ticker(ctx context.Context, rate float64, d time.Duration, fn func(i int)) {
	every := time.Duration(float64(time.Second) / rate)
	t := time.NewTicker(every)
	defer t.Stop()
	end := time.After(d)
	var wg sync.WaitGroup
	for i := 0; ; i++ {
		wg.Add(1)
		go func(i int) { defer wg.Done(); fn(i) }(i)
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-end:
			wg.Wait()
			return
		case <-t.C:
		}
	}
}

// samples collects latencies and errors from many goroutines.
type samples struct {
	mu   sync.Mutex
	lat  []time.Duration
	errs int
	last error
}

func (s *samples) ok(d time.Duration) { s.mu.Lock(); s.lat = append(s.lat, d); s.mu.Unlock() }
func (s *samples) fail(err error) {
	s.mu.Lock()
	s.errs++
	s.last = err
	s.mu.Unlock()
}

func (s *samples) row(stream string, threshold time.Duration, maxErr float64) Row {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := slices.Clone(s.lat)
	slices.Sort(l)
	r := Row{Stream: stream, Count: len(l) + s.errs, Errors: s.errs, Threshold: threshold, MaxErrRate: maxErr}
	if len(l) > 0 {
		r.P50 = l[len(l)/2]
		r.P99 = l[min(len(l)-1, len(l)*99/100)]
	}
	if s.last != nil {
		r.Note = "last error: " + s.last.Error()
		if len(r.Note) > 160 {
			r.Note = r.Note[:160]
		}
	}
	return r
}
