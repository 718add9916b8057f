#!/usr/bin/env bash
# Copies Chart.js's dist file from the npm package pinned in package-lock.json into static/vendor
# (the Go build embeds that committed copy and never runs npm). Run after changing the version
# in package.json and `npm install --package-lock-only`; then commit static/vendor.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
cp node_modules/chart.js/dist/chart.umd.min.js static/vendor/chart.umd.min.js
cp node_modules/chart.js/LICENSE.md static/vendor/chart.js.LICENSE.md
echo "static/vendor: chart.js $(node -p 'require("./node_modules/chart.js/package.json").version')"
