#!/usr/bin/env bash
# Our own PostgreSQL instances (Debian's package), run as the system user "postgres" because the
# server refuses to run as root. One server per jurisdiction, so streaming replication (which
# copies a whole server) never carries one jurisdiction's data to another's region:
#   main          127.0.0.1:5432  the gateway, central analytics, and the US jurisdiction
#                                  (herald_us: its only region here)
#   eu-west-1     127.0.0.1:5433  the EU jurisdiction's primary (herald_eu), in eu-west-1
#   eu-central-1  127.0.0.1:5434  its streaming standby (hot, read-only) in eu-central-1,
#                                  made by pg_basebackup from the primary, with a replication slot
# The EU regions reach the jurisdiction's database through HERALD_POSTGRES_EU_URL, which lists
# both servers with target_session_attrs=read-write: every connection goes to whichever is the
# primary, so after a promotion they follow it without a config change.
#
# Usage: stack/postgres.sh install|start|stop|status [node]   (every node when none is named)
#        stack/postgres.sh kill NODE        SIGKILL of the node's postmaster (fault tests)
#        stack/postgres.sh promote NODE     make an EU standby the primary (the runbook's step)
#        stack/postgres.sh rejoin NODE      rebuild a former EU primary as a standby of the
#                                           current one (pg_basebackup; its data is discarded)
# The EU pair's current primary is recorded in $HERALD_HOME/postgres-eu/primary: a node that is
# not the recorded primary never starts as one (it must be rejoined), so a lost primary that
# comes back cannot take writes beside the promoted one.
source "$(dirname "$0")/lib.sh"

NODES=(main eu-west-1 eu-central-1)
EU_STATE="$HERALD_HOME/postgres-eu"

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -n $d ]] || die "PostgreSQL binaries not found"
  echo "$d"
}

as_pg() { runuser -u postgres -- "$@"; }

# node_vars NODE: NAME, DIR, DATA, SOCK, PORT of the node.
node_vars() {
  case $1 in
    main) NAME=postgres; PORT=$(pick_port postgres 5432) ;;
    eu-west-1) NAME=postgres-eu-west-1; PORT=$(pick_port "$NAME" 5433) ;;
    eu-central-1) NAME=postgres-eu-central-1; PORT=$(pick_port "$NAME" 5434) ;;
    *) die "unknown postgres node $1 (known: ${NODES[*]})" ;;
  esac
  DIR="$HERALD_HOME/$NAME"
  DATA="$DIR/data"
  SOCK="$DIR/sock"
}

eu_primary() {
  [[ -s $EU_STATE/primary ]] || { mkdir -p "$EU_STATE"; echo eu-west-1 >"$EU_STATE/primary"; }
  cat "$EU_STATE/primary"
}
eu_other() { if [[ $1 == eu-west-1 ]]; then echo eu-central-1; else echo eu-west-1; fi; }
slot_of() { echo "${1//-/_}"; }

install_pkg() {
  apt_install postgresql
  id postgres >/dev/null 2>&1 || die "the postgresql package did not create the postgres user"
  # The postgres user must be able to reach the data dirs through the repository's folders.
  chmod o+x "$HERALD_HOME" "$HERALD_ROOT" 2>/dev/null || true
}

prepare_dirs() {
  mkdir -p "$DIR" "$SOCK"
  chown postgres:postgres "$DIR" "$SOCK"
  touch "$HERALD_HOME/logs/$NAME.log"; chown postgres:postgres "$HERALD_HOME/logs/$NAME.log"
}

initdb_node() {
  [[ -f $DATA/PG_VERSION ]] && return 0
  log "initdb $DATA"
  as_pg "$(pg_bin)/initdb" -D "$DATA" -U herald --auth=trust -E UTF8 --locale=C.UTF-8 >"$HERALD_HOME/logs/$NAME-initdb.log" 2>&1 \
    || { cat "$HERALD_HOME/logs/$NAME-initdb.log" >&2; die "initdb failed"; }
}

# basebackup_from PRIMARY: make this node's data a standby of the EU node PRIMARY, with a
# replication slot on the primary named for this node (the primary keeps the WAL the standby
# has not received, up to max_slot_wal_keep_size).
basebackup_from() {
  local primary=$1 me=$NAME mydata=$DATA pport slot
  node_vars "$primary"; pport=$PORT
  node_vars "${me#postgres-}"
  slot=$(slot_of "${me#postgres-}")
  as_pg "$(pg_bin)/psql" -h 127.0.0.1 -p "$pport" -U herald -d postgres -qAt \
    -c "SELECT pg_drop_replication_slot('$slot') FROM pg_replication_slots WHERE slot_name = '$slot' AND NOT active" >/dev/null
  log "pg_basebackup $me from the EU primary $primary (127.0.0.1:$pport)"
  rm -rf "$mydata"
  as_pg "$(pg_bin)/pg_basebackup" -h 127.0.0.1 -p "$pport" -U herald -D "$mydata" -X stream -R -C -S "$slot" \
    --checkpoint=fast >"$HERALD_HOME/logs/$me-basebackup.log" 2>&1 \
    || { cat "$HERALD_HOME/logs/$me-basebackup.log" >&2; die "pg_basebackup of $me failed"; }
}

start_node() {
  local node=$1
  node_vars "$node"
  if pid_of "$NAME" >/dev/null; then
    if [[ $node == main ]]; then write_env_file; else write_eu_env; fi
    return 0
  fi
  install_pkg
  prepare_dirs
  local role=primary
  case $node in
    main) initdb_node ;;
    eu-*)
      if [[ $(eu_primary) == "$node" ]]; then
        initdb_node
        [[ -f $DATA/standby.signal ]] && die "$NAME is the recorded EU primary but its data is a standby's (promote it: stack/postgres.sh promote $node)"
      else
        role=standby
        [[ -f $DATA/PG_VERSION && ! -f $DATA/standby.signal ]] \
          && die "$NAME was a primary but $(eu_primary) is now: it must not take writes beside it (stack/postgres.sh rejoin $node)"
        [[ -f $DATA/PG_VERSION ]] || basebackup_from "$(eu_primary)"
        node_vars "$node"
      fi ;;
  esac
  # cluster_name is also the application_name a standby reports to its primary
  # (pg_stat_replication): the region it is in, which the regions check is in their jurisdiction.
  local opts="-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$SOCK -c max_connections=300 -c shared_buffers=128MB -c fsync=on"
  [[ $node == main ]] || opts+=" -c cluster_name=$node -c max_slot_wal_keep_size=2GB -c wal_keep_size=256MB -c hot_standby=on"
  # A stale postmaster.pid from a killed server would stop the start; pg_ctl checks it is stale.
  as_pg "$(pg_bin)/pg_ctl" -D "$DATA" -l "$HERALD_HOME/logs/$NAME.log" -w -t 60 start -o "$opts" >/dev/null \
    || { tail -n 20 "$HERALD_HOME/logs/$NAME.log" >&2; die "$NAME did not start"; }
  head -n 1 "$DATA/postmaster.pid" >"$HERALD_HOME/run/$NAME.pid"
  wait_port "$PORT" 30 "$NAME"
  log "$NAME up on 127.0.0.1:$PORT ($role)"
  if [[ $node == main ]]; then write_env_file; else write_eu_env; fi
}

write_env_file() {
  write_env postgres "HERALD_POSTGRES_URL=postgres://herald@127.0.0.1:$PORT/postgres?sslmode=disable"
}

write_eu_env() {
  local a b
  node_vars eu-west-1; a=$PORT
  node_vars eu-central-1; b=$PORT
  write_env postgres-eu "HERALD_POSTGRES_EU_URL=postgres://herald@127.0.0.1:$a,127.0.0.1:$b/postgres?sslmode=disable&target_session_attrs=read-write"
}

stop_node() {
  node_vars "$1"
  if pid_of "$NAME" >/dev/null; then
    as_pg "$(pg_bin)/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null || stop_pid "$NAME" 30
  fi
  rm -f "$HERALD_HOME/run/$NAME.pid"
}

kill_node() { node_vars "$1"; kill_pid "$NAME"; }

# promote NODE: the EU standby NODE becomes the primary (pg_promote waits until it accepts
# writes); the record moves with it, so the former primary only comes back as a standby.
promote_node() {
  local node=$1
  [[ $node == eu-* ]] || die "only an EU node can be promoted"
  [[ $(eu_primary) != "$node" ]] || { log "$node is already the EU primary"; return 0; }
  node_vars "$node"
  pid_of "$NAME" >/dev/null || die "$NAME is not running"
  as_pg "$(pg_bin)/psql" -h 127.0.0.1 -p "$PORT" -U herald -d postgres -qAt -c "SELECT pg_promote(true, 60)" | grep -qx t \
    || die "promoting $NAME failed (log: .herald/logs/$NAME.log)"
  echo "$node" >"$EU_STATE/primary"
  log "$NAME is the EU primary; rejoin $(eu_other "$node") as its standby when it is back (stack/postgres.sh rejoin $(eu_other "$node"))"
}

rejoin_node() {
  local node=$1
  [[ $node == eu-* ]] || die "only an EU node can rejoin"
  [[ $(eu_primary) != "$node" ]] || die "$node is the EU primary"
  stop_node "$node"
  node_vars "$node"
  prepare_dirs
  basebackup_from "$(eu_primary)"
  start_node "$node"
}

status_node() { node_vars "$1"; status_line "$NAME" "$PORT"; }

# each CMD [NODE]: CMD for NODE, or for every node in order (the standby after its primary).
each() {
  local cmd=$1 node=${2:-} n rc=0
  if [[ -n $node ]]; then "$cmd" "$node"; return; fi
  if [[ $cmd == start_node ]]; then
    start_node main
    start_node "$(eu_primary)"
    start_node "$(eu_other "$(eu_primary)")"
    return
  fi
  for n in "${NODES[@]}"; do "$cmd" "$n" || rc=1; done
  return $rc
}

case "${1:-}" in
  install) install_pkg ;;
  start) each start_node "${2:-}" ;;
  stop) each stop_node "${2:-}" ;;
  status) each status_node "${2:-}" ;;
  kill) [[ -n ${2:-} ]] || die "usage: $0 kill NODE"; kill_node "$2" ;;
  promote) [[ -n ${2:-} ]] || die "usage: $0 promote NODE"; promote_node "$2" ;;
  rejoin) [[ -n ${2:-} ]] || die "usage: $0 rejoin NODE"; rejoin_node "$2" ;;
  *) die "usage: $0 install|start|stop|status [node] | kill|promote|rejoin NODE" ;;
esac
