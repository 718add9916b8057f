#!/usr/bin/env bash
# Local Apache Kafka 4.4.0 (KRaft: broker + controller in one JVM per node) from Maven Central jars.
# One node by default; cluster mode runs three (HERALD_KAFKA_NODES=3: a controller quorum of
# three, replication factor 3 and min.insync.replicas 2 for every topic, so one broker may die).
# The mode is chosen when the stack's Kafka is first formatted and kept (recorded in
# $HERALD_HOME/kafka/nodes); changing it needs `make reset`.
# Usage: stack/kafka.sh install|start|stop|status|wait [node]   (every node when none is named)
#        stack/kafka.sh kill NODE                               (SIGKILL, for fault tests)
#
#   lib   $HERALD_HOME/kafka/lib     jars from stack/kafka/pom.xml (broker, CLI tools, log4j2), shared
#   conf  $HERALD_HOME/kafka[-N]/conf    server.properties + log4j2.xml, regenerated on every start
#   data  $HERALD_HOME/kafka[-N]/data    log.dirs (topics, offsets, KRaft metadata); formatted once
#   logs  $HERALD_HOME/logs/kafka[-N].log (JVM stdout/stderr, WARN+), $HERALD_HOME/kafka[-N]/logs/server.log (INFO)
#   env   $HERALD_HOME/env/kafka.env  HERALD_KAFKA_BROKERS=<every node>, HERALD_KAFKA_REPLICATION
#
# Kafka's CLI tools run from the same jars, e.g.
#   java -cp "$HERALD_HOME/kafka/lib/*" org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SRC="$HERALD_ROOT/stack/kafka"
LIB="$HERALD_HOME/kafka/lib"
MODE_FILE="$HERALD_HOME/kafka/nodes"
# A broker restarted after a SIGKILL recovers every partition and replays the metadata log
# first: two minutes on a loaded 2-core machine, with hundreds of partitions.
START_TIMEOUT=${HERALD_KAFKA_START_TIMEOUT:-240}
# Small heap: the box has 2 cores and runs Cassandra, Postgres and Redis beside Kafka.
HEAP=${HERALD_KAFKA_HEAP:--Xms512m -Xmx768m}

# node_count: the recorded mode, else HERALD_KAFKA_NODES, else 1. A stack formatted in one mode
# refuses the other: its topics were made with that replication.
node_count() {
  local want=${HERALD_KAFKA_NODES:-} have=""
  [[ -s $MODE_FILE ]] && have=$(cat "$MODE_FILE")
  [[ -z $have && -f $HERALD_HOME/kafka/data/meta.properties ]] && have=1 # formatted before modes existed
  if [[ -n $have && -n $want && $want != "$have" ]]; then
    die "kafka: this stack runs $have node(s); HERALD_KAFKA_NODES=$want needs a fresh one (make reset)"
  fi
  local n=${have:-${want:-1}}
  [[ $n == 1 || $n == 3 ]] || die "kafka: HERALD_KAFKA_NODES must be 1 or 3, not $n"
  echo "$n"
}

# node_vars I [known]: node I's NAME, BASE, CONF, DATA, KLOGS, LOG, PIDFILE, PORT and CPORT.
# Node 1 is the single node's layout (kafka/, 9092-9093); node i listens on the ports after node
# i-1's (9094-9095, 9096-9097 when free).
# Ports are fixed once chosen (pick_port); status must not pick one.
node_vars() {
  local i=$1
  if [[ $i == 1 ]]; then NAME=kafka; else NAME=kafka-$i; fi
  BASE="$HERALD_HOME/$NAME" CONF="$HERALD_HOME/$NAME/conf" DATA="$HERALD_HOME/$NAME/data" KLOGS="$HERALD_HOME/$NAME/logs"
  LOG="$HERALD_HOME/logs/$NAME.log"
  PIDFILE="$HERALD_HOME/run/$NAME.pid"
  if [[ ${2:-} == known ]]; then
    PORT=$(cat "$BASE/port" 2>/dev/null || echo $((9092 + 2 * (i - 1))))
    return
  fi
  # Node i's default is the port after node i-1's controller port: nodes are picked in order,
  # and two nodes never get one free port.
  local def=9092 prev
  if ((i > 1)); then
    if ((i == 2)); then prev=kafka-controller; else prev="kafka-$((i - 1))-controller"; fi
    def=$(($(cat "$HERALD_HOME/$prev/port") + 1))
  fi
  PORT=$(pick_port "$NAME" "$def")
  # Controller port from broker+1: picking both from their defaults could hand the same free
  # port to both when the broker's is taken.
  CPORT=$(pick_port "$NAME-controller" $((PORT + 1)))
}

# running_pid NAME: pid_of, but only for a live Kafka JVM. A zombie does not count: a killed JVM is
# re-parented to this machine's init, which reaps it only after a second or two, and kill -0 succeeds
# on a zombie meanwhile. Nor does an unrelated process that got the pid of a stale pid file.
running_pid() {
  local pid state
  pid=$(pid_of "$1") || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $state != Z ]] || return 1
  [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *" kafka.Kafka "* ]] || return 1
  echo "$pid"
}

# Broker JVM flags (after Kafka's kafka-server-start.sh, with a smaller heap).
server_opts() {
  # shellcheck disable=SC2206 # HEAP is a list of flags on purpose
  local heap=($HEAP)
  printf '%s\n' "${heap[@]}" \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
    "-Xlog:gc*:file=$KLOGS/gc.log:time,tags:filecount=4,filesize=10M" \
    -Djava.awt.headless=true \
    "-Dkafka.logs.dir=$KLOGS" \
    "-Dlog4j2.configurationFile=$CONF/log4j2.xml"
}

# run_tool CLASS ARGS...: a Kafka CLI class from the same jars, small heap, log4j's default (errors only).
run_tool() { "$JAVA" -Xmx256m -XX:+UseSerialGC -cp "$LIB/*" "$@"; }

cmd_install() {
  JAVA=$(java_bin)
  mvn_fetch kafka "$SRC"
  # A stale or partial lib (e.g. an interrupted copy) shows up here rather than as a ClassNotFound later.
  compgen -G "$LIB/kafka_2.13-4.4.0.jar" >/dev/null || die "kafka jars missing in $LIB (remove it and re-run install)"
}

# voters N: the static controller quorum of a cluster of N nodes.
voters() {
  local n=$1 i out=""
  for ((i = 1; i <= n; i++)); do
    node_vars "$i"
    out+="${out:+,}$i@127.0.0.1:$CPORT"
  done
  echo "$out"
}

# write_conf I N: render node I's templates into its conf dir.
write_conf() {
  local i=$1 n=$2 quorum rf=1 isr=1 cs=false
  node_vars "$i"
  if ((n == 1)); then
    quorum="controller.quorum.bootstrap.servers=127.0.0.1:$CPORT"
  else
    quorum="controller.quorum.voters=$(voters "$n")"
    rf=3 isr=2 cs=true
    node_vars "$i"
  fi
  mkdir -p "$CONF" "$DATA" "$KLOGS"
  sed -e "s|@BROKER_PORT@|$PORT|g" -e "s|@CONTROLLER_PORT@|$CPORT|g" -e "s|@DATA_DIR@|$DATA|g" \
    -e "s|@NODE_ID@|$i|g" -e "s|@QUORUM@|$quorum|g" -e "s|@RF@|$rf|g" -e "s|@MIN_ISR@|$isr|g" -e "s|@CONTROLLED_SHUTDOWN@|$cs|g" \
    "$SRC/server.properties.in" >"$CONF/server.properties.tmp"
  mv "$CONF/server.properties.tmp" "$CONF/server.properties"
  cp "$SRC/log4j2.xml" "$CONF/log4j2.xml"
}

# format_storage I N: first start only. meta.properties marks a formatted log dir; formatting
# again would refuse (or, forced, lose the cluster id), so existing data - topics, offsets - is
# kept. Every node of a cluster takes the one cluster id.
format_storage() {
  local i=$1 n=$2 id idfile="$HERALD_HOME/kafka/cluster-id"
  node_vars "$i"
  [[ -f $DATA/meta.properties ]] && return 0
  if [[ ! -s $idfile ]]; then
    mkdir -p "$(dirname "$idfile")"
    id=$(run_tool kafka.tools.StorageTool random-uuid 2>>"$LOG")
    [[ -n $id ]] || die "kafka: StorageTool random-uuid printed nothing (see $LOG)"
    echo "$id" >"$idfile"
  fi
  id=$(cat "$idfile")
  log "kafka: formatting $DATA (cluster id $id, node $i of $n)"
  # One node: --standalone, the node is the whole controller quorum (pairs with
  # controller.quorum.bootstrap.servers). Three: the static quorum of controller.quorum.voters.
  local standalone=()
  ((n == 1)) && standalone=(--standalone)
  run_tool kafka.tools.StorageTool format -t "$id" -c "$CONF/server.properties" "${standalone[@]}" >>"$LOG" 2>&1 \
    || { tail -n 20 "$LOG" >&2; die "kafka: storage format of node $i failed"; }
  mkdir -p "$(dirname "$MODE_FILE")"
  echo "$n" >"$MODE_FILE"
}

write_env_file() {
  local n=$1 i brokers=""
  for ((i = 1; i <= n; i++)); do
    node_vars "$i" known
    brokers+="${brokers:+,}127.0.0.1:$PORT"
  done
  local rf=1
  ((n == 1)) || rf=3
  # HERALD_KAFKA_REPLICATION: the replication factor of the topics the regions create.
  write_env kafka "HERALD_KAFKA_BROKERS=$brokers" "HERALD_KAFKA_REPLICATION=$rf"
}

# launch I N: start node I's JVM unless it runs; returns at once (a cluster's nodes wait for a
# quorum of each other, so they are started together and then waited for).
launch() {
  local i=$1 n=$2 pid opts
  node_vars "$i"
  if pid=$(running_pid "$NAME"); then
    return 0
  fi
  for p in "$PORT" "$CPORT"; do
    port_in_use "$p" && die "kafka: port $p is taken by another process (free it, or delete $BASE/port / $HERALD_HOME/$NAME-controller/port to pick another)"
  done
  write_conf "$i" "$n"
  format_storage "$i" "$n"
  node_vars "$i"
  mapfile -t opts < <(server_opts)
  log "kafka: starting node $i on 127.0.0.1:$PORT (controller $CPORT), log $LOG"
  rm -f "$PIDFILE"
  printf '\n===== %s kafka start =====\n' "$(date -Is)" >>"$LOG"
  # setsid + nohup: own session, immune to the caller's SIGHUP, so it outlives the shell.
  # The inner bash writes its own pid and then execs java, so the pid file holds the JVM's pid
  # (not a wrapper), whether or not setsid had to fork.
  setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
    "$JAVA" "${opts[@]}" -cp "$LIB/*" kafka.Kafka "$CONF/server.properties" \
    >>"$LOG" 2>&1 </dev/null &
  local k
  for ((k = 0; k < 50; k++)); do [[ -s $PIDFILE ]] && break; sleep 0.1; done
  [[ -s $PIDFILE ]] || die "kafka: no pid file for node $i after launch (see $LOG)"
}

cmd_start() {
  local n i only=${1:-}
  n=$(node_count)
  cmd_install
  for ((i = 1; i <= n; i++)); do
    [[ -n $only && $only != "$i" ]] && continue
    launch "$i" "$n"
  done
  for ((i = 1; i <= n; i++)); do
    [[ -n $only && $only != "$i" ]] && continue
    node_vars "$i"
    wait_port "$PORT" "$START_TIMEOUT" "$NAME" || die "kafka node $i did not come up (see $LOG and $KLOGS/server.log)"
  done
  write_env_file "$n"
  log "kafka: up ($n node(s)), $(head -n 1 "$HERALD_HOME/env/kafka.env")"
}

cmd_stop() {
  local n i pid
  n=$(node_count)
  for ((i = 1; i <= n; i++)); do
    [[ -n ${1:-} && $1 != "$i" ]] && continue
    node_vars "$i" known
    if ! pid=$(running_pid "$NAME"); then
      rm -f "$PIDFILE"
      continue
    fi
    log "kafka: stopping node $i, pid $pid (SIGTERM; a controlled shutdown when there are three)"
    # SIGTERM runs Kafka's shutdown hook: flushes logs and writes clean-shutdown markers, so the
    # next start skips log recovery. 60 s before SIGKILL. The nodes of a cluster stop together.
    stop_pid "$NAME" 60 &
  done
  wait
}

cmd_status() {
  local n i rc=0
  n=$(node_count)
  for ((i = 1; i <= n; i++)); do
    [[ -n ${1:-} && $1 != "$i" ]] && continue
    node_vars "$i" known
    # A pid file left by a killed JVM must read "stopped", not "not answering".
    running_pid "$NAME" >/dev/null || rm -f "$PIDFILE"
    status_line "$NAME" "$PORT" || rc=1
  done
  return $rc
}

cmd_wait() {
  local n i
  n=$(node_count)
  for ((i = 1; i <= n; i++)); do
    node_vars "$i" known
    wait_port "$PORT" "$START_TIMEOUT" "$NAME" || return 1
  done
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start "${2:-}" ;;
  stop) cmd_stop "${2:-}" ;;
  status) cmd_status "${2:-}" ;;
  wait) cmd_wait ;;
  kill) [[ -n ${2:-} ]] || die "usage: $0 kill NODE"; node_vars "$2" known; kill_pid "$NAME" ;;
  *) die "usage: $0 install|start|stop|status|wait [node] | kill NODE" ;;
esac
