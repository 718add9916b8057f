package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-notify/herald/platform/config"
)

// Faults is what a simulator is told to get wrong. The same struct is the `faults` block of each
// simulator's config and the JSON body of PUT /sim/{name}/faults, so a test can script at run
// time exactly what a config file can.
type Faults struct {
	// ErrorRate is the share (0..1) of requests answered with a retryable server error, picked
	// at random from ErrorStatuses.
	ErrorRate float64 `yaml:"error_rate" json:"error_rate"`
	// ErrorStatuses are the server errors ErrorRate picks from: 500 and/or 503 (default both).
	// Each simulator answers them in its provider's terms (InternalServerError, UNAVAILABLE,
	// 20500, SMTP 451/421, ...).
	ErrorStatuses []int `yaml:"error_statuses" json:"error_statuses"`
	// RateLimitRate is the share (0..1) of requests answered "too many requests" (429, or SMTP
	// 451 4.7.1) with Retry-After.
	RateLimitRate float64 `yaml:"rate_limit_rate" json:"rate_limit_rate"`
	// RateLimitPerSecond answers "too many requests" to what exceeds this many requests per
	// second (a token bucket with a one-second burst; 0: off).
	RateLimitPerSecond int `yaml:"rate_limit_per_second" json:"rate_limit_per_second"`
	// RetryAfterSeconds is the Retry-After of rate-limited and outage answers (default 1).
	RetryAfterSeconds int `yaml:"retry_after_seconds" json:"retry_after_seconds"`
	// OutageSeconds answers every request 503 (SMTP 421) for this long from when the faults
	// are set (process start for the config file, the PUT for the admin API).
	OutageSeconds float64 `yaml:"outage_seconds" json:"outage_seconds"`
	// LatencyMS and JitterMS delay every answer by LatencyMS plus a uniform 0..JitterMS.
	LatencyMS int `yaml:"latency_ms" json:"latency_ms"`
	JitterMS  int `yaml:"jitter_ms" json:"jitter_ms"`
	// MaxPerSecond caps throughput: requests beyond it wait for their slot instead of failing,
	// like a provider that slows down (0: off).
	MaxPerSecond int `yaml:"max_per_second" json:"max_per_second"`
	// Unregistered recipients answer "gone for good": APNs 410 Unregistered, FCM 404
	// UNREGISTERED, SMTP 550 5.1.1, Twilio 21610 (unsubscribed).
	Unregistered []string `yaml:"unregistered" json:"unregistered"`
	// Invalid recipients answer "malformed": APNs 400 BadDeviceToken, FCM 400
	// INVALID_ARGUMENT, SMTP 550 5.1.3, Twilio 21211.
	Invalid []string `yaml:"invalid" json:"invalid"`
	// Full recipients are mailboxes over quota, a soft bounce: SMTP 452 4.2.2 (the other
	// simulators deliver to them as usual).
	Full []string `yaml:"full" json:"full"`
	// Undeliverable recipients are taken and then not delivered: Twilio answers 201 and its
	// status callbacks say sent, then undelivered with ErrorCode 30005 (unknown destination
	// handset), as a carrier reports a number that does not exist (the other simulators
	// deliver to them as usual).
	Undeliverable []string `yaml:"undeliverable" json:"undeliverable"`
	// BounceLater recipients are taken by the SMTP simulator (250) and then bounce: with
	// events on (smtp.events.url), its SendGrid events say processed, then bounce (type
	// bounce, 5.1.1), as a receiving server that refused the mail after the relay took it.
	BounceLater []string `yaml:"bounce_later" json:"bounce_later"`
	// Complain recipients are delivered, then report the mail as spam: the SMTP simulator's
	// SendGrid events say delivered, then spamreport.
	Complain []string `yaml:"complain" json:"complain"`
	// Seed makes the random choices repeatable (0: the process-wide seed).
	Seed uint64 `yaml:"seed" json:"seed"`
}

// Validate checks the block; keys are relative, callers prefix them.
func (f Faults) Validate() error {
	rate := func(key string, v float64) error {
		if v < 0 || v > 1 {
			return config.Errorf(key, fmt.Sprint(v), "must be between 0 and 1")
		}
		return nil
	}
	if err := rate("error_rate", f.ErrorRate); err != nil {
		return err
	}
	if err := rate("rate_limit_rate", f.RateLimitRate); err != nil {
		return err
	}
	for _, s := range f.ErrorStatuses {
		if s != 500 && s != 503 {
			return config.Errorf("error_statuses", strconv.Itoa(s), "must be 500 or 503")
		}
	}
	nonNeg := map[string]int{
		"rate_limit_per_second": f.RateLimitPerSecond, "retry_after_seconds": f.RetryAfterSeconds,
		"latency_ms": f.LatencyMS, "jitter_ms": f.JitterMS, "max_per_second": f.MaxPerSecond,
	}
	for _, k := range []string{"rate_limit_per_second", "retry_after_seconds", "latency_ms", "jitter_ms", "max_per_second"} {
		if nonNeg[k] < 0 {
			return config.Errorf(k, strconv.Itoa(nonNeg[k]), "must not be negative")
		}
	}
	if f.OutageSeconds < 0 {
		return config.Errorf("outage_seconds", fmt.Sprint(f.OutageSeconds), "must not be negative")
	}
	return nil
}

// FaultKind is what the injector decided for one request.
type FaultKind int

const (
	NoFault FaultKind = iota
	Outage
	RateLimited
	ServerError
)

// Decision is the injector's verdict on one request.
type Decision struct {
	Kind       FaultKind
	Status     int // 500 or 503 for ServerError
	RetryAfter int // seconds, for Outage and RateLimited
}

// RecipientFault is what a recipient is configured to answer.
type RecipientFault int

const (
	RecipientOK RecipientFault = iota
	RecipientUnregistered
	RecipientInvalid
	RecipientFull
	RecipientUndeliverable
	RecipientBounceLater
	RecipientComplain
)

// faultState is one immutable fault setting. Requests read it through an atomic pointer, so the
// no-fault hot path takes no lock; only the random draws and the token buckets lock, and only
// when those faults are on.
type faultState struct {
	f           Faults
	active      bool // any fault besides the recipient lists
	outageUntil time.Time
	statuses    []int
	recipients  map[string]RecipientFault

	mu  sync.Mutex // guards rng and bucket
	rng *rand.Rand
	// reject bucket for RateLimitPerSecond
	tokens   float64
	lastFill time.Time

	// next free slot (unix nanos) for MaxPerSecond
	nextSlot atomic.Int64
}

// Injector applies a simulator's faults. Set replaces them at run time.
type Injector struct {
	state       atomic.Pointer[faultState]
	defaultSeed uint64
}

// NewInjector returns an injector holding f, seeded with f.Seed or else seed (0: random).
func NewInjector(f Faults, seed uint64) *Injector {
	in := &Injector{defaultSeed: seed}
	in.Set(f)
	return in
}

// Set replaces the faults; outage windows start now and the RNG restarts from its seed.
func (in *Injector) Set(f Faults) {
	now := time.Now()
	st := &faultState{f: f, statuses: f.ErrorStatuses, recipients: map[string]RecipientFault{}}
	if len(st.statuses) == 0 {
		st.statuses = []int{500, 503}
	}
	for _, r := range f.Unregistered {
		st.recipients[r] = RecipientUnregistered
	}
	for _, r := range f.Invalid {
		st.recipients[r] = RecipientInvalid
	}
	for _, r := range f.Full {
		st.recipients[r] = RecipientFull
	}
	for _, r := range f.Undeliverable {
		st.recipients[r] = RecipientUndeliverable
	}
	for _, r := range f.BounceLater {
		st.recipients[r] = RecipientBounceLater
	}
	for _, r := range f.Complain {
		st.recipients[r] = RecipientComplain
	}
	if f.OutageSeconds > 0 {
		st.outageUntil = now.Add(time.Duration(f.OutageSeconds * float64(time.Second)))
	}
	seed := f.Seed
	if seed == 0 {
		seed = in.defaultSeed
	}
	if seed == 0 {
		seed = rand.Uint64()
	}
	st.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	st.tokens, st.lastFill = float64(f.RateLimitPerSecond), now
	st.active = f.ErrorRate > 0 || f.RateLimitRate > 0 || f.RateLimitPerSecond > 0 || f.OutageSeconds > 0 ||
		f.LatencyMS > 0 || f.JitterMS > 0 || f.MaxPerSecond > 0
	in.state.Store(st)
}

// Get returns the faults in force, with OutageSeconds turned into what is left of the window.
func (in *Injector) Get() Faults {
	st := in.state.Load()
	f := st.f
	if !st.outageUntil.IsZero() {
		f.OutageSeconds = max(0, time.Until(st.outageUntil).Seconds())
	}
	return f
}

// Wait applies the added latency and the throughput cap; it returns early if ctx ends.
func (in *Injector) Wait(ctx context.Context) error {
	st := in.state.Load()
	if !st.active {
		return nil
	}
	var d time.Duration
	if st.f.MaxPerSecond > 0 {
		d = st.reserveSlot(time.Now())
	}
	d += time.Duration(st.f.LatencyMS) * time.Millisecond
	if st.f.JitterMS > 0 {
		st.mu.Lock()
		d += time.Duration(st.rng.Int64N(int64(st.f.JitterMS)*int64(time.Millisecond) + 1))
		st.mu.Unlock()
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reserveSlot books the next free slot of a MaxPerSecond schedule and returns how long to wait
// for it. A compare-and-swap loop keeps it lock-free.
func (st *faultState) reserveSlot(now time.Time) time.Duration {
	interval := int64(time.Second) / int64(st.f.MaxPerSecond)
	n := now.UnixNano()
	for {
		next := st.nextSlot.Load()
		slot := max(next, n)
		if st.nextSlot.CompareAndSwap(next, slot+interval) {
			return time.Duration(slot - n)
		}
	}
}

// Decide returns the fault, if any, for one request: an outage first, then rate limits, then
// random server errors.
func (in *Injector) Decide() Decision {
	st := in.state.Load()
	if !st.active {
		return Decision{}
	}
	retry := st.f.RetryAfterSeconds
	if retry == 0 {
		retry = 1
	}
	now := time.Now()
	if !st.outageUntil.IsZero() && now.Before(st.outageUntil) {
		return Decision{Kind: Outage, Status: 503, RetryAfter: max(retry, int(time.Until(st.outageUntil).Seconds()+0.999))}
	}
	if st.f.RateLimitPerSecond == 0 && st.f.RateLimitRate == 0 && st.f.ErrorRate == 0 {
		return Decision{}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if limit := float64(st.f.RateLimitPerSecond); limit > 0 {
		st.tokens = min(limit, st.tokens+now.Sub(st.lastFill).Seconds()*limit)
		st.lastFill = now
		if st.tokens < 1 {
			return Decision{Kind: RateLimited, Status: 429, RetryAfter: retry}
		}
		st.tokens--
	}
	if st.f.RateLimitRate > 0 && st.rng.Float64() < st.f.RateLimitRate {
		return Decision{Kind: RateLimited, Status: 429, RetryAfter: retry}
	}
	if st.f.ErrorRate > 0 && st.rng.Float64() < st.f.ErrorRate {
		return Decision{Kind: ServerError, Status: st.statuses[st.rng.IntN(len(st.statuses))], RetryAfter: retry}
	}
	return Decision{}
}

// Recipient reports whether to is on the unregistered or invalid list.
func (in *Injector) Recipient(to string) RecipientFault {
	st := in.state.Load()
	if len(st.recipients) == 0 {
		return RecipientOK
	}
	return st.recipients[to]
}
