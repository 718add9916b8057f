// Package scan checks that each region's stores hold only users of the region's jurisdiction.
// It reads every store a region keeps user ids in (Postgres tables, Cassandra tables, the
// newest records of the region's Kafka topics, Redis keys), turns each (app, user) found into
// its user key (residency.UserKey) and looks the key up in the gateway's user directory. A user
// whose directory jurisdiction is not the region's is misplaced data.
//
// It talks to the stores by their raw table, topic and key names rather than through the
// region's packages, so it sees what is stored, not what the code means to store.
package scan

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/platform/cassandra"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/masterkey"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/redis"
	"github.com/herald-notify/herald/residency"
)

// Region is one region's stores, as its config names them.
type Region struct {
	Name         string
	Jurisdiction string
	Postgres     postgres.Config
	Cassandra    cassandra.Config
	Redis        redis.Config // Prefix is the region's key prefix
	Kafka        kafka.Config
	// MasterKeys is the region's master keyring (its config's user_keys): the data keys in
	// user_keys are wrapped under it, and the scan opens sealed Kafka records with them.
	MasterKeys *masterkey.Keyring
}

// Directory answers which jurisdiction holds each user key; keys it does not know are left out.
type Directory interface {
	Jurisdictions(ctx context.Context, keys []string) (map[string]string, error)
}

// PostgresDirectory reads the gateway's user_directory table.
type PostgresDirectory struct{ DB *pgxpool.Pool }

// Jurisdictions looks keys up, a thousand at a time.
func (d PostgresDirectory) Jurisdictions(ctx context.Context, keys []string) (map[string]string, error) {
	out := make(map[string]string, len(keys))
	for chunk := range slices.Chunk(keys, 1000) {
		rows, err := d.DB.Query(ctx, `SELECT user_key, jurisdiction FROM user_directory WHERE user_key = ANY($1)`, chunk)
		if err != nil {
			return nil, fmt.Errorf("reading the user directory: %w", err)
		}
		for rows.Next() {
			var k, j string
			if err := rows.Scan(&k, &j); err != nil {
				rows.Close()
				return nil, fmt.Errorf("reading the user directory: %w", err)
			}
			out[k] = j
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("reading the user directory: %w", err)
		}
	}
	return out, nil
}

// Options configure a scan.
type Options struct {
	Secret    []byte // the gateway's directory secret
	Directory Directory
	// KafkaRecords is how many of the newest records of each partition are read.
	KafkaRecords int
	Log          *slog.Logger
}

// Sighting is a user found in one store of one region. App is empty when the store does not
// say which app the user belongs to (a delivery-log row whose notification row has expired).
type Sighting struct {
	Store  string // "postgres:users", "cassandra:notification_log", "kafka:<topic>", "redis:prefs"
	Region string
	App    string
	User   string
}

// Finding is a user whose data is in a region of another jurisdiction than the directory's.
type Finding struct {
	Sighting
	RegionJurisdiction string
	UserJurisdiction   string
}

// StoreStat is what was read from one store of a region.
type StoreStat struct {
	Region, Store string
	Read          int // rows, records or keys read
	Users         int // distinct (app, user) found
}

// Report is the outcome of a scan.
type Report struct {
	Stores            []StoreStat
	Misplaced         []Finding
	Unregistered      []Sighting // users the directory does not know
	UnregisteredUsers int        // distinct (app, user) among them
	Unattributed      []Sighting // users found without their app
	Undecodable       int        // Kafka records that are not the JSON of an event or task
	// Erased counts the users of sealed Kafka records whose data key was destroyed by an
	// erasure: unreadable, so nothing of them is found (crypto-shredding).
	Erased int
}

// OK reports whether no data was found outside its user's jurisdiction.
func (r *Report) OK() bool { return len(r.Misplaced) == 0 }

// observed is a user found in a store. Candidates are the (app, user) pairs the stored name can
// stand for: one, except for Redis keys, where ':' may be in the app id or the user id.
type observed struct {
	store      string
	candidates [][2]string
}

// collector gathers what one region's stores hold.
type collector struct {
	region string
	// siblings are the scanned regions of the region's jurisdiction, itself included: the
	// only data centres its keyspace may place replicas in.
	siblings []string
	seen     map[string]bool
	found    []observed
	stats    map[string]*StoreStat
	order    []string
}

func newCollector(region string) *collector {
	return &collector{region: region, seen: map[string]bool{}, stats: map[string]*StoreStat{}}
}

func (c *collector) stat(store string) *StoreStat {
	s := c.stats[store]
	if s == nil {
		s = &StoreStat{Region: c.region, Store: store}
		c.stats[store] = s
		c.order = append(c.order, store)
	}
	return s
}

// add records that store holds (app, user), or one of the candidates given.
func (c *collector) add(store string, candidates ...[2]string) {
	k := store + "\x00" + fmt.Sprint(candidates)
	if c.seen[k] {
		return
	}
	c.seen[k] = true
	c.stat(store).Users++
	c.found = append(c.found, observed{store: store, candidates: candidates})
}

// Run scans every region and classifies each user found. Any store that cannot be read fails
// the scan: a scan that skipped a store would pass for the wrong reason.
func Run(ctx context.Context, regions []Region, opt Options) (*Report, error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.KafkaRecords <= 0 {
		return nil, fmt.Errorf("scan: KafkaRecords must be positive, got %d", opt.KafkaRecords)
	}
	rep := &Report{}
	unregistered := map[[2]string]bool{}
	siblings := map[string][]string{}
	for _, r := range regions {
		siblings[r.Jurisdiction] = append(siblings[r.Jurisdiction], r.Name)
	}
	for _, r := range regions {
		c := newCollector(r.Name)
		c.siblings = siblings[r.Jurisdiction]
		steps := []struct {
			name string
			run  func(context.Context, Region, *collector) error
		}{
			{"postgres", scanPostgres},
			{"cassandra", scanCassandra},
			{"redis", scanRedis},
			{"kafka", func(ctx context.Context, r Region, c *collector) error {
				return scanKafka(ctx, r, c, opt.KafkaRecords, &rep.Undecodable, &rep.Erased)
			}},
		}
		for _, s := range steps {
			opt.Log.Info("scanning", "region", r.Name, "store", s.name)
			if err := s.run(ctx, r, c); err != nil {
				return nil, fmt.Errorf("region %s, %s: %w", r.Name, s.name, err)
			}
		}
		for _, store := range c.order {
			rep.Stores = append(rep.Stores, *c.stats[store])
		}
		if err := classify(ctx, r, c.found, opt, rep, unregistered); err != nil {
			return nil, fmt.Errorf("region %s: %w", r.Name, err)
		}
	}
	rep.UnregisteredUsers = len(unregistered)
	return rep, nil
}

func classify(ctx context.Context, r Region, found []observed, opt Options, rep *Report, unregistered map[[2]string]bool) error {
	keyOf := map[[2]string]string{}
	var keys []string
	for _, o := range found {
		for _, cand := range o.candidates {
			if cand[0] == "" {
				continue
			}
			if _, ok := keyOf[cand]; !ok {
				k := residency.UserKey(opt.Secret, cand[0], cand[1])
				keyOf[cand] = k
				keys = append(keys, k)
			}
		}
	}
	juris, err := opt.Directory.Jurisdictions(ctx, keys)
	if err != nil {
		return err
	}
	for _, o := range found {
		first := o.candidates[0]
		s := Sighting{Store: o.store, Region: r.Name, App: first[0], User: first[1]}
		if first[0] == "" {
			rep.Unattributed = append(rep.Unattributed, s)
			continue
		}
		registered := false
		for _, cand := range o.candidates {
			j, ok := juris[keyOf[cand]]
			if !ok {
				continue
			}
			registered = true
			if j != r.Jurisdiction {
				rep.Misplaced = append(rep.Misplaced, Finding{
					Sighting:           Sighting{Store: o.store, Region: r.Name, App: cand[0], User: cand[1]},
					RegionJurisdiction: r.Jurisdiction, UserJurisdiction: j,
				})
			}
			break
		}
		if !registered {
			rep.Unregistered = append(rep.Unregistered, s)
			unregistered[first] = true
		}
	}
	return nil
}

// splits lists the (app, user) pairs "a:b:c" can stand for, the split at the first ':' first.
func splits(s string) [][2]string {
	var out [][2]string
	for i := 0; i < len(s); i++ {
		if s[i] == ':' && i > 0 && i < len(s)-1 {
			out = append(out, [2]string{s[:i], s[i+1:]})
		}
	}
	return out
}

// globEscape escapes Redis MATCH pattern characters.
func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`).Replace(s)
}
