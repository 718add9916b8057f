// Package regiontest runs real regions in-process for the tests of other parts (the gateway's
// end-to-end tests): each on its own Postgres database, Cassandra keyspace, Redis prefix and
// Kafka topics, dropped when the test ends. Only tests import it.
package regiontest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/sim"
)

// Config returns the config of a private region named name (it must match the region name
// pattern, e.g. "zz-abcd-1") in jurisdiction, registering in the file discovery under dir.
func Config(t testing.TB, name, jurisdiction, discoveryDir string) region.Config {
	t.Helper()
	c := region.DefaultConfig(discoveryDir)
	c.Name = name
	c.Jurisdiction = jurisdiction
	c.TopicPartitions = 1
	c.Kafka = testenv.Kafka(t)
	c.Cassandra = testenv.Cassandra(t)
	c.Postgres = testenv.Postgres(t)
	c.Redis = testenv.Redis(t)
	c.Redis.Prefix = name + ":"
	c.Discovery.TTL = 3 * time.Second
	c.Listen = FreePort(t)
	c.Scheduler.Interval = 100 * time.Millisecond
	// A private database and keyspace per test region (a region's own default is its
	// jurisdiction's, shared with its other regions: Share gives a second region this one's).
	c.Cassandra.Keyspace = "herald_" + strings.ReplaceAll(name, "-", "_")
	c.Postgres.Database = c.Cassandra.Keyspace
	c.TLS = TLS(t)
	c.UserKeys.Current = testenv.MasterKeyID
	c.UserKeys.MasterKeys = map[string]string{testenv.MasterKeyID: testenv.MasterKeyFile(t)}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		testenv.DropDatabase(t, c.Postgres)
		testenv.DropKeyspace(t, c.Cassandra)
	})
	var topics []string
	for _, tp := range c.Topics() {
		topics = append(topics, tp.Name)
	}
	testenv.DeleteTopics(t, c.Kafka, topics...)
	return c
}

// TLS is a region's mutual TLS with the test process's CA (testenv.PKI): call it with
// Running.Client or testenv.RegionClient.
func TLS(t testing.TB) region.TLSConfig {
	d := testenv.PKI(t)
	return region.TLSConfig{CertFile: d.CertFile("region"), KeyFile: d.KeyFile("region"), ClientCAFile: d.CAFile()}
}

// FreePort returns a loopback address no one listens on.
func FreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Running is a region running in-process.
type Running struct {
	t   testing.TB
	Cfg region.Config
	// Base is the API's https:// URL; Client calls it with the gateway's client certificate.
	Base   string
	Client *http.Client
	stop   func()
}

// Start migrates the region and runs it with every role until Stop or the end of the test.
func Start(t testing.TB, c region.Config) *Running {
	t.Helper()
	ctx := testenv.Context(t, 5*time.Minute)
	if err := region.Migrate(ctx, c, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	r := &Running{t: t, Cfg: c, Base: "https://" + c.Listen, Client: testenv.RegionClient(t)}
	t.Cleanup(r.Stop)
	r.Start()
	return r
}

// Start runs the region again after Stop, and waits until it is ready. A port FreePort gave
// that another process took before the region bound it is replaced by another free one.
func (r *Running) Start() {
	r.t.Helper()
	for attempt := 1; ; attempt++ {
		err := r.start()
		if err == nil {
			return
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == 5 {
			r.t.Fatalf("region %s: %v", r.Cfg.Name, err)
		}
		r.Cfg.Listen = FreePort(r.t)
		r.Base = "https://" + r.Cfg.Listen
	}
}

// start runs the region and waits until it is ready, or until it stops (its error).
func (r *Running) start() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("HERALD_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("region", r.Cfg.Name)
	}
	go func() { done <- region.Run(ctx, r.Cfg, logger, "test") }()
	stopped := false
	r.stop = func() {
		cancel()
		if stopped {
			return
		}
		select {
		case err := <-done:
			if err != nil {
				r.t.Errorf("region %s stopped with %v", r.Cfg.Name, err)
			}
		case <-time.After(60 * time.Second):
			r.t.Errorf("region %s did not stop within 60s", r.Cfg.Name)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			// It stopped before it was ready (its port taken, a store refusing).
			stopped = true
			cancel()
			r.stop = nil
			if err == nil {
				err = errors.New("stopped before it was ready")
			}
			return err
		default:
		}
		if resp, err := r.Client.Get(r.Base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("not ready after 60s")
}

// Stop stops the region (graceful: it deregisters from discovery); Stop twice is a no-op.
func (r *Running) Stop() {
	if r.stop != nil {
		s := r.stop
		r.stop = nil
		s()
	}
}

// StartSim runs the provider simulators in-process on free ports, with fresh credentials (never
// the local stack's), until the test ends. seed makes their generated ids reproducible; each
// of configure changes the config before they start.
func StartSim(t testing.TB, seed int64, configure ...func(*sim.Config)) (*sim.Sim, sim.Config) {
	t.Helper()
	sc := sim.DefaultConfig(t.TempDir())
	sc.Webhook.Listen = "127.0.0.1:0"
	sc.Admin.Listen, sc.APNs.Listen, sc.FCM.Listen, sc.SMTP.Listen, sc.SMS.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	sc.Seed, sc.Drain = seed, time.Second
	for _, f := range configure {
		f(&sc)
	}
	if err := sc.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(sc, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Logf("simulators stopped with an error: %v", err)
		}
	})
	return s, sc
}

// SimAPNs is an APNs config that sends to the simulator's APNs, with its key and CA.
func SimAPNs(info sim.Info) dispatch.APNsConfig {
	return dispatch.APNsConfig{Endpoint: info.APNs.URL, TeamID: info.APNs.TeamID, KeyID: info.APNs.KeyID,
		KeyFile: info.APNs.KeyFile, Topic: "com.herald.test", CAFile: info.CAFile}
}

// SimSMTP is an SMTP config that sends to the simulator's SMTP server, with its login and CA.
func SimSMTP(info sim.Info, sc sim.Config) dispatch.SMTPConfig {
	return dispatch.SMTPConfig{Addr: info.SMTP.Addr, Username: sc.SMTP.Username, Password: sc.SMTP.Password,
		From: "Herald <noreply@herald.local>", CAFile: info.CAFile}
}

// Letters is a fresh random suffix in the letters region names allow in their middle part:
// "zz-" + Letters() + "-1" names a private region.
func Letters() string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return 'a' + (r - '0')
		}
		return r
	}, testenv.Suffix())
}

// SimRecords returns the records of one simulator of s ("apns", "fcm", "smtp", "sms"), to one
// recipient (to == "": all of them), through its admin API.
func SimRecords(t testing.TB, s *sim.Sim, name, to string) []sim.Record {
	t.Helper()
	q := ""
	if to != "" {
		q = "?to=" + url.QueryEscape(to)
	}
	resp, err := http.Get(s.Info().Admin + "/sim/" + name + "/messages" + q)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Messages []sim.Record }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Messages
}

// Migrated migrates c's stores (region.Migrate) and returns a pool on its Postgres database,
// closed when t ends.
func Migrated(t testing.TB, c region.Config) *pgxpool.Pool {
	t.Helper()
	ctx := testenv.Context(t, 3*time.Minute)
	if err := region.Migrate(ctx, c, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	pg, err := postgres.Connect(ctx, c.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	return pg
}
