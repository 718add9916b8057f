package region

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/herald-notify/herald/platform/cassandra"
	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/platform/health"
	"github.com/herald-notify/herald/platform/httpserver"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/lifecycle"
	"github.com/herald-notify/herald/platform/retry"
	"github.com/herald-notify/herald/region/api"
	"github.com/herald-notify/herald/region/audit"
	"github.com/herald-notify/herald/region/credentials"
	"github.com/herald-notify/herald/region/deadletter"
	"github.com/herald-notify/herald/region/dedup"
	"github.com/herald-notify/herald/region/deliverylog"
	"github.com/herald-notify/herald/region/devices"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/erasure"
	"github.com/herald-notify/herald/region/export"
	"github.com/herald-notify/herald/region/fanout"
	"github.com/herald-notify/herald/region/inbox"
	"github.com/herald-notify/herald/region/lagwatch"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/prefs"
	"github.com/herald-notify/herald/region/profiles"
	"github.com/herald-notify/herald/region/pushstore"
	"github.com/herald-notify/herald/region/receipts"
	"github.com/herald-notify/herald/region/scheduler"
	"github.com/herald-notify/herald/region/suppress"
	"github.com/herald-notify/herald/region/templates"
	"github.com/herald-notify/herald/region/topics"
	"github.com/herald-notify/herald/region/userkeys"
	"github.com/herald-notify/herald/region/users"
	"github.com/herald-notify/herald/region/webhooks"
	"github.com/herald-notify/herald/region/workflows"
)

// ServiceName is the discovery name regions register under.
const ServiceName = "herald-region"

// ThresholdKey is the discovery key that changes the topic fan-out threshold at run time.
func ThresholdKey(region string) string { return "herald/regions/" + region + "/topic_threshold" }

// Run starts the region process with its configured roles and blocks until ctx ends, then
// drains: it leaves discovery, readiness turns 503, in-flight requests finish, consumers stop
// after the event in hand and commit what they finished.
func Run(ctx context.Context, c Config, log *slog.Logger, version string) error {
	log = log.With("region", c.Name)
	if p, ok := gcPercent(c, os.Getenv); ok {
		debug.SetGCPercent(p)
		log.Info("garbage collector target set", "gc_percent", p)
	}
	stores, err := OpenStores(ctx, c)
	if err != nil {
		return err
	}
	defer stores.Close()

	h := health.New(map[string]string{"component": "region", "region": c.Name, "jurisdiction": c.Jurisdiction, "roles": strings.Join(c.Roles, ","), "version": version})
	h.Add("postgres", func(ctx context.Context) error { return stores.PG.Ping(ctx) })
	h.Add("cassandra", func(ctx context.Context) error {
		return stores.Cass.Query(`SELECT region FROM region_info WHERE singleton = true`).WithContext(ctx).Exec()
	})
	h.Add("redis", func(ctx context.Context) error { return stores.Redis.Ping(ctx).Err() })
	h.Add("kafka", func(ctx context.Context) error { return kafka.Ping(ctx, stores.Kafka) })

	// Each path that produces has its own producer (its own connections and in-flight
	// request), so a topic fan-out pumping a million tasks never queues an OTP's accept or its
	// fan-out behind it.
	var producers []*kafka.Producer
	defer func() {
		for _, p := range producers {
			_ = p.Close()
		}
	}()
	producerFor := func(role string) *kafka.Producer {
		if !slices.Contains(c.Roles, role) || err != nil {
			return nil
		}
		var p *kafka.Producer
		if p, err = kafka.NewProducer(c.Kafka); err == nil {
			producers = append(producers, p)
		}
		return p
	}
	apiProducer := producerFor(RoleAPI)
	schedProducer := producerFor(RoleScheduler)
	tierProducers := map[string]*kafka.Producer{}
	for _, tier := range notify.Tiers {
		tierProducers[tier] = producerFor(RoleFanout)
	}
	if err != nil {
		return err
	}
	dlog := deliverylog.New(stores.Cass, c.LogTTL)
	prefsCache := prefs.NewCache(stores.PG, stores.Redis, c.Redis.Prefix, 5*time.Minute, log)
	hub := inbox.NewHub(stores.Redis, c.Redis.Prefix, log)
	ring, err := c.Keyring()
	if err != nil {
		return err
	}
	hooks := &webhooks.Store{DB: stores.PG, Keys: ring}    // endpoints wrap their secrets under the master keyring
	creds := &credentials.Store{DB: stores.PG, Keys: ring} // and so do the apps' provider credentials
	// Seal the personal part of every Kafka record (crypto-shredding); the sweep rewraps the
	// webhook secrets and the provider credentials too.
	keys, err := openUserKeys(ctx, c, stores, log, userkeys.Table{Name: "webhook_endpoints", Wrapped: hooks},
		userkeys.Table{Name: "provider_credentials", Wrapped: creds})
	if err != nil {
		return err
	}
	eraser := &erasure.Service{DB: stores.PG, Cass: stores.Cass, Prefs: prefsCache, Keys: keys, KeyCacheTTL: userkeys.CacheTTL,
		InboxTTL: c.LogTTL, Log: log, Interval: time.Second}
	sched := scheduler.New(stores.PG, c.Name)

	scheme, serverTLS := "https", (*tls.Config)(nil)
	if c.TLS.InsecurePlaintext {
		scheme = "http"
		log.Warn("INSECURE: the region API serves plain HTTP (tls.insecure_plaintext); anyone who reaches its port and holds the internal token can act as any app. Only for a region whose TLS ends in front of it.", "listen", c.Listen)
	} else if serverTLS, err = c.TLS.Server().TLS(); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", c.Listen, err)
	}
	router := NewRouter(h)
	if slices.Contains(c.Roles, RoleAPI) {
		unsubKeys, err := unsubscribeKeyring(ctx, stores, c.Name)
		if err != nil {
			return err
		}
		receiptKeys, err := receiptsKeyring(ctx, stores, c.Name)
		if err != nil {
			return err
		}
		emailKeys, err := emailReceiptsKeyring(ctx, stores, c.Name)
		if err != nil {
			return err
		}
		authTokens := c.Dispatch.SMS.Twilio.AuthTokens()
		userStore := users.NewStore(stores.PG)
		prefStore := prefs.NewStore(stores.PG)
		srv := &api.Server{
			Region: c.Name, Jurisdiction: c.Jurisdiction, InternalToken: c.InternalToken, DB: stores.PG, Producer: apiProducer,
			Templates: templates.NewStore(stores.PG), Workflows: workflows.NewStore(stores.PG), Topics: topics.NewStore(stores.PG), Users: userStore,
			Suppressions: suppress.New(stores.PG, c.Dispatch.Suppression.SoftBounceLimit, c.Dispatch.Suppression.SoftBounceWindow),
			Devices:      devices.NewStore(stores.PG), Prefs: prefStore, PrefsCache: prefsCache, Erasure: eraser, Inbox: inbox.New(stores.Cass, c.LogTTL), PushContent: pushstore.New(stores.Cass, c.LogTTL), Streams: hub,
			Deliveries: dlog, Keys: keys, Audit: audit.NewStore(stores.PG), Logger: log, Unsubscribe: unsubKeys, RequestTimeout: c.RequestTimeout,
			Outbox: sched, KafkaWait: c.KafkaWait,
			Webhooks: hooks, WebhooksAllowLoopbackHTTP: c.Webhooks.AllowLoopbackHTTP,
			Credentials: creds, CheckCredential: c.Dispatch.AppCredentials.Check,
			Receipts: &receipts.Service{Region: c.Name, Keys: receiptKeys, Deliveries: dlog, Producer: apiProducer, Sealer: keys,
				AuthToken: twilioAuthToken(authTokens, creds, c.Jurisdiction),
				Suppress:  suppress.New(stores.PG, c.Dispatch.Suppression.SoftBounceLimit, c.Dispatch.Suppression.SoftBounceWindow),
				Users:     userStore, Jurisdiction: c.Jurisdiction, ProduceWait: c.KafkaWait,
				EmailKeys: emailKeys, Prefs: prefStore, PrefsCache: prefsCache},
		}
		srv.Register(router)
	}

	disc, err := discovery.Open(c.Discovery)
	if err != nil {
		ln.Close()
		return err
	}
	if err := checkPolicyReplicas(ctx, disc, c); err != nil {
		ln.Close()
		return err
	}
	if err := checkStandbys(ctx, stores.PG, disc, c); err != nil {
		ln.Close()
		return err
	}
	meta := map[string]string{"region": c.Name, "jurisdiction": c.Jurisdiction, "roles": strings.Join(c.Roles, ",")}
	inst, stopDiscovery, err := discovery.RegisterListener(ctx, disc, ServiceName, c.Name, scheme, ln, meta, c.Discovery.TTL)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopDiscovery()

	httpSrv := &httpserver.Server{
		Name: "region-http", Handler: requireCaller(c.Name, c.TLS.InsecurePlaintext, log, router), Log: log, Listener: ln, TLS: serverTLS,
		BeforeShutdown: func() { stopDiscovery(); h.Drain() },
		ReadyDelay:     drainDelay,
	}
	tasks := []lifecycle.Task{{Name: "http", Run: httpSrv.Run}, {Name: "user-keys-sweep", Run: func(ctx context.Context) error {
		return keys.Run(ctx, c.Name, c.UserKeys.RewrapInterval, log)
	}}}
	if slices.Contains(c.Roles, RoleAPI) {
		tasks = append(tasks, lifecycle.Task{Name: "inbox-streams", Run: hub.Run})
	}

	if slices.Contains(c.Roles, RoleFanout) {
		batch := c.Fanout.InboxBatch
		if batch == 0 {
			peers, err := cassandra.Peers(ctx, stores.Cass)
			if err != nil {
				return err
			}
			batch = 1
			if peers == 0 {
				batch = fanout.SingleNodeInboxBatch
			}
			log.Info("inbox batch size chosen", "cassandra_peers", peers, "inbox_batch", batch)
		}
		settings := c.Fanout.Settings(c.Name, batch)
		var fanouts []*fanout.Fanout
		for _, tier := range notify.Tiers {
			fo := fanout.New(settings, c.Fanout.TopicThreshold, fanout.Deps{
				Profiles: profiles.New(stores.PG, prefsCache), BulkProfiles: profiles.NewDirect(stores.PG), Subscribers: topics.NewStore(stores.PG), Scheduler: sched, Producer: tierProducers[tier],
				Inbox: inbox.New(stores.Cass, c.LogTTL), Publisher: inbox.NewPublisher(stores.Redis, c.Redis.Prefix), Deliveries: dlog, Dedup: dedup.New(stores.Redis, c.Redis.Prefix, c.DedupTTL), Keys: keys, Logger: log,
			})
			fanouts = append(fanouts, fo)
			cons := &fanout.Consumer{
				Tier: tier, Topic: IngressTopic(c.Name, tier), Group: c.Name + ".fanout." + tier,
				Kafka: c.Kafka, Cfg: c.Fanout.Tiers[tier], Fanout: fo, Log: log,
				TxnID: c.Name + ".fanout." + tier + "." + inst.ID,
			}
			tasks = append(tasks, lifecycle.Task{Name: "fanout-" + tier, Run: cons.Run})
		}
		tasks = append(tasks, lifecycle.Task{Name: "prefs-evictions", Run: prefsCache.Listen})
		topicThreshold.WithLabelValues(c.Name).Set(float64(c.Fanout.TopicThreshold))
		tasks = append(tasks, lifecycle.Task{Name: "topic-threshold-watch", Run: func(ctx context.Context) error {
			watchThreshold(ctx, disc, c.Name, fanouts, log)
			return nil
		}})
	}
	deadletter.Register(c.Name, DeadLetterStages())
	if slices.Contains(c.Roles, RoleScheduler) {
		p := &scheduler.Poller{
			Store: sched, Producer: schedProducer, Cfg: c.Scheduler, Keys: keys, Log: log,
			Topic:       func(tier string) string { return IngressTopic(c.Name, tier) },
			DeadLetters: &deadletter.Writer{Region: c.Name, Producer: schedProducer, Log: log.With("role", "scheduler")},
		}
		tasks = append(tasks, lifecycle.Task{Name: "scheduler", Run: p.Run})
		tasks = append(tasks, lifecycle.Task{Name: "erasure", Run: eraser.Run})
		sender := &workflowSender{region: c.Name, producer: schedProducer, keys: keys}
		status := &workflowStatus{deliveries: dlog, inbox: inbox.New(stores.Cass, c.LogTTL)}
		for _, tier := range notify.Tiers {
			// A runner per tier, so a marketing workflow's backlog never delays a transactional one.
			wr := &workflows.Runner{DB: stores.PG, Region: c.Name, Tier: tier, Workflows: workflows.NewStore(stores.PG),
				Templates: templates.NewStore(stores.PG), Prefs: prefs.NewStore(stores.PG), Sender: sender, Status: status,
				Log: log.With("role", "workflows"), Batch: c.Workflows.Batch, Workers: c.Workflows.Workers, Poll: c.Workflows.Poll}
			tasks = append(tasks, lifecycle.Task{Name: "workflows-" + tier, Run: wr.Run})
		}
		sweeper := &workflows.Sweeper{DB: stores.PG, Region: c.Name, Retention: c.Workflows.Retention, SweepInterval: c.Workflows.SweepInterval,
			Log: log.With("role", "workflows")}
		tasks = append(tasks, lifecycle.Task{Name: "workflows-sweep", Run: sweeper.Run})
	}
	if slices.Contains(c.Roles, RoleDispatch) {
		pc, err := loadPushContent(ctx, disc, c.PolicyKey, c.Jurisdiction, log)
		if err != nil {
			return err
		}
		unsubKeys, err := unsubscribeKeyring(ctx, stores, c.Name)
		if err != nil {
			return err
		}
		receiptKeys, err := receiptsKeyring(ctx, stores, c.Name)
		if err != nil {
			return err
		}
		emailKeys, err := emailReceiptsKeyring(ctx, stores, c.Name)
		if err != nil {
			return err
		}
		d, err := dispatch.New(c.Dispatch, c.Name, dispatch.Deps{
			Kafka: c.Kafka, Deliveries: dlog, Devices: dispatch.NewDeviceStore(stores.PG), Keys: keys, Logger: log,
			KeysConcurrency: max(1, c.Postgres.MaxConns/2),             // the rest of the pool stays free for transactional work
			Redis:           stores.Redis, RedisPrefix: c.Redis.Prefix, // the shared provider rate limits
			MinimalPush: pc.minimal, PushContent: pushstore.New(stores.Cass, c.LogTTL),
			UnsubscribeLink: unsubscribeLink(unsubKeys, pc.gatewayURL, log),
			StatusCallback:  statusCallback(receiptKeys, pc.gatewayURL, log),
			EmailReceipt:    emailReceipt(emailKeys, pc.gatewayURL, log),
			Suppress:        suppress.New(stores.PG, c.Dispatch.Suppression.SoftBounceLimit, c.Dispatch.Suppression.SoftBounceWindow),
			Credentials:     creds, Jurisdiction: c.Jurisdiction, // the apps' own provider accounts
		})
		if err != nil {
			return err
		}
		tasks = append(tasks, lifecycle.Task{Name: "dispatch", Run: d.Run})
		tasks = append(tasks, lifecycle.Task{Name: "push-content-policy", Run: func(ctx context.Context) error {
			pc.watch(ctx, disc, c.PolicyKey, log)
			return nil
		}})
	}
	if slices.Contains(c.Roles, RoleExporter) {
		ex, err := export.New(c.Name, c.Export, c.Kafka, stores.PG, keys, log)
		if err != nil {
			return err
		}
		tasks = append(tasks, lifecycle.Task{Name: "exporter", Run: ex.Run})
	}
	if slices.Contains(c.Roles, RoleWebhooks) {
		wlog := log.With("role", RoleWebhooks)
		cons := &webhooks.Consumer{Region: c.Name, Jurisdiction: c.Jurisdiction, Kafka: c.Kafka, Store: hooks, Keys: keys,
			CacheTTL: c.Webhooks.EndpointCacheTTL, Retry: c.Webhooks.FailureRetry, Log: wlog}
		deliverer := &webhooks.Deliverer{Region: c.Name, Store: hooks, Cfg: c.Webhooks, Client: webhooks.NewClient(c.Webhooks.Timeout, c.Webhooks.AllowLoopbackHTTP), Log: wlog}
		// The retentions must outlast the events topic's, as the brokers apply it; when they
		// cannot be asked, Validate's rule (24 h, the brokers' setting in stack/ and terraform/)
		// stands.
		events := notify.EventsTopic(c.Name)
		if r, forever, err := kafka.TopicRetention(ctx, c.Kafka, events); err != nil {
			wlog.Warn("reading the events topic's retention failed; the webhook retentions are checked against 24h only", "topic", events, "err", err)
		} else if err := c.Webhooks.CheckTopicRetention(events, r, forever); err != nil {
			return config.Prefix("webhooks", err)
		}
		// Every region of the jurisdiction sweeps its shared database; they skip each other's rows.
		sweeper := &webhooks.Sweeper{Region: c.Name, Store: hooks, Cfg: c.Webhooks, Log: wlog}
		tasks = append(tasks, lifecycle.Task{Name: "webhooks-consumer", Run: cons.Run}, lifecycle.Task{Name: "webhooks-deliverer", Run: deliverer.Run},
			lifecycle.Task{Name: "webhooks-retention", Run: sweeper.Run})
	}
	if slices.ContainsFunc(c.Roles, func(r string) bool {
		return r == RoleFanout || r == RoleDispatch || r == RoleExporter || r == RoleWebhooks
	}) {
		lw := &lagwatch.Watcher{Region: c.Name, Kafka: c.Kafka, Interval: c.ConsumerLagInterval, Log: log}
		tasks = append(tasks, lifecycle.Task{Name: "consumer-lag", Run: lw.Run})
	}
	log.Info("region started", "addr", inst.Address, "scheme", scheme, "roles", c.Roles)
	return lifecycle.Run(ctx, log, tasks...)
}

// topicThreshold is the fan-out-on-read threshold in force: the config's until the discovery
// key sets another.
var topicThreshold = promauto.NewGaugeVec(prometheus.GaugeOpts{
	Name: "herald_fanout_topic_threshold",
	Help: "Subscriber count above which a topic send fans out on read, as in force in this process (config, then the discovery key).",
}, []string{"region"})

// watchRetry is the wait before a failed watch of the discovery backend is made again.
var watchRetry = retry.Backoff{Initial: 500 * time.Millisecond, Max: 30 * time.Second, Jitter: 0.5}

// watchThreshold applies changes of the topic threshold key until ctx ends.
func watchThreshold(ctx context.Context, disc discovery.Backend, region string, fos []*fanout.Fanout, log *slog.Logger) {
	key := ThresholdKey(region)
	var index uint64
	waits := watchRetry.Start()
	for ctx.Err() == nil {
		v, idx, err := disc.Watch(ctx, key, index)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
				wait := waits.Next()
				log.Warn("watching topic threshold", "err", err, "backoff", wait)
				retry.Sleep(ctx, wait)
			}
			continue
		}
		waits.Reset()
		if idx != index && v != nil {
			n, perr := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
			if perr != nil || n < 0 {
				log.Warn("ignoring invalid topic threshold", "key", key, "value", string(v))
			} else {
				for _, fo := range fos {
					if old := fo.TopicThreshold.Swap(n); old != n {
						log.Info("topic threshold changed", "from", old, "to", n)
					}
				}
				topicThreshold.WithLabelValues(region).Set(float64(n))
			}
		}
		index = idx
	}
}

// drainDelay is how long readiness reports draining before the listener closes.
var drainDelay = 500 * time.Millisecond

// NewRouter builds the region's HTTP handler: health and metrics; the API role adds its routes.
func NewRouter(h *health.Health) *gin.Engine {
	r := httpserver.Engine()
	r.Use(gin.Recovery(), httpserver.Strict)
	h.Mount(r)
	return r
}

// gcPercent returns the collector target c asks for, unless GOGC in the environment already
// set one (the operator's word wins).
func gcPercent(c Config, getenv func(string) string) (int, bool) {
	if getenv("GOGC") != "" {
		return 0, false
	}
	return c.GCPercent, true
}
