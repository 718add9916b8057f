//go:build integration

package scan_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"

	"github.com/herald-notify/herald/platform/cassandra"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/redis"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/deadletter"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/erasure"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/region/userkeys"
	"github.com/herald-notify/herald/residency"
	"github.com/herald-notify/herald/residency/scan"
)

// world is a private gateway directory and private regions, migrated as `herald migrate` does.
type world struct {
	secret  []byte
	dirDB   *pgxpool.Pool
	regions map[string]*regionStores
}

type regionStores struct {
	cfg   region.Config
	pg    *pgxpool.Pool
	cass  *gocql.Session
	rdb   *goredis.Client
	kafka *kafka.Producer
}

// keys is the region's data-key store under its config's master keyring.
func (r *regionStores) keys() (*userkeys.Keys, error) {
	ring, err := r.cfg.Keyring()
	if err != nil {
		return nil, err
	}
	return userkeys.New(r.pg, ring), nil
}

func (r *regionStores) scanRegion(t testing.TB) scan.Region {
	return scan.Region{Name: r.cfg.Name, Jurisdiction: r.cfg.Jurisdiction, Postgres: r.cfg.Postgres, Cassandra: r.cfg.Cassandra, Redis: r.cfg.Redis, Kafka: r.cfg.Kafka, MasterKeys: testenv.MasterKeyring(t)}
}

// testingRegion migrates a region private to the test, of the given jurisdiction.
func testingRegion(t *testing.T, jurisdiction string) region.Config {
	t.Helper()
	letters := regiontest.Letters()
	c := regiontest.Config(t, "zz-"+letters+"-1", jurisdiction, t.TempDir())
	if err := region.Migrate(testenv.Context(t, 3*time.Minute), c, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	return c
}

func newWorld(t *testing.T, jurisdictions ...string) *world {
	t.Helper()
	ctx := testenv.Context(t, 5*time.Minute)
	w := &world{secret: []byte(strings.Repeat("s3cret-", 6)), regions: map[string]*regionStores{}}
	gc := testenv.Postgres(t)
	var err error
	if w.dirDB, err = postgres.Connect(ctx, gc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.dirDB.Close)
	ddl, err := os.ReadFile(filepath.Join(testenv.Root(), "gateway/schema/postgres/0002_user_directory.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.dirDB.Exec(ctx, string(ddl)); err != nil {
		t.Fatal(err)
	}
	for _, j := range jurisdictions {
		c := testingRegion(t, j)
		rs := &regionStores{cfg: c}
		if rs.pg, err = postgres.Connect(ctx, c.Postgres); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rs.pg.Close)
		if rs.cass, err = cassandra.Connect(ctx, c.Cassandra); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rs.cass.Close)
		if rs.rdb, err = redis.Connect(ctx, c.Redis); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rs.rdb.Close() })
		if rs.kafka, err = kafka.NewProducer(c.Kafka); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rs.kafka.Close() })
		w.regions[j] = rs
	}
	return w
}

// register puts a user in the directory with a jurisdiction and home region.
func (w *world) register(t *testing.T, app, user, jurisdiction, home string) {
	t.Helper()
	_, err := w.dirDB.Exec(t.Context(), `INSERT INTO user_directory (user_key, jurisdiction, home_region, country) VALUES ($1, $2, $3, 'DE')`,
		residency.UserKey(w.secret, app, user), jurisdiction, home)
	if err != nil {
		t.Fatal(err)
	}
}

func (w *world) scan(t *testing.T) *scan.Report {
	t.Helper()
	var regions []scan.Region
	for _, j := range []string{"EU", "US"} {
		regions = append(regions, w.regions[j].scanRegion(t))
	}
	rep, err := scan.Run(testenv.Context(t, 3*time.Minute), regions, scan.Options{
		Secret: w.secret, Directory: scan.PostgresDirectory{DB: w.dirDB}, KafkaRecords: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// planter writes one user's data into one kind of store of a region, as the region's code does.
type planter struct {
	store string // the store name the scan must report; %s is the region name
	plant func(ctx context.Context, r *regionStores, app, user string) error
}

func pgExec(query string) func(ctx context.Context, r *regionStores, app, user string) error {
	return func(ctx context.Context, r *regionStores, app, user string) error {
		_, err := r.pg.Exec(ctx, query, app, user)
		return err
	}
}

func produce(topic func(region string) string, value func(app, user string) any) func(ctx context.Context, r *regionStores, app, user string) error {
	return func(ctx context.Context, r *regionStores, app, user string) error {
		raw, err := json.Marshal(value(app, user))
		if err != nil {
			return err
		}
		return r.kafka.Send(ctx, kafka.Message{Topic: topic(r.cfg.Name), Key: user, Value: raw})
	}
}

func cql(ctx context.Context, r *regionStores, stmts ...string) func(args ...[]any) error {
	return func(args ...[]any) error {
		for i, s := range stmts {
			if err := r.cass.Query(s, args[i]...).WithContext(ctx).Exec(); err != nil {
				return err
			}
		}
		return nil
	}
}

var now = time.Now().UTC()

var planters = []planter{
	{"postgres:users", pgExec(`INSERT INTO users (app_id, user_id, email) VALUES ($1, $2, 'x@example.com')`)},
	{"postgres:preferences", pgExec(`INSERT INTO preferences (app_id, user_id) VALUES ($1, $2)`)},
	{"postgres:devices", pgExec(`INSERT INTO devices (app_id, device_id, user_id, platform, token) VALUES ($1, 'd-' || $2, $2, 'android', 'tok-' || $2)`)},
	{"postgres:topic_subscriptions", pgExec(`INSERT INTO topic_subscriptions (app_id, topic, user_id) VALUES ($1, 'news', $2)`)},
	{"postgres:suppressions", pgExec(`INSERT INTO suppressions (app_id, channel, address, user_id, reason) VALUES ($1, 'email', $2 || '@example.com', $2, 'bounced')`)},
	{"postgres:soft_bounces", pgExec(`INSERT INTO soft_bounces (app_id, channel, address, user_id, notifications, first_at, last_at) VALUES ($1, 'email', $2 || '@example.com', $2, ARRAY['n'], now(), now())`)},
	{"postgres:scheduled_sends", func(ctx context.Context, r *regionStores, app, user string) error {
		ev, _ := json.Marshal(notify.Event{ID: uuid.NewString(), AppID: app, Tier: notify.Social, Recipients: []string{user}, AcceptedAt: now})
		_, err := r.pg.Exec(ctx, `INSERT INTO scheduled_sends (app_id, notification_id, tier, due_at, event, reason) VALUES ($1, 'n', 'social', now(), $2, 'send_at')`, app, ev)
		return err
	}},
	{"postgres:erasures", func(ctx context.Context, r *regionStores, app, user string) error {
		_, err := r.pg.Exec(ctx, `INSERT INTO erasures (erasure_id, app_id, user_id, user_hash, state) VALUES ($1, $2, $3, '\x00', 'pending')`, uuid.New(), app, user)
		return err
	}},
	{"cassandra:notification_log", func(ctx context.Context, r *regionStores, app, user string) error {
		return cql(ctx, r, `INSERT INTO notification_log (app_id, user_id, bucket, created_at, notification_id, body) VALUES (?, ?, 202611, ?, ?, 'hi')`)(
			[]any{app, user, now, uuid.NewString()})
	}},
	{"cassandra:push_content", func(ctx context.Context, r *regionStores, app, user string) error {
		return cql(ctx, r, `INSERT INTO push_content (app_id, user_id, notification_id, created_at, body) VALUES (?, ?, ?, ?, 'hi')`)(
			[]any{app, user, uuid.NewString(), now})
	}},
	{"cassandra:delivery_status", func(ctx context.Context, r *regionStores, app, user string) error {
		id := uuid.NewString()
		return cql(ctx, r, `INSERT INTO notifications (notification_id, app_id, tier) VALUES (?, ?, 'social')`,
			`INSERT INTO delivery_status (notification_id, user_id, channel, state) VALUES (?, ?, 'push', 'queued')`)([]any{id, app}, []any{id, user})
	}},
	{"cassandra:inbox_delivered", func(ctx context.Context, r *regionStores, app, user string) error {
		id := uuid.NewString()
		return cql(ctx, r, `INSERT INTO notifications (notification_id, app_id, tier) VALUES (?, ?, 'social')`,
			`INSERT INTO inbox_delivered (notification_id, user_id, delivered_at) VALUES (?, ?, toTimestamp(now()))`)([]any{id, app}, []any{id, user})
	}},
	{"cassandra:inbox_delivered_sets", func(ctx context.Context, r *regionStores, app, user string) error {
		id := uuid.NewString()
		return cql(ctx, r, `INSERT INTO notifications (notification_id, app_id, tier) VALUES (?, ?, 'social')`,
			`UPDATE inbox_delivered_sets SET users = users + ?, delivered_at = toTimestamp(now()) WHERE notification_id = ? AND chunk = 'c'`)(
			[]any{id, app}, []any{[]string{user}, id})
	}},
	{"cassandra:delivery_attempt", func(ctx context.Context, r *regionStores, app, user string) error {
		id := uuid.NewString()
		return cql(ctx, r, `INSERT INTO notifications (notification_id, app_id, tier) VALUES (?, ?, 'social')`,
			`INSERT INTO delivery_attempt (notification_id, attempt_at, user_id, channel, outcome) VALUES (?, now(), ?, 'email', 'delivered')`)([]any{id, app}, []any{id, user})
	}},
	{"redis:prefs", func(ctx context.Context, r *regionStores, app, user string) error {
		return r.rdb.Set(ctx, r.cfg.Redis.Prefix+"prefs:"+app+":"+user, `{"hard_stop":false}`, time.Hour).Err()
	}},
	{"kafka:%s.notify.social", produce(func(r string) string { return notify.IngressTopic(r, notify.Social) }, func(app, user string) any {
		return notify.Event{ID: uuid.NewString(), AppID: app, Tier: notify.Social, Recipients: []string{user}, AcceptedAt: now}
	})},
	{"kafka:%s.dispatch.social.push", produce(func(r string) string { return notify.DispatchTopic(r, notify.Social, notify.Push) }, func(app, user string) any {
		return notify.Task{NotificationID: uuid.NewString(), AppID: app, UserID: user, Channel: notify.Push, AcceptedAt: now}
	})},
	// Dead letters wrap the task (region/dispatch.Retry).
	{"kafka:%s.dispatch.email.dlq", produce(func(r string) string { return dispatch.DLQTopic(r, notify.Email) }, func(app, user string) any {
		return map[string]any{"task": notify.Task{NotificationID: uuid.NewString(), AppID: app, UserID: user, Channel: notify.Email}, "last_error": "550"}
	})},
	// What the region produces: records sealed under the users' data keys (crypto-shredding),
	// which names them in postgres:user_keys too.
	{"postgres:user_keys", func(ctx context.Context, r *regionStores, app, user string) error {
		k, err := r.keys()
		if err != nil {
			return err
		}
		_, err = k.For(ctx, app, []string{user})
		return err
	}},
	{"kafka:%s.notify.transactional", sealed(func(ctx context.Context, k *userkeys.Keys, region, app, user string) (kafka.Message, error) {
		m, _, err := notify.EventMessage(ctx, k, notify.IngressTopic(region, notify.Transactional),
			notify.Event{ID: uuid.NewString(), AppID: app, Tier: notify.Transactional, Recipients: []string{user}, AcceptedAt: now})
		return m, err
	})},
	{"kafka:%s.dispatch.transactional.sms", sealed(func(ctx context.Context, k *userkeys.Keys, region, app, user string) (kafka.Message, error) {
		return notify.TaskMessage(ctx, k, notify.DispatchTopic(region, notify.Transactional, notify.SMS), notify.Task{NotificationID: uuid.NewString(), AppID: app, Tier: notify.Transactional, UserID: user, Channel: notify.SMS})
	})},
	{"kafka:%s.dispatch.push.dlq", sealed(func(ctx context.Context, k *userkeys.Keys, region, app, user string) (kafka.Message, error) {
		return dispatch.RetryMessage(ctx, k, dispatch.DLQTopic(region, notify.Push),
			dispatch.Retry{Task: notify.Task{NotificationID: uuid.NewString(), AppID: app, UserID: user, Channel: notify.Push}})
	})},
	// A poison event set aside on fan-out's dead-letter topic: the letter carries the sealed
	// record as it was.
	{"kafka:%s.dlq.fanout.social", sealed(func(ctx context.Context, k *userkeys.Keys, region, app, user string) (kafka.Message, error) {
		ev, _, err := notify.EventMessage(ctx, k, notify.IngressTopic(region, notify.Social),
			notify.Event{ID: uuid.NewString(), AppID: app, Tier: notify.Social, Recipients: []string{user}})
		if err != nil {
			return kafka.Message{}, err
		}
		l := deadletter.New(deadletter.FanoutStage(notify.Social), deadletter.MarkPermanent(errors.New("refused"), deadletter.ReasonBadData), 1, now)
		l.Origin = deadletter.Origin{Topic: ev.Topic, Offset: 1, Time: now}
		l.Key, l.Value = []byte(ev.Key), ev.Value
		return l.Message(region)
	})},
	{"kafka:%s.events", sealed(func(ctx context.Context, k *userkeys.Keys, region, app, user string) (kafka.Message, error) {
		b := notify.EventBatch{App: app, Tier: notify.Social, NotificationID: uuid.NewString(), At: now,
			Outcomes: []notify.Outcome{{User: user, Channel: notify.ChannelAll, Stage: notify.StageAccepted}}}
		m, _, err := b.Message(ctx, k, region)
		return m, err
	})},
}

// sealed plants a record sealed with the region's data keys, as the region does.
func sealed(msg func(ctx context.Context, k *userkeys.Keys, region, app, user string) (kafka.Message, error)) func(ctx context.Context, r *regionStores, app, user string) error {
	return func(ctx context.Context, r *regionStores, app, user string) error {
		k, err := r.keys()
		if err != nil {
			return err
		}
		m, err := msg(ctx, k, r.cfg.Name, app, user)
		if err != nil {
			return err
		}
		return r.kafka.Send(ctx, m)
	}
}

func TestResidencyScanFindsUsersStoredOutsideTheirJurisdiction(t *testing.T) {
	w := newWorld(t, "EU", "US")
	eu, us := w.regions["EU"], w.regions["US"]
	ctx := testenv.Context(t, 5*time.Minute)
	// An app id with ':' in it: the Redis key <prefix>prefs:<app>:<user> is ambiguous, and the
	// scan must try every split.
	const app = "acme:mobile"

	// A registered EU user with data in every store of the EU region, and nowhere else.
	w.register(t, app, "ada", "EU", eu.cfg.Name)
	for _, p := range planters {
		if err := p.plant(ctx, eu, app, "ada"); err != nil {
			t.Fatalf("planting %s: %v", p.store, err)
		}
	}
	// A user the directory does not know, and a delivery-log row whose notification is gone.
	if _, err := eu.pg.Exec(ctx, `INSERT INTO users (app_id, user_id) VALUES ($1, 'ghost')`, app); err != nil {
		t.Fatal(err)
	}
	if err := eu.cass.Query(`INSERT INTO delivery_status (notification_id, user_id, channel, state) VALUES ('expired', 'orphan', 'sms', 'delivered')`).WithContext(ctx).Exec(); err != nil {
		t.Fatal(err)
	}

	rep := w.scan(t)
	if !rep.OK() {
		t.Fatalf("EU data in the EU region reported misplaced: %+v", rep.Misplaced)
	}
	read := map[string]scan.StoreStat{}
	for _, s := range rep.Stores {
		if s.Region == eu.cfg.Name {
			read[s.Store] = s
		}
	}
	for _, p := range planters { // the pass means something only if every store was read
		store := strings.ReplaceAll(p.store, "%s", eu.cfg.Name)
		if read[store].Users < 1 {
			t.Errorf("the scan found no user in %s of %s: %+v", store, eu.cfg.Name, read[store])
		}
	}
	if rep.UnregisteredUsers != 1 || len(rep.Unregistered) != 1 || rep.Unregistered[0].User != "ghost" || rep.Unregistered[0].Store != "postgres:users" {
		t.Errorf("unregistered: %d users, %+v; want ghost in postgres:users", rep.UnregisteredUsers, rep.Unregistered)
	}
	if len(rep.Unattributed) != 1 || rep.Unattributed[0].User != "orphan" {
		t.Errorf("unattributed: %+v; want the orphan delivery-status row", rep.Unattributed)
	}

	// Now one registered EU user per kind of store, planted in the US region's store only.
	for i, p := range planters {
		user := fmt.Sprintf("eu-user-%d", i)
		w.register(t, app, user, "EU", eu.cfg.Name)
		if err := p.plant(ctx, us, app, user); err != nil {
			t.Fatalf("planting %s: %v", p.store, err)
		}
	}
	rep = w.scan(t)
	if rep.OK() {
		t.Fatal("the scan passed with EU users' data in the US region")
	}
	byUser := map[string][]scan.Finding{}
	keyFindings := 0
	for _, f := range rep.Misplaced {
		if f.Store == "postgres:user_keys" && f.User != fmt.Sprintf("eu-user-%d", userKeysPlanter()) {
			keyFindings++ // the data key a sealed record's planting made: checked below
			continue
		}
		byUser[f.User] = append(byUser[f.User], f)
	}
	for i, p := range planters {
		t.Run(p.store, func(t *testing.T) {
			user := fmt.Sprintf("eu-user-%d", i)
			want := scan.Finding{
				Sighting:           scan.Sighting{Store: strings.ReplaceAll(p.store, "%s", us.cfg.Name), Region: us.cfg.Name, App: app, User: user},
				RegionJurisdiction: "US", UserJurisdiction: "EU",
			}
			if got := byUser[user]; len(got) != 1 || got[0] != want {
				t.Fatalf("findings for %s: %+v, want exactly %+v", user, got, want)
			}
		})
	}
	if len(rep.Misplaced)-keyFindings != len(planters) || keyFindings != sealedPlanters() {
		t.Errorf("%d findings, %d of them data keys; want %d, one per planted store, and %d data keys: %+v", len(rep.Misplaced), keyFindings,
			len(planters)+sealedPlanters(), sealedPlanters(), rep.Misplaced)
	}
}

func userKeysPlanter() int {
	return slices.IndexFunc(planters, func(p planter) bool { return p.store == "postgres:user_keys" })
}

// sealedPlanters counts the planters writing sealed records (each also makes a data key).
func sealedPlanters() int {
	n := 0
	for _, p := range planters {
		if strings.HasPrefix(p.store, "kafka:") && (strings.HasSuffix(p.store, ".transactional") || strings.HasSuffix(p.store, ".sms") ||
			strings.HasSuffix(p.store, ".push.dlq") || strings.HasSuffix(p.store, ".dlq.fanout.social") || strings.HasSuffix(p.store, ".events")) {
			n++
		}
	}
	return n
}

// TestResidencyScanIsCleanAtOnceAfterAUserIsErasedAndMovedToAnotherJurisdiction follows the
// documented way to move a user: erase them in their EU region, register them in the US. The
// records the EU region's Kafka topics keep for their retention are sealed under the user's
// destroyed data key: the scan, run at once, finds nothing of the user in the EU region.
func TestResidencyScanIsCleanAtOnceAfterAUserIsErasedAndMovedToAnotherJurisdiction(t *testing.T) {
	w := newWorld(t, "EU", "US")
	eu, us := w.regions["EU"], w.regions["US"]
	ctx := testenv.Context(t, 5*time.Minute)
	const app = "acme"
	w.register(t, app, "ada", "EU", eu.cfg.Name)
	sealedRecords := 0
	for _, p := range planters {
		// What a region writes today and its erasure covers. Left out: the plain records of
		// older versions (readable for their retention), the Redis cache and a planted
		// erasure row (other tests' concern), and in-app delivery states planted without the
		// inbox row the region writes with them (the erasure finds them through it).
		switch p.store {
		case "kafka:%s.notify.social", "kafka:%s.dispatch.social.push", "kafka:%s.dispatch.email.dlq", "redis:prefs", "postgres:erasures",
			"cassandra:inbox_delivered", "cassandra:inbox_delivered_sets":
			continue
		}
		if strings.HasPrefix(p.store, "kafka:") {
			sealedRecords++
		}
		if err := p.plant(ctx, eu, app, "ada"); err != nil {
			t.Fatalf("planting %s: %v", p.store, err)
		}
	}
	if rep := w.scan(t); !rep.OK() || rep.Erased != 0 {
		t.Fatalf("before the move: misplaced %+v, erased %d", rep.Misplaced, rep.Erased)
	}

	// The move: erase in the EU region (the region's own erasure service), register in the US.
	svc := &erasure.Service{DB: eu.pg, Cass: eu.cass, Keys: userkeys.New(eu.pg, testenv.MasterKeyring(t)), InboxTTL: 90 * 24 * time.Hour,
		Log: slog.New(slog.DiscardHandler), Interval: time.Second}
	e, err := svc.Request(ctx, app, "ada")
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.RunPending(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := svc.Get(ctx, app, e.ID); err != nil || got.State != "done" {
		t.Fatalf("erasure %+v (%v)", got, err)
	}
	if _, err := w.dirDB.Exec(ctx, `DELETE FROM user_directory WHERE user_key = $1`, residency.UserKey(w.secret, app, "ada")); err != nil {
		t.Fatal(err)
	}
	w.register(t, app, "ada", "US", us.cfg.Name)

	rep := w.scan(t)
	if !rep.OK() {
		t.Fatalf("right after the move the scan finds ada in the EU region: %+v", rep.Misplaced)
	}
	if rep.Erased != sealedRecords {
		t.Errorf("%d users of sealed records counted as erased, want %d (one per sealed record planted)", rep.Erased, sealedRecords)
	}
}
