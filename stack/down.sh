#!/usr/bin/env bash
# make down: stop exactly what make up started (by pid file), Herald first.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
S="$HERALD_ROOT/stack"
"$S/herald.sh" stop
"$S/kafka.sh" stop & k=$!
"$S/cassandra.sh" stop & c=$!
wait $k; wait $c
"$S/redis.sh" stop
"$S/postgres.sh" stop
log "stopped"
