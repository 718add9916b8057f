// Package dashboard is the analytics dashboard: a static page and script, and the chart
// library (Chart.js, a committed copy of the dist file of the npm version pinned in
// package-lock.json), embedded into the binary so nothing is fetched from a CDN at run time
// and the Go build needs no npm. update-vendor.sh refreshes the copy after a version bump;
// TestVendoredChartJSEqualsThePinnedNPMPackage checks it matches.
package dashboard

import (
	"embed"
	"io/fs"
)

//go:embed static
var files embed.FS

// Files returns the dashboard's files: index.html, app.js, app.css, vendor/.
func Files() fs.FS { sub, _ := fs.Sub(files, "static"); return sub }
