package scan

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/gocql/gocql"
	"github.com/jackc/pgx/v5"

	"github.com/herald-notify/herald/platform/cassandra"
	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/redis"
	"github.com/herald-notify/herald/region/userkeys"
)

// pgQueries list, per Postgres table holding user ids, its (app, user) pairs
// (region/schema/postgres).
var pgQueries = []struct{ table, query string }{
	{"users", `SELECT DISTINCT app_id, user_id FROM users`},
	{"preferences", `SELECT DISTINCT app_id, user_id FROM preferences`},
	{"devices", `SELECT DISTINCT app_id, user_id FROM devices`},
	{"topic_subscriptions", `SELECT DISTINCT app_id, user_id FROM topic_subscriptions`},
	// A suppressed address keeps the user it was suppressed for.
	{"suppressions", `SELECT DISTINCT app_id, user_id FROM suppressions`},
	{"soft_bounces", `SELECT DISTINCT app_id, user_id FROM soft_bounces`},
	// A deferred send holds its event, recipients included.
	{"scheduled_sends", `SELECT DISTINCT s.app_id, r.user_id FROM scheduled_sends s
		CROSS JOIN LATERAL jsonb_array_elements_text(CASE WHEN jsonb_typeof(s.event->'recipients') = 'array' THEN s.event->'recipients' ELSE '[]'::jsonb END) AS r(user_id)`},
	// The id is kept until the erasure completes.
	{"erasures", `SELECT DISTINCT app_id, user_id FROM erasures WHERE user_id IS NOT NULL`},
	{"analytics_events", `SELECT DISTINCT app, user_id FROM analytics_events`},
	// A webhook delivery's payload names the user its event is about.
	{"webhook_deliveries", `SELECT DISTINCT app_id, user_id FROM webhook_deliveries`},
	// A data key names its user until the erasure destroys it.
	{"user_keys", `SELECT app_id, user_id FROM user_keys`},
	// A workflow run holds its trigger's payload; throttle counts and digests name the user.
	{"workflow_runs", `SELECT DISTINCT app_id, user_id FROM workflow_runs`},
	{"workflow_throttle", `SELECT DISTINCT app_id, user_id FROM workflow_throttle`},
	{"workflow_digests", `SELECT DISTINCT app_id, user_id FROM workflow_digests`},
}

func scanPostgres(ctx context.Context, r Region, c *collector) error {
	pool, err := postgres.Connect(ctx, r.Postgres)
	if err != nil {
		return err
	}
	defer pool.Close()
	var owner string
	if err := pool.QueryRow(ctx, `SELECT jurisdiction FROM region_info`).Scan(&owner); err != nil {
		return fmt.Errorf("database %s: reading region_info: %w", r.Postgres.Database, err)
	}
	if owner != r.Jurisdiction {
		return fmt.Errorf("database %s belongs to jurisdiction %s, not region %s's %s", r.Postgres.Database, owner, r.Name, r.Jurisdiction)
	}
	// The database's replicas: every standby of its server streams the whole server, so each
	// must be in a region of the jurisdiction.
	sbs, err := postgres.Standbys(ctx, pool)
	if err != nil {
		return fmt.Errorf("database %s: %w", r.Postgres.Database, err)
	}
	for _, sb := range sbs {
		if !slices.Contains(c.siblings, sb.Name) {
			return fmt.Errorf("database %s: its server streams to a standby at %s named %q, which is not a region of jurisdiction %s %v",
				r.Postgres.Database, sb.Addr, sb.Name, r.Jurisdiction, c.siblings)
		}
	}
	for _, q := range pgQueries {
		store := "postgres:" + q.table
		st := c.stat(store)
		rows, err := pool.Query(ctx, q.query)
		if err != nil {
			return fmt.Errorf("%s: %w", store, err)
		}
		var app, user string
		_, err = pgx.ForEachRow(rows, []any{&app, &user}, func() error {
			st.Read++
			c.add(store, [2]string{app, user})
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s: %w", store, err)
		}
	}
	return nil
}

// checkReplicaPlacement fails the scan when the keyspace can hold replicas outside the region's
// jurisdiction: a NetworkTopologyStrategy data centre that is not a scanned region of the
// jurisdiction, or a SimpleStrategy keyspace on a cluster of more than one data centre (its
// replicas go to any node). Each region's pass reads its own data centre's replicas (its config's
// local_dc), so with every region scanned every replica is read.
func checkReplicaPlacement(ctx context.Context, r Region, sess *gocql.Session, c *collector) error {
	rep, err := cassandra.KeyspaceReplication(ctx, sess, r.Cassandra.Keyspace)
	if err != nil {
		return err
	}
	if dcs := cassandra.ReplicaDCs(rep); dcs != nil {
		for _, dc := range dcs {
			if !slices.Contains(c.siblings, dc) {
				return fmt.Errorf("keyspace %s places replicas in data centre %s, which is not a region of jurisdiction %s %v",
					r.Cassandra.Keyspace, dc, r.Jurisdiction, c.siblings)
			}
		}
		return nil
	}
	dcs, err := cassandra.DataCentres(ctx, sess)
	if err != nil {
		return err
	}
	if len(dcs) > 1 {
		return fmt.Errorf("keyspace %s is SimpleStrategy on a cluster of data centres %v: its replicas may be in any of them", r.Cassandra.Keyspace, dcs)
	}
	return nil
}

func scanCassandra(ctx context.Context, r Region, c *collector) error {
	sess, err := cassandra.Connect(ctx, r.Cassandra)
	if err != nil {
		return err
	}
	defer sess.Close()
	var owner string
	if err := sess.Query(`SELECT jurisdiction FROM region_info WHERE singleton = true`).WithContext(ctx).Scan(&owner); err != nil {
		return fmt.Errorf("keyspace %s: reading region_info: %w", r.Cassandra.Keyspace, err)
	}
	if owner != r.Jurisdiction {
		return fmt.Errorf("keyspace %s belongs to jurisdiction %s, not region %s's %s", r.Cassandra.Keyspace, owner, r.Name, r.Jurisdiction)
	}
	if err := checkReplicaPlacement(ctx, r, sess, c); err != nil {
		return err
	}

	// The inbox: one partition per (app, user, month).
	st := c.stat("cassandra:notification_log")
	iter := sess.Query(`SELECT DISTINCT app_id, user_id, bucket FROM notification_log`).WithContext(ctx).Iter()
	var app, user string
	var bucket int
	for iter.Scan(&app, &user, &bucket) {
		st.Read++
		c.add("cassandra:notification_log", [2]string{app, user})
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("cassandra:notification_log: %w", err)
	}

	// The content of content-free pushes: one partition per (app, user).
	st = c.stat("cassandra:push_content")
	iter = sess.Query(`SELECT DISTINCT app_id, user_id FROM push_content`).WithContext(ctx).Iter()
	for iter.Scan(&app, &user) {
		st.Read++
		c.add("cassandra:push_content", [2]string{app, user})
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("cassandra:push_content: %w", err)
	}

	// The delivery log names the user, and the app through the notification's row.
	apps := &appLookup{sess: sess, known: map[string]string{}}
	for _, table := range []string{"delivery_status", "inbox_delivered", "inbox_delivered_sets", "delivery_attempt"} {
		store := "cassandra:" + table
		st := c.stat(store)
		var pending [][2]string // (notification id, user) waiting for their app
		flush := func() error {
			if err := apps.resolve(ctx, pending); err != nil {
				return fmt.Errorf("%s: %w", store, err)
			}
			for _, p := range pending {
				c.add(store, [2]string{apps.known[p[0]], p[1]})
			}
			pending = pending[:0]
			return nil
		}
		// inbox_delivered_sets holds a set of users per row; the other tables a user per row.
		query := `SELECT notification_id, user_id FROM ` + table
		if table == "inbox_delivered_sets" {
			query = `SELECT notification_id, users FROM ` + table
		}
		iter := sess.Query(query).WithContext(ctx).Iter()
		var id, user string
		var users []string
		dest := []any{&id, &user}
		if table == "inbox_delivered_sets" {
			dest = []any{&id, &users}
		}
		for iter.Scan(dest...) {
			if table != "inbox_delivered_sets" {
				users = append(users[:0], user)
			}
			for _, u := range users {
				st.Read++
				pending = append(pending, [2]string{id, u})
			}
			users = users[:0]
			if len(pending) >= 500 {
				if err := flush(); err != nil {
					_ = iter.Close()
					return err
				}
			}
		}
		if err := iter.Close(); err != nil {
			return fmt.Errorf("%s: %w", store, err)
		}
		if err := flush(); err != nil {
			return err
		}
	}
	return nil
}

// appLookup finds the app of notifications, a hundred ids per query.
type appLookup struct {
	sess  *gocql.Session
	known map[string]string // "" once the notification row has expired
}

func (a *appLookup) resolve(ctx context.Context, pairs [][2]string) error {
	if len(a.known) > 1_000_000 { // bound the memory of a long scan
		clear(a.known)
	}
	var missing []string
	for _, p := range pairs {
		if _, ok := a.known[p[0]]; !ok {
			a.known[p[0]] = ""
			missing = append(missing, p[0])
		}
	}
	for chunk := range slices.Chunk(missing, 100) {
		iter := a.sess.Query(`SELECT notification_id, app_id FROM notifications WHERE notification_id IN ?`, chunk).WithContext(ctx).Iter()
		var id, app string
		for iter.Scan(&id, &app) {
			a.known[id] = app
		}
		if err := iter.Close(); err != nil {
			return fmt.Errorf("reading notifications: %w", err)
		}
	}
	return nil
}

// scanRedis reads the keys that carry a user id: the preferences cache,
// <prefix>prefs:<app>:<user> (region/prefs). Dedup and sent-task keys hold only hashes, and the
// inbox's live updates are pub/sub channels, not keys.
func scanRedis(ctx context.Context, r Region, c *collector) error {
	rdb, err := redis.Connect(ctx, r.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()
	prefix := r.Redis.Prefix + "prefs:"
	st := c.stat("redis:prefs")
	iter := rdb.Scan(ctx, 0, globEscape(prefix)+"*", 1000).Iterator()
	for iter.Next(ctx) {
		st.Read++
		rest := strings.TrimPrefix(iter.Val(), prefix)
		if cands := splits(rest); len(cands) > 0 {
			c.add("redis:prefs", cands...)
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("redis:prefs: %w", err)
	}
	return nil
}

// kafkaRecord is what the region's topics carry (region/notify): events on
// <region>.notify.<tier> (app_id, recipients), tasks on <region>.dispatch.<channel> (app_id,
// user_id), retries and dead letters on their .retry.N and .dlq topics (the task under
// "task"), and delivery events on <region>.events (app). A sealed record (platform/envelope)
// names its users only inside their wraps: it is opened with the region's data keys.
type kafkaRecord struct {
	AppID      string   `json:"app_id"`
	App        string   `json:"app"`
	Recipients []string `json:"recipients"`
	UserID     string   `json:"user_id"`
	Task       *struct {
		AppID  string `json:"app_id"`
		UserID string `json:"user_id"`
	} `json:"task"`
}

// deadLetter is a record of a stage's dead-letter topic, <region>.dlq.<stage>
// (docs/reliability.md): it carries the original record, sealed as it was, in value.
type deadLetter struct {
	Stage  string `json:"stage"`
	Origin *struct {
		Topic string `json:"topic"`
	} `json:"origin"`
	Value []byte `json:"value"`
}

// originalRecord is the record a dead letter set aside, whose users are those it holds data
// of; any other record is returned as it is.
func originalRecord(value []byte) []byte {
	if envelope.IsSealed(value) {
		return value
	}
	var dl deadLetter
	if json.Unmarshal(value, &dl) != nil || dl.Stage == "" || dl.Origin == nil || dl.Origin.Topic == "" {
		return value
	}
	return dl.Value
}

// kafkaIdle is how long a partition may give nothing before its read is declared stuck.
const kafkaIdle = 15 * time.Second

func scanKafka(ctx context.Context, r Region, c *collector, perPartition int, undecodable, erased *int) error {
	pool, err := postgres.Connect(ctx, r.Postgres)
	if err != nil {
		return fmt.Errorf("database %s (data keys): %w", r.Postgres.Database, err)
	}
	defer pool.Close()
	if r.MasterKeys == nil {
		return fmt.Errorf("region %s: no master keyring (user_keys) to open the data keys with", r.Name)
	}
	lookup := userkeys.New(pool, r.MasterKeys).Lookup
	sc, err := r.Kafka.Sarama()
	if err != nil {
		return err
	}
	// Everything stored counts, aborted transactions' records included.
	sc.Consumer.IsolationLevel = sarama.ReadUncommitted
	client, err := sarama.NewClient(r.Kafka.Brokers, sc)
	if err != nil {
		return fmt.Errorf("connecting to kafka %v: %w", r.Kafka.Brokers, err)
	}
	defer client.Close()
	topics, err := client.Topics()
	if err != nil {
		return fmt.Errorf("listing topics: %w", err)
	}
	slices.Sort(topics)
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return err
	}
	defer consumer.Close()
	for _, topic := range topics {
		if !strings.HasPrefix(topic, r.Name+".") { // every topic of the region is named <region>.…
			continue
		}
		store := "kafka:" + topic
		st := c.stat(store)
		parts, err := client.Partitions(topic)
		if err != nil {
			return fmt.Errorf("%s: %w", store, err)
		}
		for _, p := range parts {
			var keysErr error
			n, err := readPartition(ctx, client, consumer, topic, p, perPartition, func(value []byte) {
				value = originalRecord(value)
				var rec kafkaRecord
				var users []string // the users a sealed record is sealed for, still readable
				content := value
				if envelope.IsSealed(value) {
					o, err := envelope.Open(ctx, value, lookup)
					*erased += o.Erased // users whose key is destroyed: nothing of them is readable
					switch {
					case errors.Is(err, envelope.ErrUnavailable):
						keysErr = err
						return
					case errors.Is(err, envelope.ErrErased):
						return
					case err != nil:
						*undecodable++
						return
					}
					content, users = o.Content, o.Users
				}
				if json.Unmarshal(content, &rec) != nil {
					*undecodable++
					return
				}
				app := cmp.Or(rec.AppID, rec.App)
				if rec.Task != nil {
					app = cmp.Or(rec.Task.AppID, app)
					users = append(users, rec.Task.UserID)
				}
				users = append(append(users, rec.UserID), rec.Recipients...)
				for _, u := range users {
					if u != "" {
						c.add(store, [2]string{app, u})
					}
				}
			})
			st.Read += n
			if err == nil && keysErr != nil {
				err = fmt.Errorf("reading data keys: %w", keysErr)
			}
			if err != nil {
				return fmt.Errorf("%s partition %d: %w", store, p, err)
			}
		}
	}
	return nil
}

// readPartition hands fn the values of the newest limit records of a partition.
func readPartition(ctx context.Context, client sarama.Client, consumer sarama.Consumer, topic string, p int32, limit int, fn func([]byte)) (int, error) {
	newest, err := client.GetOffset(topic, p, sarama.OffsetNewest)
	if err != nil {
		return 0, err
	}
	oldest, err := client.GetOffset(topic, p, sarama.OffsetOldest)
	if err != nil {
		return 0, err
	}
	start := max(oldest, newest-int64(limit))
	read := 0
	// Everything stored is read (read_uncommitted); however many transaction markers close the
	// range, the read ends once only markers are left.
	_, err = kafka.ReadRangeOf(ctx, client, sarama.ReadUncommitted, consumer, topic, p, start, newest, kafkaIdle, func(m *sarama.ConsumerMessage) {
		read++
		fn(m.Value)
	})
	return read, err
}
