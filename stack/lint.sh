#!/usr/bin/env bash
# make lint (and make test): golangci-lint with the checked-in .golangci.yml. The pinned version
# is built once from the Go module proxy into $HERALD_HOME/bin (about 2 minutes) and reused.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VERSION=v2.15.0
BIN=$HERALD_HOME/bin/golangci-lint
if [[ ! -x $BIN ]] || ! "$BIN" version 2>/dev/null | grep -q "version ${VERSION#v} "; then
  log "building golangci-lint $VERSION (once)"
  mkdir -p "$HERALD_HOME/bin"
  GOBIN=$HERALD_HOME/bin go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$VERSION"
fi
cd "$HERALD_ROOT"
exec "$BIN" run "$@" ./...
