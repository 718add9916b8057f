#!/usr/bin/env bash
# Our own PostgreSQL instance (Debian's package), data under .herald/postgres, on 5432 or the
# next free port. It runs as the system user "postgres" because the server refuses to run as root.
source "$(dirname "$0")/lib.sh"

NAME=postgres
DIR="$HERALD_HOME/postgres"
DATA="$DIR/data"
SOCK="$DIR/sock"

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -n $d ]] || die "PostgreSQL binaries not found"
  echo "$d"
}

as_pg() { runuser -u postgres -- "$@"; }

install() {
  apt_install postgresql
  id postgres >/dev/null 2>&1 || die "the postgresql package did not create the postgres user"
  mkdir -p "$DIR" "$SOCK"
  chown postgres:postgres "$DIR" "$SOCK"
  # The postgres user must be able to reach the data dir through the repository's folders.
  chmod o+x "$HERALD_HOME" "$HERALD_ROOT" 2>/dev/null || true
  if [[ ! -f $DATA/PG_VERSION ]]; then
    log "initdb $DATA"
    as_pg "$(pg_bin)/initdb" -D "$DATA" -U herald --auth=trust -E UTF8 --locale=C.UTF-8 >"$HERALD_HOME/logs/postgres-initdb.log" 2>&1 \
      || { cat "$HERALD_HOME/logs/postgres-initdb.log" >&2; die "initdb failed"; }
  fi
}

start() {
  local port
  port=$(pick_port "$NAME" 5432)
  if pid_of "$NAME" >/dev/null; then
    write_env_file "$port"; return 0
  fi
  install
  touch "$HERALD_HOME/logs/postgres.log"; chown postgres:postgres "$HERALD_HOME/logs/postgres.log"
  # A stale postmaster.pid from a killed server would stop the start; pg_ctl checks it is stale.
  as_pg "$(pg_bin)/pg_ctl" -D "$DATA" -l "$HERALD_HOME/logs/postgres.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$SOCK -c max_connections=300 -c shared_buffers=128MB -c fsync=on" >/dev/null \
    || { tail -n 20 "$HERALD_HOME/logs/postgres.log" >&2; die "postgres did not start"; }
  head -n 1 "$DATA/postmaster.pid" >"$HERALD_HOME/run/$NAME.pid"
  wait_port "$port" 30 "$NAME"
  write_env_file "$port"
  log "postgres up on 127.0.0.1:$port"
}

write_env_file() {
  write_env "$NAME" "HERALD_POSTGRES_URL=postgres://herald@127.0.0.1:$1/postgres?sslmode=disable"
}

stop() {
  if pid_of "$NAME" >/dev/null; then
    as_pg "$(pg_bin)/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null || stop_pid "$NAME" 30
  fi
  rm -f "$HERALD_HOME/run/$NAME.pid"
}

status() { status_line "$NAME" "$(cat "$DIR/port" 2>/dev/null || echo 5432)"; }

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 install|start|stop|status" ;;
esac
