#!/usr/bin/env bash
# Local single-node Apache Kafka 4.4.0 (KRaft: broker + controller in one JVM) from Maven Central jars.
# Usage: stack/kafka.sh install|start|stop|status|wait   (contract: see stack/lib.sh)
#
#   lib   $HERALD_HOME/kafka/lib     jars from stack/kafka/pom.xml (broker, CLI tools, log4j2)
#   conf  $HERALD_HOME/kafka/conf    server.properties + log4j2.xml, regenerated on every start
#   data  $HERALD_HOME/kafka/data    log.dirs (topics, offsets, KRaft metadata); formatted once
#   logs  $HERALD_HOME/logs/kafka.log (JVM stdout/stderr, WARN+), $HERALD_HOME/kafka/logs/server.log (INFO)
#   env   $HERALD_HOME/env/kafka.env  HERALD_KAFKA_BROKERS=127.0.0.1:<port>
#
# Kafka's CLI tools run from the same jars, e.g.
#   java -cp "$HERALD_HOME/kafka/lib/*" org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=kafka
SRC="$HERALD_ROOT/stack/kafka"
BASE="$HERALD_HOME/kafka"
LIB="$BASE/lib" CONF="$BASE/conf" DATA="$BASE/data" KLOGS="$BASE/logs"
LOG="$HERALD_HOME/logs/kafka.log"
PIDFILE="$HERALD_HOME/run/kafka.pid"
START_TIMEOUT=${HERALD_KAFKA_START_TIMEOUT:-90}
# Small heap: the box has 2 cores and runs Cassandra, Postgres and Redis beside Kafka.
HEAP=${HERALD_KAFKA_HEAP:--Xms512m -Xmx768m}

# The broker port this node uses: the one picked before, else the default (status must not pick one).
known_port() { if [[ -s $BASE/port ]]; then cat "$BASE/port"; else echo 9092; fi; }

# running_pid: pid_of, but only for a live Kafka JVM. A zombie does not count: a killed JVM is
# re-parented to this machine's init, which reaps it only after a second or two, and kill -0 succeeds
# on a zombie meanwhile. Nor does an unrelated process that got the pid of a stale pid file.
running_pid() {
  local pid state
  pid=$(pid_of "$NAME") || return 1
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
  mvn_fetch "$NAME" "$SRC"
  # A stale or partial lib (e.g. an interrupted copy) shows up here rather than as a ClassNotFound later.
  compgen -G "$LIB/kafka_2.13-4.4.0.jar" >/dev/null || die "kafka jars missing in $LIB (remove it and re-run install)"
}

# write_conf BROKER_PORT CONTROLLER_PORT: render the templates into $CONF.
write_conf() {
  mkdir -p "$CONF" "$DATA" "$KLOGS"
  sed -e "s|@BROKER_PORT@|$1|g" -e "s|@CONTROLLER_PORT@|$2|g" -e "s|@DATA_DIR@|$DATA|g" \
    "$SRC/server.properties.in" >"$CONF/server.properties.tmp"
  mv "$CONF/server.properties.tmp" "$CONF/server.properties"
  cp "$SRC/log4j2.xml" "$CONF/log4j2.xml"
}

# format_storage: first start only. meta.properties marks a formatted log dir; formatting again
# would refuse (or, forced, lose the cluster id), so existing data - topics, offsets - is kept.
format_storage() {
  [[ -f $DATA/meta.properties ]] && return 0
  local id
  id=$(run_tool kafka.tools.StorageTool random-uuid 2>>"$LOG")
  [[ -n $id ]] || die "kafka: StorageTool random-uuid printed nothing (see $LOG)"
  log "kafka: formatting $DATA (cluster id $id)"
  # --standalone: this node is the whole controller quorum (pairs with controller.quorum.bootstrap.servers).
  run_tool kafka.tools.StorageTool format \
    -t "$id" -c "$CONF/server.properties" --standalone >>"$LOG" 2>&1 \
    || { tail -n 20 "$LOG" >&2; die "kafka: storage format failed"; }
}

cmd_start() {
  local pid port cport i opts
  port=$(known_port)
  if pid=$(running_pid); then
    # Already up: return at once (or wait out a start that is still in progress).
    wait_port "$port" "$START_TIMEOUT" "$NAME" || die "kafka (pid $pid) is not answering on $port (see $LOG)"
    write_env "$NAME" "HERALD_KAFKA_BROKERS=127.0.0.1:$port"
    log "kafka already running (pid $pid) on 127.0.0.1:$port"
    return 0
  fi
  cmd_install
  port=$(pick_port kafka 9092)
  # Controller port from broker+1 (9093 by default): picking both from their defaults could hand
  # the same free port to both when 9092 is taken.
  cport=$(pick_port kafka-controller $((port + 1)))
  # pick_port keeps a port once chosen; if someone else holds it now, say so instead of letting
  # wait_port mistake their listener for ours.
  for i in "$port" "$cport"; do
    port_in_use "$i" && die "kafka: port $i is taken by another process (free it, or delete $BASE/port / $HERALD_HOME/kafka-controller/port to pick another)"
  done
  write_conf "$port" "$cport"
  format_storage
  mapfile -t opts < <(server_opts)
  log "kafka: starting on 127.0.0.1:$port (controller $cport), log $LOG"
  rm -f "$PIDFILE"
  printf '\n===== %s kafka start =====\n' "$(date -Is)" >>"$LOG"
  # setsid + nohup: own session, immune to the caller's SIGHUP, so it outlives the shell.
  # The inner bash writes its own pid and then execs java, so the pid file holds the JVM's pid
  # (not a wrapper), whether or not setsid had to fork.
  setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
    "$JAVA" "${opts[@]}" -cp "$LIB/*" kafka.Kafka "$CONF/server.properties" \
    >>"$LOG" 2>&1 </dev/null &
  for ((i = 0; i < 50; i++)); do [[ -s $PIDFILE ]] && break; sleep 0.1; done
  [[ -s $PIDFILE ]] || die "kafka: no pid file after launch (see $LOG)"
  wait_port "$port" "$START_TIMEOUT" "$NAME" || die "kafka did not come up (see $LOG and $KLOGS/server.log)"
  write_env "$NAME" "HERALD_KAFKA_BROKERS=127.0.0.1:$port"
  log "kafka: up (pid $(cat "$PIDFILE")), HERALD_KAFKA_BROKERS=127.0.0.1:$port"
}

cmd_stop() {
  local pid
  if ! pid=$(running_pid); then
    rm -f "$PIDFILE"
    return 0
  fi
  log "kafka: stopping pid $pid (controlled shutdown)"
  # SIGTERM runs Kafka's shutdown hook: flushes logs and writes clean-shutdown markers, so the next
  # start skips log recovery. 60 s before SIGKILL.
  stop_pid "$NAME" 60
}

cmd_wait() { wait_port "$(known_port)" "$START_TIMEOUT" "$NAME"; }

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status)
    # A pid file left by a killed JVM must read "stopped", not "not answering".
    running_pid >/dev/null || rm -f "$PIDFILE"
    status_line "$NAME" "$(known_port)"
    ;;
  wait) cmd_wait ;;
  *) die "usage: $0 install|start|stop|status|wait" ;;
esac
