#!/usr/bin/env bash
# Local single-node Apache Cassandra 5.0 for Herald, run from the Maven Central jars on Java 17.
# Usage: stack/cassandra.sh install|start|stop|status   (contract: see stack/lib.sh)
#
# Layout under $HERALD_HOME:
#   cassandra/lib/      cassandra-all and its runtime jars (mvn_fetch, from stack/cassandra/pom.xml)
#   cassandra/conf/     generated cassandra.yaml and logback.xml
#   cassandra/data/     data, commitlog, saved_caches, hints, cdc_raw
#   cassandra/logs/     Cassandra's own system.log
#   logs/cassandra.log  the JVM's stdout/stderr
#   run/cassandra.pid   pid of the java process
#   env/cassandra.env   HERALD_CASSANDRA_HOSTS=127.0.0.1:<cql port>
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=cassandra
SRC="$HERALD_ROOT/stack/cassandra"
DIR="$HERALD_HOME/cassandra"
LIB="$DIR/lib"
CONF="$DIR/conf"
DATA="$DIR/data"
LOG="$HERALD_HOME/logs/$NAME.log"
PIDFILE="$HERALD_HOME/run/$NAME.pid"
HEAP="${HERALD_CASSANDRA_HEAP:-3g}"          # -Xms/-Xmx; 1g, then 2g, ran out (OOM) under the pipeline benchmark beside other tests
START_TIMEOUT="${HERALD_CASSANDRA_START_TIMEOUT:-180}"

# Ports are fixed once chosen (pick_port remembers them), so data and env stay consistent.
CQL_PORT=$(pick_port "$NAME" 9042)
STORAGE_PORT=$(pick_port "$NAME-storage" 7000)
JMX_PORT=$(pick_port "$NAME-jmx" 7199)

install() {
  java_bin >/dev/null
  mvn_fetch "$NAME" "$SRC"
  ls "$LIB"/cassandra-all-5.0.*.jar >/dev/null 2>&1 || die "cassandra-all 5.0 jar missing in $LIB"
  ls "$LIB"/jamm-*.jar >/dev/null 2>&1 || die "jamm jar missing in $LIB"
}

# write_conf: generate cassandra.yaml and logback.xml from the templates (every start, so a
# template change or a new port takes effect).
write_conf() {
  mkdir -p "$CONF" "$DATA" "$DIR/logs" "$DIR/triggers"
  sed -e "s|@DATA@|$DATA|g" -e "s|@CQL_PORT@|$CQL_PORT|g" -e "s|@STORAGE_PORT@|$STORAGE_PORT|g" \
    "$SRC/cassandra.yaml.in" >"$CONF/cassandra.yaml.tmp"
  mv "$CONF/cassandra.yaml.tmp" "$CONF/cassandra.yaml"
  cp "$SRC/logback.xml" "$CONF/logback.xml"
}

start() {
  if pid_of "$NAME" >/dev/null; then
    # Already running (maybe still starting): just wait for CQL.
    wait_port "$CQL_PORT" "$START_TIMEOUT" "$NAME"
    write_env "$NAME" "HERALD_CASSANDRA_HOSTS=127.0.0.1:$CQL_PORT"
    return 0
  fi
  # Something else holds our remembered CQL port: fail clearly rather than fight over it.
  port_in_use "$CQL_PORT" && die "port $CQL_PORT is taken by another process (remove $DIR/port to pick anew)"
  install
  write_conf

  local java jamm opts=() line
  java=$(java_bin)
  jamm=$(ls "$LIB"/jamm-*.jar | head -n1)
  while IFS= read -r line; do
    [[ $line == -* ]] && opts+=("$line")
  done <"$SRC/jvm.options"
  opts+=(
    "-Xms$HEAP" "-Xmx$HEAP"
    # jamm measures object sizes for memtable accounting; Cassandra refuses to start without it.
    "-javaagent:$jamm"
    "-Dcassandra.config=file://$CONF/cassandra.yaml"
    "-Dcassandra.storagedir=$DATA"
    "-Dcassandra.logdir=$DIR/logs"
    "-Dcassandra.triggers_dir=$DIR/triggers"   # must exist, or a WARN on every schema change
    "-Dlogback.configurationFile=file://$CONF/logback.xml"
    # JMX server for nodetool, bound to loopback only (local mode), on our own port.
    "-Dcassandra.jmx.local.port=$JMX_PORT"
    "-Dcom.sun.management.jmxremote.rmi.port=$JMX_PORT"   # RMI on the same port, not a random one
    -cp "$LIB/*"
    org.apache.cassandra.service.CassandraDaemon
  )

  log "starting cassandra (CQL 127.0.0.1:$CQL_PORT, storage $STORAGE_PORT, JMX $JMX_PORT)"
  printf '\n==== %s starting cassandra\n' "$(date -u +%FT%TZ)" >>"$LOG"
  rm -f "$PIDFILE"
  # setsid: own session, so it outlives this shell and its terminal. The inner bash writes its
  # own pid and then execs java, so the pid file holds the java process whether or not setsid forked.
  (cd "$DIR" && exec nohup setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" "$java" "${opts[@]}" \
    </dev/null >>"$LOG" 2>&1) &
  local i
  for ((i = 0; i < 50; i++)); do [[ -s $PIDFILE ]] && break; sleep 0.1; done
  [[ -s $PIDFILE ]] || die "cassandra did not start (see $LOG)"

  wait_port "$CQL_PORT" "$START_TIMEOUT" "$NAME" || die "cassandra did not open CQL port $CQL_PORT (see $LOG)"
  write_env "$NAME" "HERALD_CASSANDRA_HOSTS=127.0.0.1:$CQL_PORT"
  log "cassandra is up (pid $(cat "$PIDFILE"))"
}

stop() {
  # SIGTERM runs Cassandra's shutdown hook (drain: flush memtables); give it time before SIGKILL.
  stop_pid "$NAME" 60
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status_line "$NAME" "$CQL_PORT" ;;
  *) die "usage: $0 install|start|stop|status" ;;
esac
