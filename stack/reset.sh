#!/usr/bin/env bash
# make reset: stop everything and wipe all data (installed jars and the binary are kept).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
"$HERALD_ROOT/stack/down.sh"
rm -rf "$HERALD_HOME"/postgres/data "$HERALD_HOME"/postgres-eu-*/data "$HERALD_HOME"/postgres-eu/primary "$HERALD_HOME"/redis/data "$HERALD_HOME"/kafka*/data \
  "$HERALD_HOME"/kafka/nodes "$HERALD_HOME"/kafka/cluster-id "$HERALD_HOME"/cassandra-eu/nodes \
  "$HERALD_HOME"/cassandra/data "$HERALD_HOME"/cassandra-eu-*/data "$HERALD_HOME"/discovery "$HERALD_HOME"/env "$HERALD_HOME"/stack.env \
  "$HERALD_HOME"/demo-api-key "$HERALD_HOME"/schemathesis-api-key "$HERALD_HOME"/loadtest-api-key "$HERALD_HOME"/logs
log "data wiped; make up starts from scratch"
