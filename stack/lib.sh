#!/usr/bin/env bash
# Shared helpers for the local-stack scripts. Source it; do not run it.
#
# Contract every server script (stack/<name>.sh) follows:
#   stack/<name>.sh install   install what is missing (idempotent, cached)
#   stack/<name>.sh start     start if not running, wait until it answers (idempotent)
#   stack/<name>.sh stop      stop exactly the process in its pid file
#   stack/<name>.sh status    one line: name, pid, port, health; exit 0 if healthy
# State lives under $HERALD_HOME/<name>/ (data, conf), logs under $HERALD_HOME/logs/<name>.log,
# the pid in $HERALD_HOME/run/<name>.pid, and the addresses clients need in
# $HERALD_HOME/env/<name>.env (KEY=VALUE lines, read by make and the tests).
set -euo pipefail

HERALD_ROOT="${HERALD_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
HERALD_HOME="${HERALD_HOME:-$HERALD_ROOT/.herald}"
export HERALD_ROOT HERALD_HOME
mkdir -p "$HERALD_HOME/run" "$HERALD_HOME/logs" "$HERALD_HOME/env"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

# port_in_use PORT [HOST]: true if something listens on HOST:PORT (HOST 127.0.0.1 by default).
port_in_use() { (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }

# pick_port NAME DEFAULT [HOST]: the port NAME used before (kept in $HERALD_HOME/<name>/port)
# or DEFAULT, or the next free port on HOST after it when DEFAULT is taken by someone else.
pick_port() {
  local name=$1 port=$2 host=${3:-127.0.0.1} file="$HERALD_HOME/$1/port"
  if [[ -s $file ]]; then cat "$file"; return; fi
  while port_in_use "$port" "$host"; do port=$((port + 1)); done
  mkdir -p "$HERALD_HOME/$name"
  echo "$port" >"$file"
  echo "$port"
}

# pid_of NAME: prints the pid from the pid file if that process is alive.
pid_of() {
  local f="$HERALD_HOME/run/$1.pid" pid
  [[ -s $f ]] || return 1
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null || return 1
  # A killed process stays a zombie for a moment; it is not running.
  [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
  echo "$pid"
}

# wait_port PORT SECONDS [NAME [HOST]]: wait until HOST:PORT (127.0.0.1 by default) accepts
# connections; fails early when NAME's process has died.
wait_port() {
  local port=$1 secs=$2 name=${3:-} host=${4:-127.0.0.1} i
  for ((i = 0; i < secs * 5; i++)); do
    port_in_use "$port" "$host" && return 0
    if [[ -n $name ]] && ! pid_of "$name" >/dev/null; then
      log "$name exited while starting; last log lines:"
      tail -n 30 "$HERALD_HOME/logs/$name.log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
  log "timed out after ${secs}s waiting for port $port"
  return 1
}

# stop_pid NAME [SECONDS]: SIGTERM the recorded process, SIGKILL after SECONDS (default 30).
stop_pid() {
  local name=$1 secs=${2:-30} pid i
  if ! pid=$(pid_of "$name"); then rm -f "$HERALD_HOME/run/$name.pid"; return 0; fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) did not stop in ${secs}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$HERALD_HOME/run/$name.pid"
}

# kill_pid NAME: SIGKILL the recorded process (a fault test's crash), wait until it is gone.
kill_pid() {
  local pid
  pid=$(pid_of "$1") || { rm -f "$HERALD_HOME/run/$1.pid"; return 0; }
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; do sleep 0.1; done
  rm -f "$HERALD_HOME/run/$1.pid"
}

# write_env NAME KEY=VALUE...: record how clients reach NAME.
write_env() {
  local name=$1; shift
  printf '%s\n' "$@" >"$HERALD_HOME/env/$name.env"
}

# status_line NAME PORT [HOST]: prints a status line and returns 0 when NAME runs and
# HOST:PORT (127.0.0.1 by default) answers.
status_line() {
  local name=$1 port=$2 host=${3:-127.0.0.1} pid
  if pid=$(pid_of "$name"); then
    if port_in_use "$port" "$host"; then
      printf '%-14s pid %-8s %s:%-6s healthy\n' "$name" "$pid" "$host" "$port"; return 0
    fi
    printf '%-14s pid %-8s %s:%-6s not answering\n' "$name" "$pid" "$host" "$port"; return 1
  fi
  printf '%-14s %-12s %s:%-6s stopped\n' "$name" "-" "$host" "$port"; return 1
}

# java_bin: the Java 17 the servers need.
java_bin() {
  local j
  for j in "${JAVA_HOME:-}/bin/java" /usr/lib/jvm/java-17-openjdk-amd64/bin/java "$(command -v java || true)"; do
    if [[ -x $j ]] && "$j" -version 2>&1 | grep -q 'version "17'; then echo "$j"; return; fi
  done
  die "Java 17 not found (set JAVA_HOME)"
}

# mvn_fetch NAME POMDIR: resolve POMDIR/pom.xml's dependencies into $HERALD_HOME/NAME/lib once;
# redone only when the pom changes.
mvn_fetch() {
  local name=$1 pomdir=$2 lib="$HERALD_HOME/$1/lib" stamp sum
  sum=$(sha256sum "$pomdir/pom.xml" | cut -c1-16)
  stamp="$lib/.resolved-$sum"
  [[ -f $stamp ]] && return 0
  command -v mvn >/dev/null || { log "installing maven"; apt_install maven; }
  log "resolving $name jars from Maven Central (first time only)"
  rm -rf "$lib"; mkdir -p "$lib"
  mvn -q -B -f "$pomdir/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$lib" >"$HERALD_HOME/logs/$name-maven.log" 2>&1 \
    || { tail -n 40 "$HERALD_HOME/logs/$name-maven.log" >&2; die "maven could not resolve $name"; }
  touch "$stamp"
}

# apt_install PKG...: install Debian packages that are missing.
apt_install() {
  local missing=() p
  for p in "$@"; do
    # "install ok installed" only: a removed package keeps its config and still answers dpkg -s.
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "apt-get install ${missing[*]}"
  if [[ ! -f $HERALD_HOME/.apt-updated ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && touch "$HERALD_HOME/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# seed_policy: the residency policy lives in discovery (the file backend's KV here). Seeded once
# from config/local; after that, edit it in discovery (the gateway follows changes live).
# Migrate and the regions check their Cassandra replication against it, so it comes first.
seed_policy() {
  local policy="$HERALD_HOME/discovery/kv/herald/residency/policy"
  if [[ ! -s $policy ]]; then
    mkdir -p "$(dirname "$policy")"
    cp "$HERALD_ROOT/config/local/residency-policy.yaml" "$policy.tmp" && mv "$policy.tmp" "$policy"
  fi
}
