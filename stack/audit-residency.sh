#!/usr/bin/env bash
# The residency audit of the running stack, last step of make test: after every request the
# suite made through the gateway (schemathesis, the fault suite, the stack checks), every store
# of every local region holds only users of its own jurisdiction. Exits 1 on any sighting or
# any store it could not read (herald audit residency, docs/residency.md).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$HERALD_ROOT"
set -a; source "$HERALD_HOME/stack.env"; set +a
log "herald audit residency: every store of every region of config/local"
"$HERALD_HOME/bin/herald" audit residency --config-dir config/local
