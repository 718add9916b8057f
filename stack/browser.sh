#!/usr/bin/env bash
# What the dashboard's browser test needs: Debian's chromium (driven by playwright-core at
# /usr/bin/chromium, no downloaded browser) and the pinned npm packages of analytics/dashboard
# (playwright-core, and chart.js, whose dist file the Go build embeds from a committed copy).
#   stack/browser.sh install   install what is missing (idempotent)
#   stack/browser.sh status    one line: chromium and node_modules present; exit 0 if so
source "$(dirname "$0")/lib.sh"

PKG="$HERALD_ROOT/analytics/dashboard"

install() {
  apt_install chromium
  command -v npm >/dev/null || apt_install nodejs npm
  # npm ci only when the lock changed since the last install: it wipes node_modules first.
  local stamp="$PKG/node_modules/.herald-lock"
  if [[ -f $stamp ]] && cmp -s "$stamp" "$PKG/package-lock.json"; then
    return 0
  fi
  log "npm ci in analytics/dashboard"
  (cd "$PKG" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >&2
  cp "$PKG/package-lock.json" "$stamp"
}

status() {
  if [[ -x /usr/bin/chromium && -d $PKG/node_modules/playwright-core ]]; then
    echo "browser: chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'), playwright-core installed"
  else
    echo "browser: not installed (stack/browser.sh install)"
    return 1
  fi
}

case "${1:-}" in
  install) install ;;
  status) status ;;
  *) die "usage: $0 install|status" ;;
esac
