package testenv

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Private is a server of the local stack (stack/<name>.sh) started for one test only, in a
// HERALD_HOME of its own on free ports, so the test may stop and start it: fault tests never
// touch the servers other tests share. It is stopped when the test ends.
type Private struct {
	name, home string
	env        []string
}

// StartPrivate starts a private server (postgres, redis, kafka, cassandra), with extra
// environment for its script (e.g. HERALD_CASSANDRA_HEAP=1g).
func StartPrivate(t testing.TB, name string, env ...string) *Private {
	t.Helper()
	p := &Private{name: name, home: t.TempDir(), env: env}
	t.Cleanup(func() { _ = p.run("stop") })
	p.Start(t)
	return p
}

// singleNode is the node a private server runs of a script that runs several (the local
// stack's EU Cassandra and Postgres nodes are not started for a private server).
var singleNode = map[string]string{"cassandra": "us", "postgres": "main"}

func (p *Private) run(verb string) error {
	args := []string{verb}
	if n, ok := singleNode[p.name]; ok {
		args = append(args, n)
	}
	cmd := exec.Command(filepath.Join(Root(), "stack", p.name+".sh"), args...)
	// One node of a server whose script can run several (a cluster mode in the caller's
	// environment is not the private server's).
	cmd.Env = append(append(os.Environ(), "HERALD_HOME="+p.home, "HERALD_KAFKA_NODES=1", "HERALD_CASSANDRA_NODES=1"), p.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return &scriptError{verb: p.name + " " + verb, out: string(out), err: err}
	}
	return nil
}

type scriptError struct {
	verb, out string
	err       error
}

func (e *scriptError) Error() string { return "stack/" + e.verb + ": " + e.err.Error() + ": " + e.out }

// Start starts the server (again) and returns once it answers.
func (p *Private) Start(t testing.TB) {
	t.Helper()
	if err := p.run("start"); err != nil {
		t.Fatal(err)
	}
}

// Stop stops it (SIGTERM, as an operator or an orchestrator would).
func (p *Private) Stop(t testing.TB) {
	t.Helper()
	if err := p.run("stop"); err != nil {
		t.Fatal(err)
	}
}

// Env is a value the server's script recorded for clients (e.g. HERALD_CASSANDRA_HOSTS).
func (p *Private) Env(t testing.TB, key string) string {
	t.Helper()
	f, err := os.Open(filepath.Join(p.home, "env", p.name+".env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && k == key {
			return v
		}
	}
	t.Fatalf("private %s: no %s", p.name, key)
	return ""
}
