#!/usr/bin/env bash
# Builds the herald binary (what ships) and herald-dev (the workbench: simulators, benchmarks,
# load and fault scenarios, the local certificates) and runs the local Herald processes
# (provider simulators, three regions, gateway, analytics), each with a pid file and a log, on
# top of the servers the other scripts start.
#   stack/herald.sh build|start|stop|status
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN="$HERALD_HOME/bin/herald"
DEV="$HERALD_HOME/bin/herald-dev"
CONF="$HERALD_ROOT/config/local"

# name|listen port|binary and arguments
PROCS=(
  "sim|8446|herald-dev sim --config $CONF/sim.yaml"
  "region-eu-west-1|8101|herald region --config $CONF/region-eu-west-1.yaml"
  "region-eu-central-1|8102|herald region --config $CONF/region-eu-central-1.yaml"
  "region-us-east-1|8103|herald region --config $CONF/region-us-east-1.yaml"
  "analytics|8090|herald analytics --config $CONF/analytics.yaml"
  "gateway|8080|herald gateway --config $CONF/gateway.yaml"
)

# load_env: export the addresses the server scripts recorded.
load_env() {
  local f
  for f in "$HERALD_HOME"/env/*.env; do
    [[ -f $f ]] || continue
    set -a; source "$f"; set +a
  done
}

build() {
  command -v go >/dev/null || die "Go is not installed"
  local ver
  ver=$(git -C "$HERALD_ROOT" describe --always --dirty 2>/dev/null || echo dev)
  mkdir -p "$HERALD_HOME/bin"
  local b
  for b in herald herald-dev; do
    (cd "$HERALD_ROOT" && go build -ldflags "-X main.version=$ver" -o "$HERALD_HOME/bin/$b.new" "./cmd/$b")
    # Replace only when it changed, so running processes are restarted only for a new build.
    if [[ -f $HERALD_HOME/bin/$b ]] && cmp -s "$HERALD_HOME/bin/$b" "$HERALD_HOME/bin/$b.new"; then
      rm -f "$HERALD_HOME/bin/$b.new"
    else
      mv "$HERALD_HOME/bin/$b.new" "$HERALD_HOME/bin/$b"
    fi
  done
}

# url NAME PORT: a process's base URL. Regions serve only HTTPS (mutual TLS for their API;
# /healthz, /readyz and /metrics need no client certificate), verified against the local CA.
url() {
  case $1 in
    region-*) echo "https://127.0.0.1:$2" ;;
    *) echo "http://127.0.0.1:$2" ;;
  esac
}

# ready NAME PORT
ready() {
  local u tls=()
  u=$(url "$1" "$2")
  [[ $u != https:* ]] || tls=(--cacert "$HERALD_HOME/pki/ca.pem")
  curl -fsS -m 2 "${tls[@]}" "$u/readyz" >/dev/null 2>&1
}

start_one() {
  local name=$1 port=$2 args=$3 sum pid bin
  bin="$HERALD_HOME/bin/${args%% *}"
  args=${args#* }
  sum=$(sha256sum "$bin" | cut -c1-16)
  if pid=$(pid_of "herald-$name"); then
    if [[ $(cat "$HERALD_HOME/run/herald-$name.build" 2>/dev/null) == "$sum" ]]; then
      return 0
    fi
    log "restarting $name for the new build"
    stop_pid "herald-$name" 30
  fi
  port_in_use "$port" && die "port $port for $name is taken by another process"
  export HERALD_HOME
  # shellcheck disable=SC2086 # args is a word list by design
  setsid nohup "$bin" $args >>"$HERALD_HOME/logs/herald-$name.log" 2>&1 </dev/null &
  echo $! >"$HERALD_HOME/run/herald-$name.pid"
  echo "$sum" >"$HERALD_HOME/run/herald-$name.build"
}

wait_ready() {
  local name=$1 port=$2 i
  for ((i = 0; i < 300; i++)); do
    ready "$name" "$port" && return 0
    if ! pid_of "herald-$name" >/dev/null; then
      tail -n 20 "$HERALD_HOME/logs/herald-$name.log" >&2
      die "$name exited while starting (log: .herald/logs/herald-$name.log)"
    fi
    sleep 0.2
  done
  die "$name not ready after 60s (log: .herald/logs/herald-$name.log)"
}

start() {
  [[ -x $BIN && -x $DEV ]] || build
  load_env
  # Config files name paths relative to the repository root.
  cd "$HERALD_ROOT"
  local p name port args
  # The gateway's directory secret: made once, kept across restarts (the directory's keys
  # depend on it).
  if [[ ! -s $HERALD_HOME/gateway/directory-secret ]]; then
    mkdir -p "$HERALD_HOME/gateway"
    (umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$HERALD_HOME/gateway/directory-secret")
  fi
  # Central analytics' operator token (the query API and the dashboard's sign-in): made once,
  # kept across restarts, read by config/local/analytics.yaml (operator.token_file).
  if [[ ! -s $HERALD_HOME/analytics/operator-token ]]; then
    mkdir -p "$HERALD_HOME/analytics"
    (umask 077 && head -c 36 /dev/urandom | base64 -w0 | tr '+/' '-_' >"$HERALD_HOME/analytics/operator-token")
  fi
  seed_policy
  # The internal CA and the certificates of the gateway-region hop (make up issued them
  # already; this covers a start on its own and renews what is near expiry).
  "$DEV" pki init --dir "$HERALD_HOME/pki" >/dev/null
  # The simulators first: they create the credentials the regions' dispatchers load.
  IFS='|' read -r name port args <<<"${PROCS[0]}"
  start_one "$name" "$port" "$args"
  wait_ready "$name" "$port"
  for p in "${PROCS[@]:1}"; do
    IFS='|' read -r name port args <<<"$p"
    start_one "$name" "$port" "$args"
  done
  # Wait for every process to be ready (each checks its stores, the gateway its regions).
  for p in "${PROCS[@]}"; do
    IFS='|' read -r name port args <<<"$p"
    wait_ready "$name" "$port"
  done
  wait_gateway_sees_regions
}

# wait_gateway_sees_regions: the gateway is ready once one region answers; make up returns
# only when it routes to every region it starts (its discovery refresh lags a region's start
# by up to its health interval).
wait_gateway_sees_regions() {
  local p name port args i r m want=() missing
  for p in "${PROCS[@]}"; do
    IFS='|' read -r name port args <<<"$p"
    [[ $name == region-* ]] && want+=("${name#region-}")
  done
  for ((i = 0; i < 150; i++)); do
    missing=""
    m=$(curl -fsS -m 2 http://127.0.0.1:8080/metrics 2>/dev/null || true)
    for r in "${want[@]}"; do
      grep -Eq "^herald_gateway_region_healthy_endpoints\{region=\"$r\"\} [1-9]" <<<"$m" || missing+=" $r"
    done
    [[ -z $missing ]] && return 0
    sleep 0.2
  done
  die "the gateway sees no healthy endpoint for:$missing after 30s (log: .herald/logs/herald-gateway.log)"
}

stop() {
  local p name port args
  # Gateway first, so nothing new is routed to regions that are stopping.
  for ((i = ${#PROCS[@]} - 1; i >= 0; i--)); do
    IFS='|' read -r name port args <<<"${PROCS[$i]}"
    stop_pid "herald-$name" 30
  done
}

status() {
  local p name port args rc=0 pid state
  for p in "${PROCS[@]}"; do
    IFS='|' read -r name port args <<<"$p"
    if pid=$(pid_of "herald-$name"); then
      state="not ready"; ready "$name" "$port" && state=ready
      printf '%-22s pid %-8s %-23s %s\n' "$name" "$pid" "$(url "$name" "$port")" "$state"
      [[ $state == ready ]] || rc=1
    else
      printf '%-22s %-12s %-23s stopped\n' "$name" "-" "$(url "$name" "$port")"; rc=1
    fi
  done
  return $rc
}

case "${1:-}" in
  build) build ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 build|start|stop|status" ;;
esac
