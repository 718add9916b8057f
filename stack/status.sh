#!/usr/bin/env bash
# make status: every server and Herald process with its pid, port and health.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
S="$HERALD_ROOT/stack"
rc=0
for s in postgres redis kafka cassandra; do "$S/$s.sh" status || rc=1; done
"$S/herald.sh" status || rc=1
exit $rc
