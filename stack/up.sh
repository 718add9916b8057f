#!/usr/bin/env bash
# make up: install what is missing, start the servers, migrate, start Herald.
#   stack/up.sh          everything
#   stack/up.sh servers  only Postgres, Redis, Kafka, Cassandra, then migrate (what tests need)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
S="$HERALD_ROOT/stack"
t0=$SECONDS

apt_install curl ca-certificates
"$S/postgres.sh" start
"$S/redis.sh" start
# Resolve jars one server at a time (two Maven runs on one local repository can clash), then
# start the two JVMs at once, since each takes seconds.
"$S/kafka.sh" install
"$S/cassandra.sh" install
"$S/kafka.sh" start & kpid=$!
"$S/cassandra.sh" start & cpid=$!
wait $kpid || die "kafka did not start (log: .herald/logs/kafka.log)"
wait $cpid || die "cassandra did not start (logs: .herald/logs/cassandra*.log)"
cat "$HERALD_HOME"/env/{postgres,postgres-eu,redis,kafka,cassandra,cassandra-eu-west-1}.env >"$HERALD_HOME/stack.env"

"$S/herald.sh" build
# The internal CA and the certificates of the gateway-region and region-analytics hops (mutual
# TLS): created once, reissued only when missing or within 30 days of expiry; a directory from
# before the analytics hop gets analytics' server certificate and the exporters' client
# certificates, the rest stays. The configs name them, so migrate needs them too.
"$HERALD_HOME/bin/herald-dev" pki init --dir "$HERALD_HOME/pki" | sed 's/^/  /'
# The master key that wraps the users' data keys in each jurisdiction's database (user_keys):
# created once, never overwritten (losing it makes every user's Kafka records unreadable). The
# EU regions share herald_eu, so they share its key; the region configs name these files.
for j in eu us; do
  "$HERALD_HOME/bin/herald" masterkey init --file "$HERALD_HOME/keys/user-keys-$j-local-1.key" | sed 's/^/  /'
done
set -a; source "$HERALD_HOME/stack.env"; set +a
seed_policy
cd "$HERALD_ROOT" # the configs name files relative to the repository root
"$HERALD_HOME/bin/herald" migrate --config-dir "$HERALD_ROOT/config/local" >>"$HERALD_HOME/logs/migrate.log" 2>&1 \
  || { tail -n 30 "$HERALD_HOME/logs/migrate.log" >&2; die "migrate failed (log: .herald/logs/migrate.log)"; }

if [[ ${1:-} == servers ]]; then
  log "servers up and migrated in $((SECONDS - t0))s"
  exit 0
fi

if [[ ! -s $HERALD_HOME/demo-api-key ]]; then
  "$HERALD_HOME/bin/herald" apikey create --config "$HERALD_ROOT/config/local/gateway.yaml" \
    --app demo --name demo --out "$HERALD_HOME/demo-api-key" >/dev/null
fi
"$S/herald.sh" start

cat <<MSG

Herald is up ($((SECONDS - t0))s).
  gateway     http://127.0.0.1:8080   (GET /healthz, /readyz; API key in .herald/demo-api-key)
  analytics   http://127.0.0.1:8090   (dashboard and queries: the operator token in .herald/analytics/operator-token)
              https://127.0.0.1:8091  (ingest from the regions' exporters only: mutual TLS, their exporter-<region> certificates in .herald/pki)
  simulators  APNs https://127.0.0.1:8443, FCM :8444, SMTP :2525, SMS :8445; records and faults on :8446 (docs/simulators.md)
  regions     eu-west-1 https://127.0.0.1:8101, eu-central-1 :8102, us-east-1 :8103 (mutual TLS: the client certificate in .herald/pki)
  servers     $(tr '\n' ' ' <"$HERALD_HOME/stack.env")
  logs        .herald/logs/   (make status lists everything; make down stops it)
MSG
