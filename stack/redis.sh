#!/usr/bin/env bash
# Our own Redis instance (Debian's package), data under .herald/redis, on 6379 or the next free
# port. Append-only persistence so dedup keys and rate-limit state survive a restart.
source "$(dirname "$0")/lib.sh"

NAME=redis
DIR="$HERALD_HOME/redis"

install() {
  apt_install redis-server
  mkdir -p "$DIR/data"
}

start() {
  local port
  port=$(pick_port "$NAME" 6379)
  if pid_of "$NAME" >/dev/null; then
    write_env "$NAME" "HERALD_REDIS_ADDR=127.0.0.1:$port"; return 0
  fi
  install
  # noeviction: a dedup key or a rate-limit bucket that vanished silently would repeat or
  # over-send; a full Redis is refused loudly instead. 2 GB holds the pipeline benchmark's
  # million-delivery backlog and million-subscriber topic (dedup keys, preference cache) beside
  # a day of tests' keys (24 h TTL).
  # Persistence is the append-only file alone (fsync each second). No RDB snapshots beside it:
  # every snapshot forks and rewrites the whole dataset, 8 s of a core each at the benchmark's
  # size, once a minute under write load, for nothing the AOF does not already keep. The AOF is
  # compacted when it doubles past 256 MB rather than 64 MB, for the same reason.
  # Expired keys are freed in the background: a large topic send's dedup hashes hold tens of
  # thousands of fields each, and freeing one inline would stall every other command.
  cat >"$DIR/redis.conf" <<CONF
bind 127.0.0.1
port $port
protected-mode yes
daemonize no
dir $DIR/data
appendonly yes
appendfsync everysec
save ""
auto-aof-rewrite-min-size 256mb
lazyfree-lazy-expire yes
maxmemory 2gb
maxmemory-policy noeviction
logfile ""
CONF
  setsid nohup redis-server "$DIR/redis.conf" >>"$HERALD_HOME/logs/redis.log" 2>&1 </dev/null &
  echo $! >"$HERALD_HOME/run/$NAME.pid"
  wait_port "$port" 30 "$NAME"
  write_env "$NAME" "HERALD_REDIS_ADDR=127.0.0.1:$port"
  log "redis up on 127.0.0.1:$port"
}

stop() { stop_pid "$NAME" 30; }

status() { status_line "$NAME" "$(cat "$DIR/port" 2>/dev/null || echo 6379)"; }

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 install|start|stop|status" ;;
esac
