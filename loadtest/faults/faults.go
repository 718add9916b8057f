// Package faults is Herald's black-box fault suite: a steady stream of sends through the
// gateway, across every channel (in-app, push, email, SMS) and tier, from a correct client (it
// retries 429, 5xx, timeouts and refused connections with the same idempotency key), while one
// fault at a time hits the local deployment: a process killed, a server restarted, a provider
// down. Every send carries a unique marker, and is counted where it lands: in the provider
// simulators' records and in the users' inboxes. Per fault it reports what was sent, accepted,
// delivered once, lost and duplicated, the API errors and the worst request latency during
// the fault, and how long deliveries took to flow again once the server was back.
//
// It is a development tool (docs/reliability.md), like the load scenarios: it drives local
// deployments only, and its faults stop and start the local stack's processes.
package faults

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/herald-notify/herald/platform/retry"
)

// Targets every judged fault must meet (docs/reliability.md).
const (
	// MaxDuplicateRate is the share of accepted sends that may be delivered more than once.
	MaxDuplicateRate = 0.001
	// MaxRecovery is the longest wait, after the server is back, for deliveries to flow again
	// and for the backlog of sends accepted before to be delivered.
	MaxRecovery = 30 * time.Second
	// MaxOTPP99 is the target for the 99th percentile of a transactional (OTP) send's
	// accept -> provider time, held against the faults that lose one machine of a
	// replicated store or a region (Fault.MachineLoss): the rest of the cluster serves on.
	MaxOTPP99 = 5 * time.Second
)

// Options bound and aim a run.
type Options struct {
	BaseURL string // the gateway, loopback only
	SimURL  string // the provider simulators' admin API
	APIKey  string
	RunID   string
	// Rate is sends per second, each to one user on one channel, rotating channels and tiers.
	Rate float64
	// Users per fault (new ones each fault; half in the EU, half in the US).
	Users int
	// Warm is the load before the fault, Down how long the server stays down (or the provider
	// outage lasts), After the load once it is back.
	Warm, Down, After time.Duration
	// Drain is the longest wait for deliveries once the load stopped.
	Drain time.Duration
	// Deadline is the request deadline: an answer that took longer missed it (a hang).
	Deadline time.Duration
	// GiveUp is how long the client keeps retrying one send before it gives up.
	GiveUp time.Duration
	// LatencyMeasured, when set, says why this run measures the latency targets (OTP p99,
	// recovery within MaxRecovery, answers within the deadline) without judging them: make
	// test's short windows on a shared CI machine, where one run's tail is one noisy sample.
	// Delivery is judged whatever it says: loss, duplicates, a request never answered, and a
	// recovery that never came.
	LatencyMeasured string
	Log             io.Writer
}

// Env is what faults act on.
type Env struct {
	Stack Operator
	sims  *recordPoller
	// recordsLost is when a fault destroyed the simulators' records (they live in memory):
	// a send delivered just before it may have left no record the suite could read.
	recordsLost time.Time
	// pgPrimary is the Postgres node the primary kill killed.
	pgPrimary string
}

// Operator stops, kills and starts the parts of a local deployment.
type Operator interface {
	// Kill sends SIGKILL to a Herald process (gateway, sim, region-eu-west-1, ...) and waits
	// until it is gone.
	Kill(ctx context.Context, proc string) error
	// StartHerald starts every Herald process that is not running and waits until all are ready.
	StartHerald(ctx context.Context) error
	// Ready reports whether every Herald process answers ready.
	Ready(ctx context.Context) error
	// Stop and Start a server (kafka, cassandra, redis, postgres), or one node of it
	// ("cassandra:eu-west-1"); Start returns once it answers.
	Stop(ctx context.Context, server string) error
	Start(ctx context.Context, server string) error
	// KillNode sends SIGKILL to one node of a server ("cassandra:eu-west-1", "kafka:2") and
	// waits until it is gone.
	KillNode(ctx context.Context, node string) error
	// Nodes is how many nodes a server runs (kafka: 1, or 3 in cluster mode).
	Nodes(server string) int
	// EUPrimary is the node holding the EU jurisdiction's Postgres primary (eu-west-1 until a
	// promotion); Promote makes a standby the primary.
	EUPrimary() string
	Promote(ctx context.Context, node string) error
	// Rejoin brings a lost node back the way the runbook does: a former Postgres primary as
	// the new one's standby ("postgres:eu-west-1"), an EU Cassandra node repaired before it
	// serves clients ("cassandra:eu-west-1").
	Rejoin(ctx context.Context, node string) error
	// Redis runs a command on the stack's Redis.
	Redis(ctx context.Context, args ...string) error
}

// Fault is one fault the suite injects.
type Fault struct {
	Name string
	Doc  string
	// Note is printed with the row; a fault with a note is measured but not judged (its
	// promise belongs to another piece of work).
	Note string
	// RecoveryNote, when set, says why the recovery target is not held against this fault;
	// every other target is (loss, duplicates, deadlines).
	RecoveryNote string
	// Inject starts the fault; Restore ends it and returns once the server is back (down is
	// how long it should stay down, counted from Inject's return).
	Inject  func(ctx context.Context, e *Env) error
	Restore func(ctx context.Context, e *Env, down time.Duration) error
	// MachineLoss marks the loss of one machine of a replicated whole (a node, a broker, a
	// region): the OTP p99 target (MaxOTPP99) is held against it, unless OTPNote says why
	// not yet.
	MachineLoss bool
	OTPNote     string
	// KillsDispatcher marks the SIGKILL of a process that calls the providers. A send a provider
	// took at that instant (the message written, the process dead before its sent mark was
	// stored) is sent again when the process is back: the repeat at-least-once allows, which no
	// provider here can deduplicate (none takes an idempotency key). Such repeats, whose first
	// delivery falls within a second of the kill, are counted apart (Result.DupAtKill) and not
	// judged: their number is what was in flight at one instant, not a rate.
	KillsDispatcher bool
	// Digest runs the digest probe across the fault: a workflow's digest of 50 triggers whose
	// window spans it must send one summary listing all 50 (issue 21).
	Digest bool
	// Skip, when set, says why the fault cannot be made on this stack ("" when it can): the
	// suite says so and goes on without a row.
	Skip func(Operator) string
}

// Faults lists every fault, in the order `herald-dev faults all` runs them.
var Faults = []Fault{
	{Name: "gateway-kill", Doc: "SIGKILL of the gateway, started again after Down",
		Inject: kill("gateway"), Restore: startHerald},
	{Name: "sim-kill", Doc: "SIGKILL of the provider simulators (all four), started again after Down",
		Inject: func(ctx context.Context, e *Env) error {
			// The simulators' records die with them: read what they hold first.
			e.sims.poll(ctx)
			err := e.Stack.Kill(ctx, "sim")
			e.recordsLost = time.Now()
			e.sims.reset()
			return err
		}, Restore: startHerald},
	{Name: "kafka-restart", Doc: "Kafka stopped (SIGTERM: logs flushed; a lone broker has no leaderships to move, so no controlled shutdown), started again after Down",
		Inject: stop("kafka"), Restore: start("kafka"), Digest: true},
	{Name: "kafka-broker-kill", Doc: "SIGKILL of one of the three Kafka brokers (cluster mode: replication factor 3, min.insync.replicas 2), started again after Down",
		Skip: func(o Operator) string {
			if n := o.Nodes("kafka"); n < 3 {
				return fmt.Sprintf("the stack's Kafka runs %d broker(s); a broker can be lost only in cluster mode (make reset; HERALD_KAFKA_NODES=3 make up)", n)
			}
			return ""
		},
		// The cluster serves throughout; what is slow is the killed broker's restart, which on
		// a loaded 2-core machine recovers its 600-odd partitions for 1.5-2.5 minutes and holds
		// the machine while it does (docs/reliability.md).
		RecoveryNote: "no outage to recover from: the cluster served throughout; deliveries slow while the restarted broker recovers on this 2-core machine",
		MachineLoss:  true,
		OTPNote:      "every acks=all produce waits until the dead broker is fenced, and consumers follow the moved group coordinators",
		Inject:       func(ctx context.Context, e *Env) error { return e.Stack.KillNode(ctx, "kafka:2") }, Restore: start("kafka:2")},
	{Name: "cassandra-restart", Doc: "the US Cassandra cluster stopped (its one node: us-east-1 has no other region to fail over to), started again after Down",
		Inject: stop("cassandra:us"), Restore: start("cassandra:us")},
	{Name: "cassandra-node-kill", Doc: "SIGKILL of eu-west-1's Cassandra node (its data centre's only replica: eu-west-1's queries go to the other data centre), brought back after Down as the runbook says: repaired from the other data centre before it serves clients",
		Inject:  func(ctx context.Context, e *Env) error { return e.Stack.KillNode(ctx, "cassandra:eu-west-1") },
		Restore: rejoin("cassandra:eu-west-1"), MachineLoss: true},
	{Name: "postgres-primary-kill", Doc: "SIGKILL of the EU jurisdiction's Postgres primary; after Down its standby is promoted (the runbook's step: the regions' URLs follow it), then the old primary rejoins as the new one's standby",
		Inject: func(ctx context.Context, e *Env) error {
			e.pgPrimary = e.Stack.EUPrimary()
			return e.Stack.KillNode(ctx, "postgres:"+e.pgPrimary)
		},
		Restore: func(ctx context.Context, e *Env, down time.Duration) error {
			if err := sleep(ctx, down); err != nil {
				return err
			}
			standby := "eu-central-1"
			if e.pgPrimary == standby {
				standby = "eu-west-1"
			}
			if err := e.Stack.Promote(ctx, standby); err != nil {
				return err
			}
			return e.Stack.Rejoin(ctx, "postgres:"+e.pgPrimary)
		}},
	{Name: "redis-restart-flushall", Doc: "Redis stopped, started again after Down, then FLUSHALL (every key lost: rate limits, dedup marks, caches)",
		Inject: stop("redis"), Restore: func(ctx context.Context, e *Env, down time.Duration) error {
			if err := start("redis")(ctx, e, down); err != nil {
				return err
			}
			return e.Stack.Redis(ctx, "FLUSHALL")
		}},
	{Name: "postgres-restart", Doc: "Postgres stopped (fast shutdown), started again after Down",
		Inject: stop("postgres"), Restore: start("postgres")},
	{Name: "provider-outage", Doc: "every provider (APNs, FCM, SMTP, SMS) answers 503 / 421 for Down (simulator fault injection)",
		Inject: func(context.Context, *Env) error { return nil }, // the outage starts in Restore, which knows its length
		Restore: func(ctx context.Context, e *Env, down time.Duration) error {
			end := time.Now().Add(down)
			if err := e.sims.outage(ctx, down); err != nil {
				return err
			}
			if err := sleep(ctx, time.Until(end)); err != nil {
				return err
			}
			return e.sims.clearFaults(ctx)
		}},
	{Name: "region-kill", Doc: "SIGKILL of region eu-west-1, started again after Down",
		Inject: kill("region-eu-west-1"), Restore: startHerald, MachineLoss: true, KillsDispatcher: true, Digest: true,
		OTPNote: "what the region accepted and had not dispatched waits in its own topics until it is back"},
}

func kill(proc string) func(context.Context, *Env) error {
	return func(ctx context.Context, e *Env) error { return e.Stack.Kill(ctx, proc) }
}

func stop(server string) func(context.Context, *Env) error {
	return func(ctx context.Context, e *Env) error { return e.Stack.Stop(ctx, server) }
}

func start(server string) func(context.Context, *Env, time.Duration) error {
	return func(ctx context.Context, e *Env, down time.Duration) error {
		if err := sleep(ctx, down); err != nil {
			return err
		}
		return e.Stack.Start(ctx, server)
	}
}

// rejoin brings node back after down the runbook's way (Operator.Rejoin).
func rejoin(node string) func(context.Context, *Env, time.Duration) error {
	return func(ctx context.Context, e *Env, down time.Duration) error {
		if err := sleep(ctx, down); err != nil {
			return err
		}
		return e.Stack.Rejoin(ctx, node)
	}
}

func startHerald(ctx context.Context, e *Env, down time.Duration) error {
	if err := sleep(ctx, down); err != nil {
		return err
	}
	return e.Stack.StartHerald(ctx)
}

// sleep waits d, or returns ctx's error if it ends first.
func sleep(ctx context.Context, d time.Duration) error {
	if !retry.Sleep(ctx, d) {
		return ctx.Err()
	}
	return nil
}

// Result is one fault's row.
type Result struct {
	Fault, Note string
	// RecoveryNote is the fault's: recovery measured, not judged.
	RecoveryNote string
	// OTPJudged: the fault is a machine loss (Fault.MachineLoss), so OTPP99 is held to
	// MaxOTPP99.
	OTPJudged bool
	OTPNote   string // why a machine loss's OTP p99 is measured, not yet judged
	// LatencyNote is the run's Options.LatencyMeasured: the OTP p99 and the recovery time are
	// measured, not judged, in this run.
	LatencyNote string
	// OTPP99 is the 99th percentile, over the row's accepted transactional sends (category
	// otp) a provider received, of accepted -> the provider's first receipt; OTPs counts them.
	OTPP99   time.Duration
	OTPs     int
	Sent     int // sends started
	Accepted int // answered 202, or 409 with the original id on a retry
	// DeliveredOnce, Lost and Duplicated count accepted sends: delivered exactly once, never,
	// more than once.
	DeliveredOnce, Lost, Duplicated int
	// LostFailover: accepted sends never delivered that the gateway had failed over to another
	// region than their user's home: lost like the others, counted apart to say where.
	LostFailover int
	// DupAcceptedTwice: duplicated sends whose deliveries carry two notification ids (a retry
	// with the same idempotency key accepted as a new send); DupRepeated: one id delivered
	// twice (the pipeline repeated it). SMS carries no id and is in neither.
	DupAcceptedTwice, DupRepeated int
	// DupAtKill: of the duplicated sends, those first delivered within a second of the kill of
	// a dispatching process (Fault.KillsDispatcher): counted, not judged.
	DupAtKill       int
	duplicatedSends []int
	// GaveUp: sends the client stopped retrying (never accepted); DeliveredUnaccepted: of those,
	// delivered anyway (the region took it but the answer was lost).
	GaveUp, DeliveredUnaccepted int
	Refused                     int // answered a 4xx other than 409/429 (not retried)
	// FromStatus: deliveries counted from the status endpoint because the simulator that took
	// them was killed before its records were read.
	FromStatus int
	// APIErrors counts failed attempts (5xx, 429, timeouts, refused connections), all retried.
	APIErrors int
	// Worst is the slowest attempt started during the fault (injected to 10 s after back);
	// PastDeadline counts attempts, at any time, answered after the deadline or never;
	// Unanswered, of those, the ones never answered (the client gave the attempt up 10 s past
	// the deadline): a hang, judged in either mode, where a late answer is latency.
	Worst                    time.Duration
	PastDeadline, Unanswered int
	// DownFor is from the fault's start to the server back.
	DownFor time.Duration
	// Flowing: from back to the first provider delivery of a send first tried after back.
	// Drained: from back to the last first delivery of a send accepted before back (0 when
	// none was waiting). Recovered is false when either never happened.
	Flowing, Drained time.Duration
	Recovered        bool
	// DigestChecked: the fault's digest probe ran (Fault.Digest); DigestSummaries are the
	// counts its summaries listed (one summary of digestEvents is right), DigestErr why it
	// could not be read.
	DigestChecked   bool
	DigestSummaries []int
	DigestErr       error
	Examples        []string // a few lost or duplicated sends, for the log
	Err             error    // the fault itself could not be injected or restored
}

// Recovery is the later of flowing again and the backlog drained.
func (r Result) Recovery() time.Duration { return max(r.Flowing, r.Drained) }

// Judged reports whether the row is held to the targets.
func (r Result) Judged() bool { return r.Note == "" }

// Misses lists the targets the row missed.
func (r Result) Misses() []string {
	var m []string
	if r.Err != nil {
		m = append(m, "fault: "+r.Err.Error())
	}
	if r.Accepted == 0 {
		m = append(m, "nothing accepted")
	}
	if r.Lost > 0 {
		m = append(m, fmt.Sprintf("%d lost", r.Lost))
	}
	if r.DigestChecked && (r.DigestErr != nil || len(r.DigestSummaries) != 1 || r.DigestSummaries[0] != digestEvents) {
		m = append(m, fmt.Sprintf("digest: summaries %v, want one of %d (%v)", r.DigestSummaries, digestEvents, r.DigestErr))
	}
	if r.LostFailover > 0 {
		m = append(m, fmt.Sprintf("%d lost after a failover", r.LostFailover))
	}
	if d := r.Duplicated - r.DupAtKill; r.Accepted > 0 && float64(d) >= MaxDuplicateRate*float64(r.Accepted) && d > 0 {
		m = append(m, fmt.Sprintf("duplicates %.3f%% (target < %.1f%%)", pct(d, r.Accepted), MaxDuplicateRate*100))
	}
	switch {
	case r.Unanswered > 0:
		m = append(m, fmt.Sprintf("%d requests never answered", r.Unanswered))
	case r.PastDeadline > 0 && r.LatencyNote == "":
		m = append(m, fmt.Sprintf("%d requests past the deadline", r.PastDeadline))
	}
	if r.OTPJudged && r.LatencyNote == "" && r.OTPs > 0 && r.OTPP99 >= MaxOTPP99 {
		m = append(m, fmt.Sprintf("OTP p99 %s (target < %s)", secs(r.OTPP99), secs(MaxOTPP99)))
	}
	if r.RecoveryNote != "" {
		return m
	}
	if !r.Recovered {
		m = append(m, "no recovery")
	} else if r.LatencyNote == "" && r.Recovery() >= MaxRecovery {
		m = append(m, fmt.Sprintf("recovery %s (target < %s)", r.Recovery().Round(100*time.Millisecond), MaxRecovery))
	}
	return m
}

func pct(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}

// Run runs one fault under load and counts the outcome. round numbers the fault within the
// run (it goes into the markers and the user ids).
func Run(ctx context.Context, o Options, f Fault, stack Operator, round int) Result {
	res := Result{Fault: f.Name, Note: f.Note, RecoveryNote: f.RecoveryNote, OTPJudged: f.MachineLoss && f.OTPNote == "", OTPNote: f.OTPNote, LatencyNote: o.LatencyMeasured}
	c := newClient(o)
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, "  [%s %s] %s\n", time.Now().UTC().Format("15:04:05"), f.Name, fmt.Sprintf(format, args...))
		}
	}
	env := &Env{Stack: stack, sims: newRecordPoller(c, o.RunID, round)}
	if err := env.sims.clearFaults(ctx); err != nil {
		res.Err = fmt.Errorf("clearing simulator faults: %w", err)
		return res
	}
	if err := waitReady(ctx, stack, 2*time.Minute); err != nil {
		res.Err = fmt.Errorf("the stack is not ready before the fault: %w", err)
		return res
	}
	users, err := c.setupUsers(ctx, o, round)
	if err != nil {
		res.Err = err
		return res
	}
	env.sims.start(ctx)
	defer env.sims.stop()

	load := newLoad(c, o, round, users)
	load.ctx = ctx
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); load.run(loadCtx) }()

	logf("load %.0f/s for %s before the fault", o.Rate, o.Warm)
	var digest *digestProbe
	triggered := make(chan struct{})
	if f.Digest {
		if digest, err = newDigestProbe(ctx, c, o, round); err != nil {
			res.Err = err
			digest = nil
		}
	}
	if digest != nil {
		lead := min(5*time.Second, o.Warm)
		_ = sleep(ctx, o.Warm-lead)
		logf("digest: %d triggers, one every 500 ms from %s before the fault; window %s", digestEvents, lead, digest.window)
		go func() { defer close(triggered); digest.trigger(ctx, 500*time.Millisecond, 3*time.Minute) }()
		_ = sleep(ctx, lead)
	} else {
		close(triggered)
		_ = sleep(ctx, o.Warm)
	}
	injected := time.Now()
	logf("injecting: %s", f.Doc)
	var killWindow [2]time.Time // a dispatcher's kill, ± a second
	injectErr := f.Inject(ctx, env)
	if injectErr == nil && f.KillsDispatcher {
		killWindow = [2]time.Time{injected.Add(-time.Second), time.Now().Add(time.Second)}
	}
	if injectErr != nil {
		res.Err = fmt.Errorf("inject: %w", injectErr)
	} else if err := f.Restore(ctx, env, o.Down); err != nil {
		res.Err = fmt.Errorf("restore: %w", err)
	}
	back := time.Now()
	res.DownFor = back.Sub(injected)
	logf("back after %s; load for %s more", res.DownFor.Round(100*time.Millisecond), o.After)
	_ = sleep(ctx, o.After)
	load.stopNew()
	stopLoad()
	<-loadDone
	logf("load stopped: %d sends; waiting up to %s for deliveries", load.count(), o.Drain)

	drainUntil := time.Now().Add(o.Drain)
	for {
		env.sims.poll(ctx)
		waiting := load.undelivered(env.sims.counts(), nil, true)
		if len(waiting) == 0 || time.Now().After(drainUntil) || ctx.Err() != nil {
			break
		}
		_ = sleep(ctx, 2*time.Second)
	}
	// In-app items are counted in the inboxes, once the provider deliveries are in (they
	// travel the same fan-out, so by then the inbox rows are written too).
	var inbox map[int]int
	for {
		inbox = c.inboxCounts(ctx, users, o.RunID, round, newDeliveryIDs())
		if len(load.undelivered(env.sims.counts(), inbox, false)) == 0 || time.Now().After(drainUntil) || ctx.Err() != nil {
			break
		}
		_ = sleep(ctx, 3*time.Second)
	}
	// Late repeats (a redelivery after the drain) still count: look once more a moment later.
	_ = sleep(ctx, 3*time.Second)
	env.sims.poll(ctx)
	inboxIDs := newDeliveryIDs()
	inbox = c.inboxCounts(ctx, users, o.RunID, round, inboxIDs)
	sims := env.sims.counts()
	if !env.recordsLost.IsZero() {
		// The provider's acceptance of a send without a record is read from Herald's own
		// delivery log (the status endpoint): only attempts from before the records died.
		for _, s := range load.undelivered(sims, nil, true) {
			if c.deliveredBefore(ctx, s.notificationID, env.recordsLost) {
				sims[s.n]++
				res.FromStatus++
			}
		}
	}
	firsts := env.sims.firsts()
	load.tally(&res, sims, firsts, inbox, injected, back)
	<-triggered
	if digest != nil {
		res.DigestChecked = true
		res.DigestSummaries, res.DigestErr = digest.summaries(ctx, 2*time.Minute)
		logf("digest: summaries %v (want one of %d), err %v", res.DigestSummaries, digestEvents, res.DigestErr)
	}
	for _, n := range res.duplicatedSends {
		if at, ok := firsts[n]; ok && !killWindow[0].IsZero() && !at.Before(killWindow[0]) && !at.After(killWindow[1]) {
			res.DupAtKill++
		}
		ids := env.sims.ids
		if load.channelOf(n) == "in_app" {
			ids = inboxIDs
		}
		switch ids.distinct(n) {
		case 0: // SMS carries no id
		case 1:
			res.DupRepeated++
		default:
			res.DupAcceptedTwice++
		}
	}
	return res
}

func waitReady(ctx context.Context, stack Operator, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := stack.Ready(ctx)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		_ = sleep(ctx, time.Second)
	}
}

// channels and tiers the load rotates through: every channel sees every tier.
var (
	channels = []string{"in_app", "push", "email", "sms"}
	tiers    = []string{"transactional", "social", "marketing"}
)

// send is one logical send and what became of it.
type send struct {
	n              int
	user, channel  string
	home           string
	tier           string
	first          time.Time
	accepted       bool
	acceptedAt     time.Time
	gaveUp         bool
	refused        bool
	notificationID string
	// failedOver: a part of the accepted send went to a region other than its user's home (the
	// gateway failed the user over).
	failedOver bool
}

// attempt is one HTTP request of a send.
type attempt struct {
	start   time.Time
	latency time.Duration
	ok      bool // 202 or 409
	timeout bool
	regions []string // of the accepted send's parts
	answer  string   // of a failed attempt: "503 kafka_unavailable", "timeout", "no answer"
}

type load struct {
	c     *client
	o     Options
	round int
	users []string

	ctx      context.Context // the run's: a send in flight stops retrying when it ends
	mu       sync.Mutex
	sends    []*send
	attempts []attempt
	stopped  bool
}

func newLoad(c *client, o Options, round int, users []string) *load {
	return &load{c: c, o: o, round: round, users: users}
}

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sends)
}

func (l *load) stopNew() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
}

// run starts sends at the rate until ctx ends, then waits for those in flight (each retries
// until accepted or GiveUp passed, whatever ctx).
func (l *load) run(ctx context.Context) {
	every := time.Duration(float64(time.Second) / l.o.Rate)
	t := time.NewTicker(every)
	defer t.Stop()
	var wg sync.WaitGroup
	for n := 0; ; n++ {
		l.mu.Lock()
		if l.stopped {
			l.mu.Unlock()
			break
		}
		s := &send{n: n, user: l.users[n%len(l.users)], home: homeRegion(n % len(l.users)), channel: channels[n%len(channels)], tier: tiers[(n/len(channels))%len(tiers)], first: time.Now()}
		l.sends = append(l.sends, s)
		l.mu.Unlock()
		wg.Add(1)
		go func() { defer wg.Done(); l.do(s) }()
		select {
		case <-ctx.Done():
		case <-t.C:
			continue
		}
		break
	}
	wg.Wait()
}

// category is what a send of tier is: the transactional ones are one-time codes.
func category(tier string) string {
	if tier == "transactional" {
		return "otp"
	}
	return "faults"
}

// do sends s until it is accepted, refused, or GiveUp passed, with one idempotency key.
func (l *load) do(s *send) {
	body := map[string]any{
		"type": s.tier, "category": category(s.tier), "title": "Fault suite",
		"body":            "Message " + marker(l.o.RunID, l.round, s.n) + " of the fault suite",
		"recipients":      []string{s.user},
		"channels":        []string{s.channel},
		"idempotency_key": fmt.Sprintf("faults-%s-%d-%d", l.o.RunID, l.round, s.n),
	}
	waits := clientRetry.Start()
	giveUp := s.first.Add(l.o.GiveUp)
	for {
		a, code, retryAfter, id := l.c.send(body)
		l.mu.Lock()
		l.attempts = append(l.attempts, a)
		switch {
		case a.ok:
			s.accepted, s.acceptedAt, s.notificationID = true, a.start.Add(a.latency), id
			s.failedOver = slices.ContainsFunc(a.regions, func(r string) bool { return r != s.home })
		case code >= 400 && code < 500 && code != 429 && code != 408:
			s.refused = true
		}
		l.mu.Unlock()
		if a.ok || s.refused {
			return
		}
		wait := waits.Next()
		if retryAfter > 0 {
			wait = max(wait, min(retryAfter, clientRetry.Max))
		}
		if time.Now().Add(wait).After(giveUp) {
			l.mu.Lock()
			s.gaveUp = true
			l.mu.Unlock()
			return
		}
		if sleep(l.ctx, wait) != nil {
			l.mu.Lock()
			s.gaveUp = true
			l.mu.Unlock()
			return
		}
	}
}

// clientRetry is the client's wait between two attempts of a send: exponential from 200 ms to
// 20 s with jitter (half to one and a half times the step), at least the server's Retry-After
// (up to 20 s). A client population retrying every few seconds at most kept a restarted
// gateway's store pool saturated (every request waiting for a connection until the client gave
// up on it), which is what clients that follow the usual guidance (exponential backoff to tens
// of seconds) do not.
var clientRetry = retry.Backoff{Initial: 200 * time.Millisecond, Max: 20 * time.Second, Jitter: 0.5}

// undelivered lists the accepted sends not delivered yet (sims: deliveries per send number at
// the providers; inbox: in-app items per send number, nil to leave in-app sends out).
func (l *load) channelOf(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sends[n].channel
}

func (l *load) undelivered(sims, inbox map[int]int, skipInApp bool) []*send {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*send
	for _, s := range l.sends {
		if !s.accepted {
			continue
		}
		if s.channel == "in_app" {
			if skipInApp {
				continue
			}
			if inbox[s.n] == 0 {
				out = append(out, s)
			}
			continue
		}
		if sims[s.n] == 0 {
			out = append(out, s)
		}
	}
	return out
}

func (l *load) tally(res *Result, sims map[int]int, firsts map[int]time.Time, inbox map[int]int, injected, back time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	res.Sent = len(l.sends)
	for _, s := range l.sends {
		n := sims[s.n]
		if s.channel == "in_app" {
			n = inbox[s.n]
		}
		switch {
		case s.refused:
			res.Refused++
		case !s.accepted:
			res.GaveUp++
			if n > 0 {
				res.DeliveredUnaccepted++
			}
			continue
		}
		if !s.accepted {
			continue
		}
		res.Accepted++
		switch {
		case n == 0 && s.failedOver:
			res.LostFailover++
			if len(res.Examples) < 8 {
				res.Examples = append(res.Examples, fmt.Sprintf("lost in failover: send %d (%s %s to %s, home %s, notification %s)", s.n, s.tier, s.channel, s.user, s.home, s.notificationID))
			}
		case n == 0:
			res.Lost++
			if len(res.Examples) < 5 {
				res.Examples = append(res.Examples, fmt.Sprintf("lost: send %d (%s %s to %s, notification %s, accepted %s)", s.n, s.tier, s.channel, s.user, s.notificationID, s.acceptedAt.UTC().Format("15:04:05.000")))
			}
		case n == 1:
			res.DeliveredOnce++
		default:
			res.Duplicated++
			res.duplicatedSends = append(res.duplicatedSends, s.n)
			if len(res.Examples) < 5 {
				res.Examples = append(res.Examples, fmt.Sprintf("duplicated %dx: send %d (%s %s to %s, notification %s)", n, s.n, s.tier, s.channel, s.user, s.notificationID))
			}
		}
	}
	answers := map[string]int{}
	for _, a := range l.attempts {
		if !a.ok {
			res.APIErrors++
			answers[a.answer]++
		}
		if a.timeout {
			res.Unanswered++
		}
		if a.timeout || a.latency > l.o.Deadline {
			res.PastDeadline++
			if res.PastDeadline <= 3 {
				answer := a.answer
				if a.ok {
					answer = "accepted"
				}
				res.Examples = append(res.Examples, fmt.Sprintf("past the deadline: a request sent %s answered after %s (%s)",
					a.start.UTC().Format("15:04:05.000"), secs(a.latency), answer))
			}
		}
		if !a.start.Before(injected.Add(-time.Second)) && a.start.Before(back.Add(10*time.Second)) {
			res.Worst = max(res.Worst, a.latency)
		}
	}
	if len(answers) > 0 {
		keys := slices.SortedFunc(maps.Keys(answers), func(a, b string) int { return cmp.Or(answers[b]-answers[a], strings.Compare(a, b)) })
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s x%d", k, answers[k])
		}
		res.Examples = append(res.Examples, "API errors by answer: "+strings.Join(parts, ", "))
	}
	// Recovery, from the providers' clocks (in-app items carry no delivery time).
	flowing, drained := time.Duration(-1), time.Duration(0)
	recoveredBacklog := true
	var last *send // the backlog's last delivery
	for _, s := range l.sends {
		if !s.accepted || s.channel == "in_app" {
			continue
		}
		at, ok := firsts[s.n]
		if !s.first.Before(back) && ok {
			if d := at.Sub(back); flowing < 0 || d < flowing {
				flowing = max(d, 0)
			}
		}
		if s.acceptedAt.Before(back) {
			if !ok {
				recoveredBacklog = false
				continue
			}
			if d := at.Sub(back); d > drained {
				drained, last = d, s
			}
		}
	}
	res.Flowing, res.Drained = max(flowing, 0), drained
	res.OTPP99, res.OTPs = otpP99(l.sends, firsts)
	if res.OTPP99 >= MaxOTPP99 {
		// The slowest few, to follow through the logs and the status endpoint.
		var slow []*send
		for _, s := range l.sends {
			if at, ok := firsts[s.n]; ok && s.accepted && s.tier == "transactional" && s.channel != "in_app" && at.Sub(s.acceptedAt) >= res.OTPP99 {
				slow = append(slow, s)
			}
		}
		slices.SortFunc(slow, func(a, b *send) int { return cmp.Compare(firsts[b.n].Sub(b.acceptedAt), firsts[a.n].Sub(a.acceptedAt)) })
		for _, s := range slow[:min(len(slow), 3)] {
			res.Examples = append(res.Examples, fmt.Sprintf("slow OTP: send %d (%s to %s, notification %s), accepted %s, provider %s",
				s.n, s.channel, s.user, s.notificationID, s.acceptedAt.UTC().Format("15:04:05.000"), firsts[s.n].UTC().Format("15:04:05.000")))
		}
	}
	if last != nil && drained > MaxRecovery/2 {
		res.Examples = append(res.Examples, fmt.Sprintf("backlog's last delivery: send %d (%s %s to %s, notification %s), accepted %s, delivered %s",
			last.n, last.tier, last.channel, last.user, last.notificationID, last.acceptedAt.UTC().Format("15:04:05.000"), firsts[last.n].UTC().Format("15:04:05.000")))
	}
	res.Recovered = flowing >= 0 && recoveredBacklog
}

// otpP99 is the 99th percentile (nearest rank) of accepted -> first provider receipt over the
// accepted transactional sends a provider received (in-app items carry no delivery time), and
// how many there were. A receipt before the acceptance (the answer was slower than the
// delivery) counts as 0.
func otpP99(sends []*send, firsts map[int]time.Time) (time.Duration, int) {
	var d []time.Duration
	for _, s := range sends {
		if !s.accepted || s.tier != "transactional" || s.channel == "in_app" {
			continue
		}
		if at, ok := firsts[s.n]; ok {
			d = append(d, max(at.Sub(s.acceptedAt), 0))
		}
	}
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	return d[(len(d)*99+99)/100-1], len(d)
}

// Print writes the results as a table (Markdown, so docs/reliability.md can take it as is)
// and returns whether every judged row met the targets.
func Print(w io.Writer, results []Result) bool {
	fmt.Fprintln(w, "| fault | sent | accepted | delivered once | lost | duplicated | API errors (retried) | gave up | worst latency during the fault | past deadline | OTP p99 accept → provider | down for | flowing again | backlog drained | result |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	all := true
	for _, r := range results {
		verdict := "PASS"
		if m := r.Misses(); len(m) > 0 {
			verdict = "FAIL: " + joinSemicolon(m)
			if r.Judged() {
				all = false
			}
		}
		if !r.Judged() {
			verdict = "not judged (" + r.Note + "); " + verdict
		}
		if r.RecoveryNote != "" {
			verdict += " (recovery measured, not judged: " + r.RecoveryNote + ")"
		}
		if r.OTPNote != "" {
			verdict += " (OTP p99 measured, not yet judged: " + r.OTPNote + ")"
		}
		if r.LatencyNote != "" && (r.OTPJudged || r.RecoveryNote == "") {
			verdict += " (latency measured, not judged: " + r.LatencyNote + ")"
		}
		recov := func(d time.Duration) string {
			if !r.Recovered {
				return "never"
			}
			return secs(d)
		}
		dup := fmt.Sprint(r.Duplicated)
		if r.Duplicated > 0 {
			dup += fmt.Sprintf(" (%.3f%%; accepted twice %d, repeated %d", pct(r.Duplicated, r.Accepted), r.DupAcceptedTwice, r.DupRepeated)
			if r.DupAtKill > 0 {
				dup += fmt.Sprintf("; provider took %d at the kill, not judged", r.DupAtKill)
			}
			dup += ")"
		}
		gave := fmt.Sprint(r.GaveUp)
		if r.DeliveredUnaccepted > 0 {
			gave += fmt.Sprintf(" (%d delivered)", r.DeliveredUnaccepted)
		}
		if r.Refused > 0 {
			gave += fmt.Sprintf(", %d refused", r.Refused)
		}
		lost := fmt.Sprint(r.Lost)
		if r.LostFailover > 0 {
			lost += fmt.Sprintf(" (+%d failed over)", r.LostFailover)
		}
		otp := "-"
		if r.OTPs > 0 {
			otp = fmt.Sprintf("%s (%d)", secs(r.OTPP99), r.OTPs)
			if !r.OTPJudged || r.LatencyNote != "" {
				otp += ", not judged"
			}
		}
		past := fmt.Sprint(r.PastDeadline)
		if r.Unanswered > 0 {
			past += fmt.Sprintf(" (%d never answered)", r.Unanswered)
		} else if r.PastDeadline > 0 && r.LatencyNote != "" {
			past += ", all answered, not judged"
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Fault, r.Sent, r.Accepted, r.DeliveredOnce, lost, dup, r.APIErrors, gave, secs(r.Worst), past,
			otp, secs(r.DownFor), recov(r.Flowing), recov(r.Drained), verdict)
	}
	for _, r := range results {
		if r.FromStatus > 0 {
			fmt.Fprintf(w, "  %s: %d deliveries read from the status endpoint (accepted by the simulators just before they were killed, whose records died with them)\n", r.Fault, r.FromStatus)
		}
		for _, e := range r.Examples {
			fmt.Fprintf(w, "  %s: %s\n", r.Fault, e)
		}
	}
	return all
}

// Failed names the judged rows that missed a target, each with its misses: the last line of a
// run that failed, so a log's tail says what failed.
func Failed(results []Result) string {
	var out []string
	for _, r := range results {
		if m := r.Misses(); r.Judged() && len(m) > 0 {
			out = append(out, r.Fault+" ("+joinSemicolon(m)+")")
		}
	}
	return joinSemicolon(out)
}

func joinSemicolon(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += "; "
		}
		out += x
	}
	return out
}

func secs(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// Select returns the faults named (all for "all"), in the suite's order.
func Select(names []string) ([]Fault, error) {
	if slices.Contains(names, "all") {
		return Faults, nil
	}
	var out []Fault
	for _, n := range names {
		i := slices.IndexFunc(Faults, func(f Fault) bool { return f.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("unknown fault %q", n)
		}
		out = append(out, Faults[i])
	}
	return out, nil
}
