#!/usr/bin/env bash
# Checks the k6 load-test scripts (loadtest/*.js) under Node, against the local gateway: k6
# itself cannot be installed here (loadtest/README.md, "The check under Node"). Run by make test
# after the Go tests.
#   - Node: installed from Debian if missing; npm ci in loadtest/check (no dependencies today,
#     the lock file keeps it that way);
#   - Herald: started (stack/herald.sh start) only if the gateway does not answer /readyz; the
#     servers must be up (make test runs stack/up.sh servers first);
#   - an API key for app `loadtest` with a high rate limit, kept in .herald/loadtest-api-key
#     (made again when missing or refused);
#   - then the stand-in's own tests (loadtest/check/test: the stand-in against a fake server,
#     and each script with one defect put in must fail), and every script for a few iterations.
#   stack/loadtest-check.sh [check.mjs flags, e.g. loadtest/social_fanout.js --verbose]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$HERALD_ROOT"

BASE_URL=${BASE_URL:-http://127.0.0.1:8080}
KEY_FILE="$HERALD_HOME/loadtest-api-key"
CHECK="$HERALD_ROOT/loadtest/check"

if ! command -v node >/dev/null; then
  apt_install nodejs
fi
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 18 || (a === 18 && b >= 19) ? 0 : 1)' ||
  die "Node $(node --version) is too old for the k6 check (needs 18.19 or later: module.register)"
if command -v npm >/dev/null; then
  (cd "$CHECK" && npm ci --no-audit --no-fund --silent) || die "npm ci in loadtest/check failed"
fi

ready() { curl -fsS -m 2 "$BASE_URL/readyz" >/dev/null 2>&1; }
if ! ready; then
  log "gateway not ready at $BASE_URL: starting Herald (stack/herald.sh start)"
  "$HERALD_ROOT/stack/herald.sh" start
  ready || die "gateway still not ready at $BASE_URL"
fi

# key_works: the key in KEY_FILE is accepted by the gateway.
key_works() {
  [[ -s $KEY_FILE ]] || return 1
  local code
  code=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(cat "$KEY_FILE")" "$BASE_URL/v1/regions" || true)
  [[ $code == 200 ]]
}
if ! key_works; then
  log "creating an API key for app loadtest (.herald/loadtest-api-key)"
  [[ -s $HERALD_HOME/stack.env ]] && { set -a; source "$HERALD_HOME/stack.env"; set +a; }
  rm -f "$KEY_FILE"
  "$HERALD_HOME/bin/herald" apikey create --config "$HERALD_ROOT/config/local/gateway.yaml" \
    --app loadtest --name loadtest-check --rate-limit 1000000 --out "$KEY_FILE" >/dev/null
  # A new key is seen by the gateway at once (keys are looked up, then cached for 2 s).
  key_works || die "the new loadtest API key is refused by the gateway"
fi

export BASE_URL
API_KEY=$(cat "$KEY_FILE")
export API_KEY
log "k6 scripts under Node: the check's own tests, then every loadtest/*.js against $BASE_URL"
node --test --test-reporter=dot "$CHECK/test/" || die "the k6 check's own tests failed (loadtest/check/test)"
node "$CHECK/check.mjs" --base-url "$BASE_URL" --api-key-file "$KEY_FILE" "$@"
