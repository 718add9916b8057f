package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/herald-notify/herald/platform/kafka"
)

// PrivateKafka is a single-node KRaft broker of its own, for a test that must fault Kafka
// (pause, stop) without touching the shared one. It runs from the jars `stack/kafka.sh install`
// put in $HERALD_HOME/kafka/lib, on free ports, with its data in the test's temporary directory.
type PrivateKafka struct {
	Config kafka.Config
	cmd    *exec.Cmd
}

// KafkaLib finds the Kafka jars: $HERALD_KAFKA_LIB, $HERALD_HOME/kafka/lib, or the .herald of the
// checkout this test runs in (a git worktree's main checkout included).
func KafkaLib() (string, bool) {
	var dirs []string
	if d := os.Getenv("HERALD_KAFKA_LIB"); d != "" {
		dirs = append(dirs, d)
	}
	if h := os.Getenv("HERALD_HOME"); h != "" {
		dirs = append(dirs, filepath.Join(h, "kafka", "lib"))
	}
	if out, err := exec.Command("git", "rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir").Output(); err == nil {
		for _, l := range strings.Fields(string(out)) {
			root := l
			if filepath.Base(l) == ".git" {
				root = filepath.Dir(l)
			}
			dirs = append(dirs, filepath.Join(root, ".herald", "kafka", "lib"))
		}
	}
	for _, d := range dirs {
		if m, _ := filepath.Glob(filepath.Join(d, "kafka_2.13-*.jar")); len(m) > 0 {
			return d, true
		}
	}
	return "", false
}

// StartPrivateKafka starts a broker for t and stops it (SIGKILL, then its data goes with the
// temporary directory) when t ends. Without Java or the jars the test is skipped, saying why.
func StartPrivateKafka(t testing.TB) *PrivateKafka {
	t.Helper()
	java, err := exec.LookPath("java")
	if err != nil {
		t.Skip("private Kafka: no java on PATH (install Java 17)")
	}
	lib, ok := KafkaLib()
	if !ok {
		t.Skip("private Kafka: no Kafka jars (run stack/kafka.sh install, or set HERALD_KAFKA_LIB or HERALD_HOME)")
	}
	dir := t.TempDir()
	port, cport := freePort(t), freePort(t)
	props := fmt.Sprintf(`process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:%[2]d
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:%[1]d,CONTROLLER://127.0.0.1:%[2]d
advertised.listeners=PLAINTEXT://127.0.0.1:%[1]d
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=%[3]s
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
offsets.topic.num.partitions=2
transaction.state.log.num.partitions=2
share.coordinator.state.topic.num.partitions=1
transaction.abort.timed.out.transaction.cleanup.interval.ms=2000
auto.create.topics.enable=false
num.partitions=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
background.threads=2
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
`, port, cport, filepath.Join(dir, "data"))
	conf := filepath.Join(dir, "server.properties")
	if err := os.WriteFile(conf, []byte(props), 0o600); err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(lib, "*")
	tool := func(args ...string) string {
		out, err := exec.Command(java, append([]string{"-Xmx256m", "-XX:+UseSerialGC", "-cp", cp}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("private Kafka: %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	id := tool("kafka.tools.StorageTool", "random-uuid")
	if f := strings.Fields(id); len(f) > 0 {
		id = f[len(f)-1]
	}
	tool("kafka.tools.StorageTool", "format", "-t", id, "-c", conf, "--standalone")

	logf, err := os.Create(filepath.Join(dir, "kafka.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(java, "-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
		"-Dkafka.logs.dir="+filepath.Join(dir, "logs"), "-cp", cp, "kafka.Kafka", conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a signal meant for the test never reaches it, and SIGSTOP/SIGCONT
	// reach only it. Pdeathsig: if the test process dies before its cleanup (killed, a closed
	// output pipe), the kernel kills the broker too, rather than leave it running on the box. The
	// signal follows the thread that started the process, so that thread stays locked to a
	// goroutine that lives until the cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	started, stop, stopped := make(chan error, 1), make(chan struct{}), make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(stopped)
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		<-stop
		_ = cmd.Process.Signal(syscall.SIGCONT) // a paused JVM is killed all the same, but resume it first
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	if err := <-started; err != nil {
		t.Fatalf("private Kafka: %v", err)
	}
	k := &PrivateKafka{cmd: cmd, Config: kafka.Defaults()}
	k.Config.Brokers = []string{fmt.Sprintf("127.0.0.1:%d", port)}
	t.Cleanup(func() {
		close(stop)
		<-stopped
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil && len(b) > 0 {
				t.Logf("private Kafka log (tail):\n%s", tail(b, 3000))
			}
		}
	})
	k.waitReady(t, 3*time.Minute)
	return k
}

// Pause stops the broker's process (SIGSTOP): its sockets stay open and nothing answers, the
// way a broker stuck in a long GC pause or on a dead disk looks to its clients.
func (k *PrivateKafka) Pause(t testing.TB) {
	t.Helper()
	if err := k.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("pausing the private Kafka: %v", err)
	}
}

// Resume lets a paused broker run again (SIGCONT).
func (k *PrivateKafka) Resume(t testing.TB) {
	t.Helper()
	if err := k.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("resuming the private Kafka: %v", err)
	}
}

// waitReady polls until the broker answers a metadata request and an admin can list topics.
func (k *PrivateKafka) waitReady(t testing.TB, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	sc, err := k.Config.Sarama()
	if err != nil {
		t.Fatal(err)
	}
	var last error
	for ctx.Err() == nil {
		if k.exited() {
			t.Fatal("private Kafka exited during its start (its log is shown below)")
		}
		var admin sarama.ClusterAdmin
		if admin, last = sarama.NewClusterAdmin(k.Config.Brokers, sc); last == nil {
			_, last = admin.ListTopics()
			admin.Close()
			if last == nil {
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	t.Fatalf("private Kafka not ready within %s: %v", within, last)
}

// exited reports whether the broker's process has ended (a zombie until the cleanup reaps it).
func (k *PrivateKafka) exited() bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", k.cmd.Process.Pid))
	if err != nil {
		return true
	}
	// "pid (comm) S ...": the state follows the last ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) == 0 || f[0] == "Z"
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
