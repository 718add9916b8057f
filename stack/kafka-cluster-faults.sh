#!/usr/bin/env bash
# make test-faults-cluster, the last step of make test: the Kafka broker kill, on Kafka's
# cluster mode (three brokers, replication factor 3, min.insync.replicas 2). The rest of
# make test runs on one broker; this moves the running stack's Kafka to three (its topics and
# offsets are wiped, so it runs after everything else), restarts Herald on it, runs the
# kafka-broker-kill row of the fault suite with CI's windows, audits residency, and moves Kafka
# back to one broker, whatever the outcome. Exit 1 when the row misses a judged target.
#   TEST_FAULTS_FLAGS  the fault suite's flags (make passes CI's)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
S="$HERALD_ROOT/stack"
cd "$HERALD_ROOT"

# recluster N: Herald stopped, Kafka stopped and wiped, then the stack up with N brokers.
recluster() {
  "$S/herald.sh" stop
  "$S/kafka.sh" stop
  rm -rf "$HERALD_HOME"/kafka*/data "$HERALD_HOME/kafka/nodes" "$HERALD_HOME/kafka/cluster-id"
  HERALD_KAFKA_NODES=$1 "$S/up.sh" >"$HERALD_HOME/logs/kafka-cluster-up.log" 2>&1 \
    || { tail -n 30 "$HERALD_HOME/logs/kafka-cluster-up.log" >&2; return 1; }
}

restore() {
  local rc=$?
  log "kafka: back to one broker"
  recluster 1 || rc=1
  exit "$rc"
}
trap restore EXIT

t0=$SECONDS
log "kafka: moving this stack to three brokers for the broker kill (topics and offsets wiped)"
recluster 3
log "kafka: three brokers, Herald on them, in $((SECONDS - t0))s"
set -a; source "$HERALD_HOME/stack.env"; set +a
# shellcheck disable=SC2086 # the flags are a list on purpose
"$HERALD_HOME/bin/herald-dev" faults kafka-broker-kill ${TEST_FAULTS_FLAGS:-}
"$S/audit-residency.sh"
