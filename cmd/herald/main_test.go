package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/cli"
	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/masterkey"
	"github.com/herald-notify/herald/platform/pki"
	"github.com/herald-notify/herald/sim"
)

// run runs herald's command args.
func run(args []string, stdout, stderr io.Writer) int {
	return cli.Main("herald", commands, args, stdout, stderr)
}

// localPKI issues the local stack's certificates into dir, as herald-dev pki init does.
func localPKI(t *testing.T, dir string) {
	t.Helper()
	if _, err := pki.Dir(dir).Ensure(pki.LocalPlan([]string{"eu-west-1", "eu-central-1", "us-east-1"}, []string{"127.0.0.1", "localhost"}), time.Now()); err != nil {
		t.Fatal(err)
	}
}

// The product binary links none of the workbench: no simulator, benchmark, load or fault
// scenario ships in it.
func TestTheProductBinaryLinksNoneOfTheWorkbench(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bench := range []string{"/sim", "/loadtest", "/bench", "/testenv", "/regiontest"} {
			if strings.HasPrefix(dep, "github.com/herald-notify/herald/") && (strings.HasSuffix(dep, bench) || strings.Contains(dep, bench+"/")) {
				t.Errorf("cmd/herald links %s", dep)
			}
		}
	}
}

func TestBadConfigStopsAtStartNamingTheKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantKey string
	}{
		{"region bad broker in file", []string{"region", "--config", write("r1.yaml", "name: eu-west-1\njurisdiction: EU\nkafka:\n  brokers: [nohostport]\n")}, nil, "kafka.brokers"},
		{"region unknown key", []string{"region", "--config", write("r2.yaml", "name: eu-west-1\njurisdiction: EU\nkafak: {}\n")}, nil, "kafak"},
		{"region bad name flag", []string{"region", "--name", "EU West", "--config", write("r3.yaml", "jurisdiction: EU\n")}, nil, "name"},
		{"region unknown role flag", []string{"region", "--name", "eu-west-1", "--roles", "api,teleport", "--config", write("r4.yaml", "jurisdiction: EU\n")}, nil, "roles"},
		{"region bad env value", []string{"region", "--config", write("r5.yaml", "name: eu-west-1\njurisdiction: EU\n")}, map[string]string{"HERALD_REDIS_ADDR": "redis"}, "redis.addr"},
		{"gateway bad listen", []string{"gateway", "--config", write("g.yaml", "listen: everywhere\n")}, nil, "listen"},
		{"analytics bad log level", []string{"analytics", "--config", write("a.yaml", "telemetry: {log_level: chatty}\n")}, nil, "telemetry.log_level"},
		{"gateway wrong type", []string{"gateway", "--config", write("g2.yaml", "postgres:\n  max_conns: lots\n")}, nil, "postgres.max_conns"},
		{"region without its certificate", []string{"region", "--config", write("r6.yaml", "name: eu-west-1\njurisdiction: EU\n")}, nil, "tls.cert_file"},
		{"region certificate file missing", []string{"region", "--config", write("r7.yaml", "name: eu-west-1\njurisdiction: EU\ntls:\n  cert_file: /nonexistent/r.pem\n  key_file: /nonexistent/r-key.pem\n  client_ca_file: /nonexistent/ca.pem\n")}, nil, "tls.cert_file"},
		{"region plain HTTP without a token", []string{"region", "--config", write("r8.yaml", "name: eu-west-1\njurisdiction: EU\ntls:\n  insecure_plaintext: true\n")}, nil, "tls.insecure_plaintext"},
		{"region master key file missing", []string{"region", "--config", write("r9.yaml", "name: eu-west-1\njurisdiction: EU\ninternal_token: a-long-shared-secret\ntls:\n  insecure_plaintext: true\nuser_keys:\n  current: k1\n  master_keys:\n    k1: /nonexistent/k1.key\n")}, nil, "user_keys.master_keys.k1"},
		{"region current master key unknown", []string{"region", "--config", write("r10.yaml", "name: eu-west-1\njurisdiction: EU\ninternal_token: a-long-shared-secret\ntls:\n  insecure_plaintext: true\nuser_keys:\n  current: k2\n  master_keys:\n    k1: "+masterKeyFile(t)+"\n")}, nil, "user_keys.current"},
		{"gateway client certificate missing", []string{"gateway", "--config", write("g3.yaml", "jurisdiction: EU\ndirectory:\n  secret_file: /x\nregion_tls:\n  ca_file: /nonexistent/ca.pem\n  cert_file: /nonexistent/gw.pem\n  key_file: /nonexistent/gw-key.pem\n")}, nil, "region_tls.cert_file"},
		{"gateway without region TLS", []string{"gateway", "--config", write("g4.yaml", "jurisdiction: EU\ndirectory:\n  secret_file: /x\n")}, nil, "region_tls.cert_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// `make test` exports the store addresses, which would override the files' values.
			for _, k := range []string{"HERALD_REGION_NAME", "HERALD_REGION_ROLES", "HERALD_REGION_LISTEN",
				"HERALD_KAFKA_BROKERS", "HERALD_CASSANDRA_HOSTS", "HERALD_POSTGRES_URL", "HERALD_REDIS_ADDR"} {
				t.Setenv(k, "")
				os.Unsetenv(k)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var out, errb bytes.Buffer
			code := run(tt.args, &out, &errb)
			if code != 2 {
				t.Fatalf("exit code %d, want 2; stderr: %s", code, errb.String())
			}
			if !strings.Contains(errb.String(), tt.wantKey) {
				t.Fatalf("stderr does not name %q: %s", tt.wantKey, errb.String())
			}
		})
	}
}

func TestCheckConfigAcceptsTheLocalConfigs(t *testing.T) {
	files, _ := filepath.Glob("../../config/local/region-*.yaml")
	if len(files) != 3 {
		t.Fatalf("want 3 local region configs, found %v", files)
	}
	local, err := filepath.Abs("../../config/local")
	if err != nil {
		t.Fatal(err)
	}
	for i := range files {
		files[i] = filepath.Join(local, filepath.Base(files[i]))
	}
	// The configs name their certificates relative to the repository root, as `make up` runs
	// them; here they are issued by herald-dev pki init in a fresh root.
	t.Chdir(t.TempDir())
	var pout, perr bytes.Buffer
	localPKI(t, filepath.Join(".herald", "pki"))
	for _, j := range []string{"eu", "us"} {
		if code := run([]string{"masterkey", "init", "--file", filepath.Join(".herald", "keys", "user-keys-"+j+"-local-1.key")}, &pout, &perr); code != 0 {
			t.Fatalf("herald masterkey init: exit %d: %s", code, perr.String())
		}
	}
	for _, f := range files {
		var out, errb bytes.Buffer
		if code := run([]string{"region", "--config", f, "--check-config"}, &out, &errb); code != 0 {
			t.Fatalf("%s: exit %d: %s", f, code, errb.String())
		}
	}
	for _, c := range []string{"gateway", "analytics"} {
		var out, errb bytes.Buffer
		if code := run([]string{c, "--config", filepath.Join(local, c+".yaml"), "--check-config"}, &out, &errb); code != 0 {
			t.Fatalf("%s: exit %d: %s", c, code, errb.String())
		}
	}
}

func TestUnknownCommandIsAUsageError(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Fatalf("code %d stderr %s", code, errb.String())
	}
	if code := run([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "herald ") {
		t.Fatalf("version: code %d out %s", code, out.String())
	}
}

func TestEveryCommandWithSubcommandsAnswersHelpWithItsUsage(t *testing.T) {
	for name, cmd := range commands {
		if !cmd.Subcommands {
			continue
		}
		for _, h := range []string{"-h", "--help", "help"} {
			t.Run(name+" "+h, func(t *testing.T) {
				var out, errb bytes.Buffer
				if code := run([]string{name, h}, &out, &errb); code != 0 {
					t.Fatalf("exit code %d, want 0; stderr: %s", code, errb.String())
				}
				if !strings.HasPrefix(out.String(), "usage:") || !strings.Contains(out.String(), "herald "+name) {
					t.Fatalf("stdout is not %s's usage: %q", name, out.String())
				}
			})
		}
	}
	// Without a subcommand it stays a usage error.
	var out, errb bytes.Buffer
	if code := run([]string{"apikey"}, &out, &errb); code != 2 {
		t.Fatalf("apikey without a subcommand: exit %d, want 2", code)
	}
}

func TestHelpFlagPrintsFlagsAndRunsNothing(t *testing.T) {
	// Each of these would start work (a benchmark, a server, a database connection) if -h
	// fell through to the command: none may print anything but its usage.
	for _, args := range [][]string{
		{"region", "-h"},
		{"gateway", "-h"},
		{"apikey", "list", "-h"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(args, &out, &errb); code != 0 {
				t.Fatalf("exit code %d, want 0; stderr: %s", code, errb.String())
			}
			if out.Len() != 0 {
				t.Fatalf("stdout should be empty, got %q", out.String())
			}
			if !strings.Contains(errb.String(), "Usage of herald") {
				t.Fatalf("stderr has no usage: %q", errb.String())
			}
			if strings.Contains(errb.String(), "herald "+args[0]+": ") {
				t.Fatalf("help reported as an error: %q", errb.String())
			}
		})
	}
}

// masterKeyFile is a new master key file of the test's.
func masterKeyFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "k1.key")
	if _, err := masterkey.CreateFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// The commented lines of config/local that turn SendGrid email events on (docs/dispatch.md)
// give configs every command accepts, once uncommented.
func TestTheCommentedSendGridLinesOfTheLocalConfigsAreValid(t *testing.T) {
	local, err := filepath.Abs("../../config/local")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	var pout, perr bytes.Buffer
	localPKI(t, filepath.Join(".herald", "pki"))
	for _, j := range []string{"eu", "us"} {
		if code := run([]string{"masterkey", "init", "--file", filepath.Join(".herald", "keys", "user-keys-"+j+"-local-1.key")}, &pout, &perr); code != 0 {
			t.Fatalf("herald masterkey init: exit %d: %s", code, perr.String())
		}
	}
	// The key the simulator writes on its first start.
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err := os.MkdirAll(filepath.Join(".herald", "sim"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(".herald", "sim", "sendgrid-event-key-public.txt"), []byte(base64.StdEncoding.EncodeToString(der)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	on := regexp.MustCompile(`(?m)^(\s*)# ((?:receipts|events):.*|  (?:sendgrid|url|later):.*|    (?:public_key_files|max_age):.*)$`)
	files, _ := filepath.Glob(filepath.Join(local, "*.yaml"))
	turned := 0
	for _, f := range files {
		name := filepath.Base(f)
		cmd := strings.TrimSuffix(name, ".yaml")
		switch {
		case strings.HasPrefix(name, "region-"):
			cmd = "region"
		case cmd != "gateway" && cmd != "sim":
			continue
		}
		check := func(p string) error {
			var o, e bytes.Buffer
			if code := run([]string{cmd, "--config", p, "--check-config"}, &o, &e); code != 0 {
				return fmt.Errorf("exit %d: %s", code, e.String())
			}
			return nil
		}
		if cmd == "sim" { // herald-dev's: its config is checked as herald-dev sim --check-config does
			check = func(p string) error {
				cfg := sim.DefaultConfig(filepath.Join(".herald", "sim"))
				return config.Load(p, &cfg)
			}
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out := on.ReplaceAll(raw, []byte("$1$2"))
		if bytes.Equal(out, raw) {
			t.Fatalf("%s: no commented SendGrid lines", name)
		}
		if !bytes.Contains(out, []byte("sendgrid")) {
			t.Fatalf("%s: %s", name, out)
		}
		turned++
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, out, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := check(p); err != nil {
			t.Fatalf("%s with email events on: %v", name, err)
		}
	}
	if turned != 5 {
		t.Fatalf("%d configs turned on, want the gateway's, the simulators' and 3 regions'", turned)
	}
}
