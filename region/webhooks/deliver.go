package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sony/gobreaker/v2"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"golang.org/x/sync/errgroup"
)

// Sign returns the Standard Webhooks headers of one message: webhook-id, webhook-timestamp
// (Unix seconds) and webhook-signature: for each of keys, in order, "v1," and the base64
// HMAC-SHA256 of id.timestamp.body under it, space-separated (the specification's form for
// several signatures, which its verifiers accept when any one matches), through the
// specification's own library. Deliveries pass the current secret, then the previous one while
// it is valid (a rotation's overlap).
func Sign(keys [][]byte, id string, at time.Time, body []byte) (http.Header, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("signing webhook %s: no key", id)
	}
	sigs := make([]string, 0, len(keys))
	for _, key := range keys {
		wh, err := standardwebhooks.NewWebhookRaw(key)
		if err != nil {
			return nil, fmt.Errorf("signing webhook %s: %w", id, err)
		}
		sig, err := wh.Sign(id, at, body)
		if err != nil {
			return nil, fmt.Errorf("signing webhook %s: %w", id, err)
		}
		sigs = append(sigs, sig)
	}
	h := http.Header{}
	h.Set(standardwebhooks.HeaderWebhookID, id)
	h.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(at.Unix(), 10))
	h.Set(standardwebhooks.HeaderWebhookSignature, strings.Join(sigs, " "))
	return h, nil
}

// SigningKeys are the keys a message to an endpoint is signed with at now: its current secret,
// then its previous one while that is valid (before previousUntil; nil when there is none).
func SigningKeys(current, previous []byte, previousUntil, now time.Time) [][]byte {
	if previous != nil && PreviousValid(previousUntil, now) {
		return [][]byte{current, previous}
	}
	return [][]byte{current}
}

// breakers holds one circuit breaker per endpoint.
type breakers struct {
	mu  sync.Mutex
	cfg BreakerConfig
	m   map[string]*gobreaker.CircuitBreaker[int]
	log *slog.Logger
}

func newBreakers(cfg BreakerConfig, log *slog.Logger) *breakers {
	return &breakers{cfg: cfg, m: map[string]*gobreaker.CircuitBreaker[int]{}, log: log}
}

func (b *breakers) get(endpoint string) *gobreaker.CircuitBreaker[int] {
	b.mu.Lock()
	defer b.mu.Unlock()
	cb, ok := b.m[endpoint]
	if !ok {
		cb = gobreaker.NewCircuitBreaker[int](gobreaker.Settings{
			Name:        endpoint,
			MaxRequests: 1, // one probe while half-open
			Timeout:     b.cfg.OpenFor,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= b.cfg.ConsecutiveFailures },
			OnStateChange: func(name string, from, to gobreaker.State) {
				breakerChanges.WithLabelValues(to.String()).Inc()
				if b.log != nil {
					b.log.Info("webhook endpoint breaker", "endpoint", name, "from", from.String(), "to", to.String())
				}
			},
		})
		b.m[endpoint] = cb
	}
	return cb
}

// errStatus is an endpoint's non-2xx answer.
type errStatus struct{ code int }

func (e errStatus) Error() string { return "endpoint answered " + strconv.Itoa(e.code) }

// Deliverer sends the region's due deliveries.
type Deliverer struct {
	Region   string
	Store    deliveryStore
	Cfg      Config
	Client   *http.Client
	Log      *slog.Logger
	Now      func() time.Time
	breakers *breakers
}

// deliveryStore is what the deliverer needs of the store.
type deliveryStore interface {
	claim(ctx context.Context, region string, n int, lease, takeover time.Duration) ([]pending, error)
	settle(ctx context.Context, rs []settled) error
}

// NewClient is the HTTP client deliveries go out with: no redirects followed (a 3xx is a
// failure, as Standard Webhooks senders treat it), each attempt bounded by timeout, and no
// connection to an address inside the network Herald runs in (private, link-local, loopback,
// unspecified, multicast): an app's URL must not reach Herald's own services. allowLoopback lets
// loopback through (the local stack's receiver, webhooks.allow_loopback_http).
func NewClient(timeout time.Duration, allowLoopback bool) *http.Client {
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		return checkDestination(address, allowLoopback)
	}}
	return &http.Client{
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			DialContext: dialer.DialContext, ForceAttemptHTTP2: true, MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, // above concurrency: no reconnect per attempt to a busy endpoint
			IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: timeout, ResponseHeaderTimeout: timeout,
		},
	}
}

// errForbiddenDestination is a connection refused before it was made.
var errForbiddenDestination = errors.New("webhook destination is not a public address")

// checkDestination refuses to connect to address (an IP and port, as resolved) unless it is a
// public address, or a loopback one when allowLoopback.
func checkDestination(address string, allowLoopback bool) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", errForbiddenDestination, address)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %s", errForbiddenDestination, address)
	}
	ip = ip.Unmap()
	switch {
	case ip.IsLoopback():
		if allowLoopback {
			return nil
		}
	case ip.IsPrivate(), ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast(), ip.IsUnspecified(), ip.IsMulticast(),
		ip.IsInterfaceLocalMulticast(), cgnat.Contains(ip):
	default:
		return nil
	}
	return fmt.Errorf("%w: %s", errForbiddenDestination, ip)
}

// cgnat is the shared address space (RFC 6598), inside carriers' and clouds' networks.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func (d *Deliverer) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// lease is how long a claimed delivery is hidden from other claims: its wait in the queue (at
// most about four attempts: Run keeps at most 4 x concurrency in flight), its attempt, and the
// settler's lag, with a margin. A process that dies leaves its claimed rows due again after it.
func (d *Deliverer) lease() time.Duration { return 6*d.Cfg.Timeout + 5*time.Second }

// takeoverChecks is how many times per TakeoverAfter Run looks for another region's overdue
// deliveries (15 s apart by default): that region's are delivered at most TakeoverAfter and an
// eighth of it late, and its own claims do not scan its own backlog.
const takeoverChecks = 8

// Run delivers until ctx ends, as a pipeline: a claimer keeps up to four times Concurrency
// deliveries in flight (claiming when a quarter of them are done, waiting PollInterval when nothing
// is due; taking over another region's overdue deliveries every TakeoverAfter/8),
// Concurrency senders attempt them, and a settler records the outcomes in batches (of whatever
// arrived while it recorded the last, at most 200). A slow endpoint holds one sender, not the
// others.
func (d *Deliverer) Run(ctx context.Context) error {
	if d.breakers == nil {
		d.breakers = newBreakers(d.Cfg.Breaker, d.Log)
	}
	capacity := 4 * d.Cfg.Concurrency
	work := make(chan pending, capacity)
	results := make(chan settled, capacity)
	// A claim takes a few milliseconds: made when a quarter of the slots are free, it returns
	// before the senders have run out of work (when half were, they waited for it).
	refill := capacity - capacity/4
	var inFlight atomic.Int64      // deliveries claimed and not yet attempted
	wake := make(chan struct{}, 1) // a sender brought inFlight down to refill (a token, not a count)
	var senders sync.WaitGroup
	for range d.Cfg.Concurrency {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for p := range work {
				o := d.attempt(ctx, p)
				// Its slot is free (the row stays hidden by its lease until the settler records
				// it); from refill down, the claimer is woken to claim more.
				if inFlight.Add(-1) <= int64(refill) {
					select {
					case wake <- struct{}{}:
					default: // the claimer has one already
					}
				}
				results <- settled{p, o}
			}
		}()
	}
	settlerDone := make(chan struct{})
	go func() {
		defer close(settlerDone)
		d.settleLoop(results)
	}()

	var tookOver time.Time // when a claim last looked for another region's overdue deliveries
	for ctx.Err() == nil {
		n := int(inFlight.Load())
		if n > refill {
			select {
			case <-wake:
			case <-ctx.Done():
			}
			continue
		}
		free := capacity - n
		var takeover time.Duration
		if time.Since(tookOver) >= d.Cfg.TakeoverAfter/takeoverChecks {
			takeover, tookOver = d.Cfg.TakeoverAfter, time.Now()
		}
		ps, err := d.Store.claim(ctx, d.Region, min(free, d.Cfg.Batch), d.lease(), takeover)
		if err != nil && ctx.Err() == nil {
			d.Log.Warn("claiming webhook deliveries failed", "err", err)
		}
		inFlight.Add(int64(len(ps)))
		for _, p := range ps {
			work <- p
		}
		if len(ps) == 0 {
			select {
			case <-time.After(d.Cfg.PollInterval):
			case <-ctx.Done():
			}
		}
	}
	close(work)
	senders.Wait() // attempts end with ctx; their outcomes are still recorded
	close(results)
	<-settlerDone
	return nil
}

// settleLoop records outcomes until results is closed: it waits for
// one, takes whatever else has arrived (up to 200) and records them in one statement, so the
// batches grow with the load and nothing waits for a timer.
func (d *Deliverer) settleLoop(results <-chan settled) {
	const maxBatch = 200
	batch := make([]settled, 0, maxBatch)
	for r := range results {
		batch = append(batch[:0], r)
	more:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-results:
				if !ok {
					break more
				}
				batch = append(batch, r)
			default:
				break more
			}
		}
		d.record(batch)
	}
}

// record stores outcomes even when the process is stopping (the attempts were made); a failure
// leaves the rows to their lease: they are tried again, at least once.
func (d *Deliverer) record(batch []settled) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Store.settle(ctx, batch); err != nil {
		d.Log.Warn("recording webhook attempts failed; they are tried again after their lease", "err", err, "attempts", len(batch))
		return
	}
	for _, r := range batch {
		deliveries.WithLabelValues(d.Region, r.o.label()).Inc()
	}
}

// Pass claims one batch, attempts it (Concurrency at a time) and records the outcomes: Run's
// work, one batch at a time (tests and tools). It returns how many deliveries it claimed.
func (d *Deliverer) Pass(ctx context.Context) (int, error) {
	if d.breakers == nil {
		d.breakers = newBreakers(d.Cfg.Breaker, d.Log)
	}
	ps, err := d.Store.claim(ctx, d.Region, d.Cfg.Batch, d.lease(), d.Cfg.TakeoverAfter)
	if err != nil {
		return 0, err
	}
	out := make([]settled, len(ps))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(d.Cfg.Concurrency)
	for i, p := range ps {
		g.Go(func() error {
			out[i] = settled{p, d.attempt(gctx, p)}
			return nil
		})
	}
	_ = g.Wait()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := d.Store.settle(sctx, out); err != nil {
		return len(ps), err
	}
	for _, r := range out {
		deliveries.WithLabelValues(d.Region, r.o.label()).Inc()
	}
	return len(ps), nil
}

func (o outcome) label() string {
	if o.Postponed {
		return "breaker_open"
	}
	if o.Status == "pending" {
		return "retry"
	}
	return o.Status
}

// attempt sends one delivery through its endpoint's breaker and decides what comes next.
func (d *Deliverer) attempt(ctx context.Context, p pending) outcome {
	sched := ScheduleOf(d.Cfg)
	if p.Disabled {
		return outcome{Status: "dead", Attempts: p.Attempts, Error: "endpoint disabled", NotAttempted: true}
	}
	cb := d.breakers.get(p.Endpoint)
	code, err := cb.Execute(func() (int, error) { return d.send(ctx, p) })
	now := d.now()
	if err == nil {
		return outcome{Status: "delivered", Attempts: p.Attempts + 1, HTTP: code}
	}
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		// Not attempted: wait for the breaker, unless the horizon has passed.
		if !now.Before(p.FirstAt.Add(sched.Horizon)) {
			return outcome{Status: "dead", Attempts: p.Attempts, Error: "circuit breaker open at the horizon", NotAttempted: true}
		}
		next := now.Add(d.Cfg.Breaker.OpenFor)
		if end := p.FirstAt.Add(sched.Horizon); next.After(end) {
			next = end
		}
		return outcome{Status: "pending", Attempts: p.Attempts, Next: next, Postponed: true, NotAttempted: true}
	}
	attempts := p.Attempts + 1
	msg := err.Error()
	if len(msg) > 500 {
		msg = msg[:500]
	}
	next, ok := sched.Next(attempts, p.FirstAt, now)
	if !ok {
		return outcome{Status: "dead", Attempts: attempts, HTTP: code, Error: msg}
	}
	return outcome{Status: "pending", Attempts: attempts, Next: next, HTTP: code, Error: msg}
}

// send posts one signed message; it returns the status, and an error for anything but 2xx.
func (d *Deliverer) send(ctx context.Context, p pending) (int, error) {
	now := d.now()
	h, err := Sign(SigningKeys(p.Key, p.PreviousKey, p.PreviousUntil, now), p.EventID, now, p.Payload)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(p.Payload))
	if err != nil {
		return 0, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Herald-Webhooks/1")
	resp, err := d.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, errStatus{resp.StatusCode}
	}
	return resp.StatusCode, nil
}
