#!/usr/bin/env bash
# Local Apache Cassandra 5.0 for Herald, run from the Maven Central jars on Java 17: one cluster
# per jurisdiction, on loopback addresses.
#   us            cluster herald-local, one node on 127.0.0.1 (SimpleSnitch): the US
#                 jurisdiction's region, and the tests' private keyspaces
#   eu-west-1     cluster herald-eu, data centre eu-west-1, node on 127.0.0.2
#   eu-central-1  cluster herald-eu, data centre eu-central-1, node on 127.0.0.3
# Cluster mode (HERALD_CASSANDRA_NODES=3 on a new stack): three nodes per EU data centre,
#   eu-west-1, eu-west-1-2, eu-west-1-3 on 127.0.0.2, .4, .6 and eu-central-1, eu-central-1-2,
#   eu-central-1-3 on .3, .5, .7, 1 GB heaps; the regions' keyspace then has 3 replicas per data
#   centre (HERALD_CASSANDRA_EU_REPLICATION) and LOCAL_QUORUM stands with a node down.
# The EU cluster replicates a keyspace to both data centres (NetworkTopologyStrategy,
# GossipingPropertyFileSnitch); no US node is in it, so no EU replica can land outside the EU.
# The EU regions' keyspace herald_eu is on it.
#
# Usage: stack/cassandra.sh install|start|stop|status [node]   (every node when none is named;
#        contract: see stack/lib.sh)
#        stack/cassandra.sh kill NODE                          (SIGKILL, for fault tests)
#        stack/cassandra.sh nodetool NODE ARGS...              (e.g. nodetool eu-west-1 status)
#        stack/cassandra.sh rejoin NODE                        (an EU node back after a loss: it
#                 serves clients only once repaired; docs/runbook.md "Losing a region")
#
# Layout under $HERALD_HOME (the us node keeps the name "cassandra"):
#   cassandra/lib/          cassandra-all and its runtime jars, shared by every node (mvn_fetch)
#   <node>/conf/            generated cassandra.yaml, logback.xml, cassandra-rackdc.properties
#   <node>/data/            data, commitlog, saved_caches, hints, cdc_raw
#   <node>/logs/            Cassandra's own system.log
#   logs/<node>.log         the JVM's stdout/stderr
#   run/<node>.pid          pid of the java process
#   env/<node>.env          HERALD_CASSANDRA_HOSTS (us), HERALD_CASSANDRA_EU_HOSTS (eu nodes)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SRC="$HERALD_ROOT/stack/cassandra"
LIB="$HERALD_HOME/cassandra/lib"
START_TIMEOUT="${HERALD_CASSANDRA_START_TIMEOUT:-180}"
MODE_FILE="$HERALD_HOME/cassandra-eu/nodes"

# eu_nodes: EU nodes per data centre, 1 or 3 (cluster mode, HERALD_CASSANDRA_NODES=3): the
# recorded mode, else HERALD_CASSANDRA_NODES, else 1. Kept with the stack's data: a keyspace
# replicated to one node per data centre cannot become three without a repair, so changing it
# needs make reset.
eu_nodes() {
  local want=${HERALD_CASSANDRA_NODES:-} have=""
  [[ -s $MODE_FILE ]] && have=$(cat "$MODE_FILE")
  [[ -z $have && -d $HERALD_HOME/cassandra-eu-west-1/data/data ]] && have=1 # made before modes existed
  if [[ -n $have && -n $want && $want != "$have" ]]; then
    die "cassandra: this stack runs $have EU node(s) per data centre; HERALD_CASSANDRA_NODES=$want needs a fresh one (make reset)"
  fi
  local n=${have:-${want:-1}}
  [[ $n == 1 || $n == 3 ]] || die "cassandra: HERALD_CASSANDRA_NODES must be 1 or 3, not $n"
  echo "$n"
}
EU_NODES=$(eu_nodes)
NODES=(us eu-west-1 eu-central-1)
if ((EU_NODES == 3)); then NODES+=(eu-west-1-2 eu-central-1-2 eu-west-1-3 eu-central-1-3); fi

# node_vars NODE: sets the node's NAME, ADDR, CLUSTER, SNITCH, DC, TOKEN, SEEDS, HEAP and ports.
# Ports are fixed once chosen (pick_port remembers them), so data and env stay consistent. The
# EU nodes share their CQL and storage ports (one number, two addresses): the driver dials
# every node of a cluster on one port.
node_vars() {
  case $1 in
    us)
      NAME=cassandra ADDR=127.0.0.1 CLUSTER=herald-local SNITCH=SimpleSnitch DC= TOKEN=0
      # 1g, then 2g, ran out (OOM) under the pipeline benchmark beside other tests.
      HEAP="${HERALD_CASSANDRA_HEAP:-3g}"
      CQL_PORT=$(pick_port cassandra 9042)
      STORAGE_PORT=$(pick_port cassandra-storage 7000)
      JMX_PORT=$(pick_port cassandra-jmx 7199)
      SEEDS="127.0.0.1:$STORAGE_PORT"
      COMMITLOG_SYNC=periodic COMMITLOG_SYNC_OPTION="commitlog_sync_period: 10000ms" CONCURRENT_WRITES=8 ;;
    eu-west-1 | eu-central-1 | eu-west-1-[23] | eu-central-1-[23])
      # Node k of data centre DC: eu-west-1 on 127.0.0.2, .4, .6; eu-central-1 on .3, .5, .7.
      # Tokens split the ring evenly within each data centre (num_tokens 1); node 1's are the
      # one-node tokens, so a stack keeps them whatever its mode.
      local k=1 dc=$1 off=0
      [[ $1 == *-[23] && $1 != eu-*-1 ]] && { k=${1##*-}; dc=${1%-*}; }
      [[ $dc == eu-central-1 ]] && off=1
      NAME=cassandra-$1 CLUSTER=herald-eu SNITCH=GossipingPropertyFileSnitch DC=$dc
      ADDR=127.0.0.$((2 * k + off))
      case $k in
        1) TOKEN=$off ;;
        2) TOKEN=$((6148914691236517205 + off)) ;;
        3) TOKEN=$((-6148914691236517205 + off)) ;;
      esac
      if ((EU_NODES == 3)); then HEAP="${HERALD_CASSANDRA_EU_HEAP:-1g}"; else HEAP="${HERALD_CASSANDRA_EU_HEAP:-2g}"; fi
      CQL_PORT=$(pick_port cassandra-eu 9042 127.0.0.2)
      STORAGE_PORT=$(pick_port cassandra-eu-storage 7000 127.0.0.2)
      # JMX binds 127.0.0.1 for every node: each picked after the one before it, above it.
      JMX_PORT=$(pick_port cassandra-eu-west-1-jmx 7201)
      local prev n
      if [[ $1 != eu-west-1 ]]; then
        prev=cassandra-eu-west-1-jmx
        for n in eu-central-1 eu-west-1-2 eu-central-1-2 eu-west-1-3 eu-central-1-3; do
          JMX_PORT=$(pick_port "cassandra-$n-jmx" $(($(cat "$HERALD_HOME/$prev/port") + 1)))
          [[ $n == "$1" ]] && break
          prev=cassandra-$n-jmx
        done
      fi
      # The first node of each data centre is a seed: either starts without the other, and a
      # restarted one finds the ring.
      SEEDS="127.0.0.2:$STORAGE_PORT,127.0.0.3:$STORAGE_PORT"
      # What a node acknowledged must survive its SIGKILL: with one node per data centre it is
      # the data centre's only replica.
      COMMITLOG_SYNC=group COMMITLOG_SYNC_OPTION="commitlog_sync_group_window: 10ms" CONCURRENT_WRITES=64 ;;
    *) die "unknown cassandra node $1 (known: ${NODES[*]})" ;;
  esac
  DIR="$HERALD_HOME/$NAME"
  CONF="$DIR/conf"
  DATA="$DIR/data"
  LOG="$HERALD_HOME/logs/$NAME.log"
  PIDFILE="$HERALD_HOME/run/$NAME.pid"
}

install() {
  java_bin >/dev/null
  mvn_fetch cassandra "$SRC"
  ls "$LIB"/cassandra-all-5.0.*.jar >/dev/null 2>&1 || die "cassandra-all 5.0 jar missing in $LIB"
  ls "$LIB"/jamm-*.jar >/dev/null 2>&1 || die "jamm jar missing in $LIB"
}

# write_conf: generate the node's cassandra.yaml, logback.xml and rackdc file (every start, so a
# template change or a new port takes effect).
write_conf() {
  mkdir -p "$CONF" "$DATA" "$DIR/logs" "$DIR/triggers"
  sed -e "s|@DATA@|$DATA|g" -e "s|@CQL_PORT@|$CQL_PORT|g" -e "s|@STORAGE_PORT@|$STORAGE_PORT|g" \
    -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@TOKEN@|$TOKEN|g" -e "s|@SNITCH@|$SNITCH|g" \
    -e "s|@SEEDS@|$SEEDS|g" -e "s|@ADDR@|$ADDR|g" \
    -e "s|@COMMITLOG_SYNC@|$COMMITLOG_SYNC|g" -e "s|@COMMITLOG_SYNC_OPTION@|$COMMITLOG_SYNC_OPTION|g" \
    -e "s|@CONCURRENT_WRITES@|$CONCURRENT_WRITES|g" \
    "$SRC/cassandra.yaml.in" >"$CONF/cassandra.yaml.tmp"
  mv "$CONF/cassandra.yaml.tmp" "$CONF/cassandra.yaml"
  cp "$SRC/logback.xml" "$CONF/logback.xml"
  if [[ -n $DC ]]; then
    printf 'dc=%s\nrack=rack1\nprefer_local=true\n' "$DC" >"$CONF/cassandra-rackdc.properties"
  fi
}

# addr_of NODE: the last byte of an EU node's address (node_vars' rule, without picking ports).
addr_of() {
  local k=1 dc=$1 off=0
  [[ $1 == *-[23] && $1 != eu-*-1 ]] && { k=${1##*-}; dc=${1%-*}; }
  [[ $dc == eu-central-1 ]] && off=1
  echo $((2 * k + off))
}

env_line() {
  if [[ $NAME == cassandra ]]; then
    write_env "$NAME" "HERALD_CASSANDRA_HOSTS=127.0.0.1:$CQL_PORT"
  else
    # One variable for the EU cluster: every node, so a client starts with any down, and in
    # cluster mode the replicas per data centre it has room for. The EU regions read both
    # (region.JurisdictionHostsEnv, region.JurisdictionReplicationEnv).
    local hosts="" n
    for n in "${NODES[@]}"; do
      [[ $n == us ]] && continue
      hosts+="${hosts:+,}127.0.0.$(addr_of "$n"):$CQL_PORT"
    done
    # With one node per data centre the regions' files say so already (config/local).
    if ((EU_NODES == 1)); then
      write_env "$NAME" "HERALD_CASSANDRA_EU_HOSTS=$hosts"
    else
      write_env "$NAME" "HERALD_CASSANDRA_EU_HOSTS=$hosts" \
        "HERALD_CASSANDRA_EU_REPLICATION=eu-west-1:$EU_NODES,eu-central-1:$EU_NODES"
    fi
  fi
}

start_node() {
  node_vars "$1"
  if pid_of "$NAME" >/dev/null; then
    # Already running (maybe still starting): just wait for CQL.
    wait_port "$CQL_PORT" "$START_TIMEOUT" "$NAME" "$ADDR"
    env_line
    return 0
  fi
  # Something else holds our remembered CQL port: fail clearly rather than fight over it.
  port_in_use "$CQL_PORT" "$ADDR" && die "port $ADDR:$CQL_PORT is taken by another process (remove $HERALD_HOME/$NAME/port to pick anew)"
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
    "-Dcassandra-rackdc.properties=file://$CONF/cassandra-rackdc.properties"
    "-Dcassandra.storagedir=$DATA"
    "-Dcassandra.logdir=$DIR/logs"
    "-Dcassandra.triggers_dir=$DIR/triggers"   # must exist, or a WARN on every schema change
    "-Dlogback.configurationFile=file://$CONF/logback.xml"
    # JMX server for nodetool, bound to loopback only (local mode), on the node's own port.
    "-Dcassandra.jmx.local.port=$JMX_PORT"
    "-Dcom.sun.management.jmxremote.rmi.port=$JMX_PORT"   # RMI on the same port, not a random one
    -cp "$LIB/*"
    org.apache.cassandra.service.CassandraDaemon
  )
  if [[ -n $DC ]]; then
    # A cluster of more than one node needs a real ring delay: gossip drops a peer that is not
    # yet NORMAL after it (as a "fat client", from the seed list too), and jvm.options' 100 ms
    # made the two EU nodes forget each other at start. The later -D on the command line wins.
    # And durable system keyspaces: with unsafesystem a SIGKILLed node lost the schema it had
    # in memory, then skipped the replay of the commit-log mutations of the tables it no longer
    # knew ("Skipped 147 mutations from unknown (probably removed) CF").
    opts=("${opts[@]:0:${#opts[@]}-3}" "-Dcassandra.ring_delay_ms=15000" "-Dcassandra.unsafesystem=false" "${opts[@]: -3}")
  fi
  if [[ -n ${NO_CLIENTS:-} ]]; then
    # rejoin: the node takes its place in the ring (gossip, replica writes, repair) with its CQL
    # port closed, so no driver routes a query to it before it has what it missed.
    opts=("${opts[@]:0:${#opts[@]}-3}" "-Dcassandra.start_native_transport=false" "${opts[@]: -3}")
  fi

  log "starting $NAME (CQL $ADDR:$CQL_PORT, storage $STORAGE_PORT, JMX $JMX_PORT${DC:+, data centre $DC})"
  printf '\n==== %s starting %s\n' "$(date -u +%FT%TZ)" "$NAME" >>"$LOG"
  rm -f "$PIDFILE"
  # setsid: own session, so it outlives this shell and its terminal. The inner bash writes its
  # own pid and then execs java, so the pid file holds the java process whether or not setsid forked.
  # nice 10: three Cassandra JVMs share two cores with everything else here, and one starting
  # (a minute of JIT and compaction) starved the Herald processes past their request deadline
  # (21 requests over 5 s while the US node restarted); Herald's requests go first.
  (cd "$DIR" && exec nohup setsid nice -n 10 bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" "$java" "${opts[@]}" \
    </dev/null >>"$LOG" 2>&1) &
  local i
  for ((i = 0; i < 50; i++)); do [[ -s $PIDFILE ]] && break; sleep 0.1; done
  [[ -s $PIDFILE ]] || die "$NAME did not start (see $LOG)"

  if [[ -n ${NO_CLIENTS:-} ]]; then
    wait_port "$JMX_PORT" "$START_TIMEOUT" "$NAME" 127.0.0.1 || die "$NAME did not open JMX port $JMX_PORT (see $LOG)"
    log "$NAME is up without clients (pid $(cat "$PIDFILE"))"
    return 0
  fi
  wait_port "$CQL_PORT" "$START_TIMEOUT" "$NAME" "$ADDR" || die "$NAME did not open CQL port $ADDR:$CQL_PORT (see $LOG)"
  env_line
  log "$NAME is up (pid $(cat "$PIDFILE"))"
}

# rejoin NODE: an EU node back after a SIGKILL or an outage. With one node per data centre it
# is its data centre's only replica: what was written while it was down reached it only as hints
# from the other data centre, which are best effort (a hint not stored or not yet replayed when
# its region reads from it again is an inbox item missing for good, or until a repair). So it
# starts with its CQL port closed (its region's queries stay on the other data centre), takes a
# full repair of the jurisdiction's keyspace from its peers, and only then opens the port.
# HERALD_CASSANDRA_REJOIN_KEYSPACES: the keyspaces repaired (space-separated; herald_eu).
rejoin_node() {
  node_vars "$1"
  [[ -n $DC ]] || die "rejoin: $1 is not an EU node (the US cluster has one node: start it)"
  pid_of "$NAME" >/dev/null && die "rejoin: $NAME is running; rejoin is for a node that is down"
  NO_CLIENTS=1 start_node "$1"
  node_vars "$1"
  # A node that has just started may not know the other data centre yet ("Replication factor is
  # 1. No repair is needed"): that is no repair, and it is asked again. On a loaded machine its
  # start and repair took 6.6 minutes.
  local deadline=$((SECONDS + ${HERALD_CASSANDRA_REJOIN_TIMEOUT:-600})) out ks keyspaces
  read -r -a keyspaces <<<"${HERALD_CASSANDRA_REJOIN_KEYSPACES:-herald_eu}"
  for ks in "${keyspaces[@]}"; do
    until out=$(nodetool_node "$1" repair -full "$ks" 2>&1) && grep -q "Repair completed successfully" <<<"$out"; do
      # The JMX port opens before the node has joined the ring; a repair asked too early fails.
      pid_of "$NAME" >/dev/null || die "rejoin: $NAME exited while starting (see $LOG)"
      ((SECONDS < deadline)) || { echo "$out" | tail -n 5 >&2; die "rejoin: no repair of $ks on $NAME within ${HERALD_CASSANDRA_REJOIN_TIMEOUT:-600}s"; }
      sleep 2
    done
  done
  log "$NAME repaired (${keyspaces[*]}); opening its CQL port"
  nodetool_node "$1" enablebinary >/dev/null || die "rejoin: enablebinary on $NAME failed"
  wait_port "$CQL_PORT" 60 "$NAME" "$ADDR" || die "$NAME did not open CQL port $ADDR:$CQL_PORT (see $LOG)"
  env_line
  log "$NAME is back and serves clients (pid $(cat "$PIDFILE"))"
}

# each CMD [NODE]: run CMD for NODE, or for every node at once (the JVMs start in parallel).
each() {
  local cmd=$1 node=${2:-} pids=() n rc=0
  if [[ -n $node ]]; then "$cmd" "$node"; return; fi
  for n in "${NODES[@]}"; do node_vars "$n"; done # ports chosen one node at a time, before the race
  for n in "${NODES[@]}"; do "$cmd" "$n" & pids+=($!); done
  for n in "${pids[@]}"; do wait "$n" || rc=1; done
  return $rc
}

# SIGTERM runs Cassandra's shutdown hook (drain: flush memtables); give it time before SIGKILL.
stop_node() { node_vars "$1"; stop_pid "$NAME" 60; }

kill_node() { node_vars "$1"; kill_pid "$NAME"; }

# nodetool NODE ARGS...: Cassandra's nodetool against the node's JMX port (tpstats, status,
# listpendinghints, repair ...), run from the same jars with the module flags Java 17 needs.
nodetool_node() {
  node_vars "$1"
  shift
  local java line opts=()
  java=$(java_bin)
  while IFS= read -r line; do
    [[ $line == --add-* || $line == -Djdk.* ]] && opts+=("$line")
  done <"$SRC/jvm.options"
  "$java" "${opts[@]}" -Dlogback.configurationFile=file://"$SRC"/logback-tool.xml -cp "$LIB/*" \
    org.apache.cassandra.tools.NodeTool -h 127.0.0.1 -p "$JMX_PORT" "$@"
}

status_node() { node_vars "$1"; status_line "$NAME" "$CQL_PORT" "$ADDR"; }

status_all() {
  local n rc=0
  if [[ -n ${1:-} ]]; then status_node "$1"; return; fi
  for n in "${NODES[@]}"; do status_node "$n" || rc=1; done
  return $rc
}

case "${1:-}" in
  install) install ;;
  start)
    install
    mkdir -p "$(dirname "$MODE_FILE")"
    [[ -s $MODE_FILE ]] || echo "$EU_NODES" >"$MODE_FILE"
    each start_node "${2:-}" ;;
  stop) each stop_node "${2:-}" ;;
  kill) [[ -n ${2:-} ]] || die "usage: $0 kill NODE"; kill_node "$2" ;;
  nodetool) [[ -n ${2:-} ]] || die "usage: $0 nodetool NODE ARGS..."; shift; nodetool_node "$@" ;;
  rejoin) [[ -n ${2:-} ]] || die "usage: $0 rejoin NODE"; install; rejoin_node "$2" ;;
  status) status_all "${2:-}" ;;
  *) die "usage: $0 install|start|stop|status [node] | kill NODE | rejoin NODE | nodetool NODE ARGS..." ;;
esac
