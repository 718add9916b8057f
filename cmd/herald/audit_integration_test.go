//go:build integration

package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/analytics"
	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/migrate"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/audit"
	"github.com/herald-notify/herald/region/schema"
	"github.com/herald-notify/herald/residency"
)

// auditRegion writes region-<name>.yaml into dir for a region private to the test and returns
// its config as the command will load it. With full set, every store is migrated (and dropped
// at the end); otherwise only its Postgres database.
func auditRegion(t *testing.T, dir, jurisdiction string, full bool) (region.Config, *pgxpool.Pool) {
	t.Helper()
	testenv.Kafka(t) // loads .herald/stack.env: the store addresses come from the environment
	letters := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return 'a' + (r - '0')
		}
		return r
	}, testenv.Suffix())
	name := "zz-" + letters + "-1"
	path := filepath.Join(dir, "region-"+name+".yaml")
	d := testenv.PKI(t)
	// Its own database and keyspace: a region's default is its jurisdiction's, which the
	// local stack's regions use.
	store := "herald_" + strings.ReplaceAll(name, "-", "_")
	body := fmt.Sprintf("name: %s\njurisdiction: %s\ntopic_partitions: 1\ncassandra:\n  keyspace: %s\n  consistency: ONE\npostgres:\n  database: %s\ntls:\n  cert_file: %s\n  key_file: %s\n  client_ca_file: %s\nuser_keys:\n  current: %s\n  master_keys:\n    %s: %s\n",
		name, jurisdiction, store, store, d.CertFile("region"), d.KeyFile("region"), d.CAFile(), testenv.MasterKeyID, testenv.MasterKeyID, testenv.MasterKeyFile(t))
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	// On the tests' servers, not the local stack's EU cluster and Postgres pair.
	t.Setenv(region.JurisdictionHostsEnv(jurisdiction), "")
	t.Setenv(region.JurisdictionPostgresEnv(jurisdiction), "")
	t.Setenv(region.JurisdictionReplicationEnv(jurisdiction), "")
	cfg := region.DefaultConfig(t.TempDir())
	if err := config.Load(path, &cfg); err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, 3*time.Minute)
	t.Cleanup(func() { testenv.DropDatabase(t, cfg.Postgres) })
	if full {
		t.Cleanup(func() { testenv.DropKeyspace(t, cfg.Cassandra) })
		var topics []string
		for _, tp := range cfg.Topics() {
			topics = append(topics, tp.Name)
		}
		testenv.DeleteTopics(t, cfg.Kafka, topics...)
		if err := region.Migrate(ctx, cfg, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
	} else if err := migrate.Database(ctx, cfg.Postgres, schema.Postgres(), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	pool, err := postgres.Connect(ctx, cfg.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return cfg, pool
}

// auditGateway writes gateway.yaml and the directory secret into dir, with the gateway's
// database; it returns the secret.
func auditGateway(t *testing.T, dir, database string) []byte {
	t.Helper()
	secret := []byte(strings.Repeat("k", 40))
	secretFile := filepath.Join(dir, "directory-secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	pk := testenv.PKI(t)
	body := fmt.Sprintf("jurisdiction: EU\ndirectory:\n  secret_file: %s\npostgres:\n  database: %s\nregion_tls:\n  ca_file: %s\n  cert_file: %s\n  key_file: %s\n",
		secretFile, database, pk.CAFile(), pk.CertFile("gateway"), pk.KeyFile("gateway"))
	if err := os.WriteFile(filepath.Join(dir, "gateway.yaml"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return secret
}

func decision(app, key, requestID string) audit.Entry {
	return audit.Entry{ID: uuid.NewString(), At: time.Now(), App: app, UserKey: key, Jurisdiction: "EU", Region: "eu-west-1",
		Reason: audit.ReasonHome, PolicyVersion: 2, RequestID: requestID}
}

func runHerald(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestAuditVerifyExitsOneNamingTheFirstBrokenLink(t *testing.T) {
	dir := t.TempDir()
	cfg, pool := auditRegion(t, dir, "EU", false)
	ctx := testenv.Context(t, time.Minute)
	key := strings.Repeat("ab", 32)
	if _, err := audit.NewStore(pool).Append(ctx, []audit.Entry{decision("app-1", key, "r1"), decision("app-1", key, "r2"), decision("app-1", key, "r3")}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runHerald("audit", "verify", "--region", cfg.Name, "--config-dir", dir)
	if code != 0 || !strings.Contains(out, cfg.Name+": intact, 3 entries, head seq 3") {
		t.Fatalf("intact chain: exit %d\n%s%s", code, out, errOut)
	}
	anchor := out[strings.Index(out, "(anchor: ")+len("(anchor: ") : strings.LastIndex(out, ")")]
	if code, out, errOut = runHerald("audit", "verify", "--region", cfg.Name, "--anchor", anchor, "--config-dir", dir); code != 0 {
		t.Fatalf("with the head as anchor: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut = runHerald("audit", "verify", "--region", cfg.Name, "--anchor", "3:"+strings.Repeat("00", 32), "--config-dir", dir); code != 1 || !strings.Contains(errOut, "seq 3: anchor-mismatch") {
		t.Fatalf("with another hash as anchor: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut = runHerald("audit", "verify", "--anchor", anchor, "--config-dir", dir); code != 2 {
		t.Fatalf("an anchor without --region: exit %d: %s", code, errOut)
	}
	if _, err := pool.Exec(ctx, `ALTER TABLE audit_log DISABLE TRIGGER USER`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE audit_log SET region = 'us-east-1' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runHerald("audit", "verify", "--config-dir", dir) // every region of the directory
	if code != 1 || !strings.Contains(errOut, "region "+cfg.Name+": audit chain broken at seq 2: changed") || !strings.Contains(out, "BROKEN") {
		t.Fatalf("changed entry: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if code, _, errOut = runHerald("audit", "verify", "--region", "zz-nowhere-1", "--config-dir", dir); code != 2 {
		t.Fatalf("unknown region: exit %d: %s", code, errOut)
	}
}

func TestAuditUserListsTheUsersDecisionsFromEveryRegion(t *testing.T) {
	dir := t.TempDir()
	secret := auditGateway(t, dir, "herald_global")
	a, poolA := auditRegion(t, dir, "EU", false)
	b, poolB := auditRegion(t, dir, "EU", false)
	ctx := testenv.Context(t, time.Minute)
	key := residency.UserKey(secret, "app-1", "ada")
	other := residency.UserKey(secret, "app-1", "bob")
	if _, err := audit.NewStore(poolA).Append(ctx, []audit.Entry{decision("app-1", key, "req-a"), decision("app-1", other, "req-bob")}); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.NewStore(poolB).Append(ctx, []audit.Entry{decision("app-1", key, "req-b")}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runHerald("audit", "user", "--app", "app-1", "--user", "ada", "--config-dir", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{key, a.Name, b.Name, "req-a", "req-b", "2 decisions in 2 regions"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "req-bob") {
		t.Errorf("another user's decision is listed:\n%s", out)
	}
}

func TestAuditResidencyExitsOneWhenAUsersDataIsInAnotherJurisdiction(t *testing.T) {
	dir := t.TempDir()
	gw := testenv.Postgres(t)
	secret := auditGateway(t, dir, gw.Database)
	eu, euPool := auditRegion(t, dir, "EU", true)
	us, usPool := auditRegion(t, dir, "US", true)
	ctx := testenv.Context(t, 2*time.Minute)
	dirDB, err := postgres.Connect(ctx, gw)
	if err != nil {
		t.Fatal(err)
	}
	defer dirDB.Close()
	ddl, err := os.ReadFile("../../gateway/schema/postgres/0002_user_directory.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dirDB.Exec(ctx, string(ddl)); err != nil {
		t.Fatal(err)
	}
	if _, err := dirDB.Exec(ctx, `INSERT INTO user_directory (user_key, jurisdiction, home_region) VALUES ($1, 'EU', $2)`,
		residency.UserKey(secret, "app-1", "ada"), eu.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := euPool.Exec(ctx, `INSERT INTO users (app_id, user_id) VALUES ('app-1', 'ada')`); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runHerald("audit", "residency", "--kafka-records", "10", "--config-dir", dir)
	if code != 0 || !strings.Contains(out, "misplaced (stored in a region outside the user's jurisdiction): 0") {
		t.Fatalf("EU user in the EU region: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, err := usPool.Exec(ctx, `INSERT INTO devices (app_id, device_id, user_id, platform, token) VALUES ('app-1', 'd1', 'ada', 'ios', 'tok')`); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runHerald("audit", "residency", "--kafka-records", "10", "--config-dir", dir)
	if code != 1 || !strings.Contains(errOut, "1 sightings") {
		t.Fatalf("EU user's device in the US region: exit %d\n%s\n%s", code, out, errOut)
	}
	found := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 6 && f[0] == "postgres:devices" && f[1] == us.Name && f[2] == "US" && f[3] == "EU" && f[4] == "app-1" && f[5] == "ada" {
			found = true
		}
	}
	if !found {
		t.Fatalf("the finding is not listed as postgres:devices %s US EU app-1 ada:\n%s", us.Name, out)
	}
}

// herald audit analytics exits 0 on a database holding only what ingest accepts, and 1 naming
// the cell when one below k got in past ingest.
func TestAuditAnalyticsExitsOneOnACellBelowK(t *testing.T) {
	testenv.Kafka(t) // loads .herald/stack.env: the store addresses come from the environment
	dir := t.TempDir()
	srv := testenv.PKI(t).Server("analytics")
	body := fmt.Sprintf("k: 10\ningest:\n  tls:\n    cert_file: %s\n    key_file: %s\n    client_ca_file: %s\nregions:\n  eu-west-1:\n    token: audit-test-region-token-0123\noperator:\n  token: audit-test-operator-token-0123456789abcdef\npostgres:\n  database: herald_analytics_zz%s\n",
		srv.CertFile, srv.KeyFile, srv.ClientCAFile, testenv.Suffix())
	if err := os.WriteFile(filepath.Join(dir, "analytics.yaml"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := analytics.DefaultConfig(t.TempDir())
	if err := config.Load(filepath.Join(dir, "analytics.yaml"), &cfg); err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, time.Minute)
	t.Cleanup(func() { testenv.DropDatabase(t, cfg.Postgres) })
	if err := analytics.Migrate(ctx, cfg, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"audit", "analytics", "--config-dir", dir}, &out, &errb); code != 0 || !strings.Contains(out.String(), "clean") {
		t.Fatalf("an empty database: exit %d\n%s%s", code, out.String(), errb.String())
	}
	pool, err := postgres.Connect(ctx, cfg.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ws := time.Now().UTC().Truncate(time.Minute)
	if _, err := pool.Exec(ctx, `INSERT INTO batches (region, window_start, seq, digest, withheld, latency_withheld) VALUES ('eu-west-1', $1, 0, $2, 0, 0)`, ws, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO cells VALUES ('eu-west-1', $1, 0, 'shop', 'social', 'news', 'push', '', 'delivered', '', 900, 2)`, ws); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"audit", "analytics", "--config-dir", dir}, &out, &errb); code != 1 || !strings.Contains(out.String(), "cell eu-west-1 "+ws.Format(time.RFC3339)+" 2 recipients") {
		t.Errorf("a cell of 2 recipients: exit %d\n%s%s", code, out.String(), errb.String())
	}
}
