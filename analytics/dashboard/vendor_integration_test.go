//go:build integration

package dashboard

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// The committed chart library must be byte for byte the dist file of the npm version pinned
// in package-lock.json (installed by stack/browser.sh install, which make test runs first).
func TestVendoredChartJSEqualsThePinnedNPMPackage(t *testing.T) {
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	raw, err := os.ReadFile("package-lock.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &lock); err != nil {
		t.Fatalf("package-lock.json: %v", err)
	}
	pinned := lock.Packages["node_modules/chart.js"].Version
	if pinned == "" {
		t.Fatal("package-lock.json pins no chart.js")
	}
	installed, err := os.ReadFile(filepath.Join("node_modules", "chart.js", "package.json"))
	if err != nil {
		t.Fatalf("chart.js is not installed: run stack/browser.sh install (%v)", err)
	}
	var pkg struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(installed, &pkg); err != nil {
		t.Fatal(err)
	}
	if pkg.Version != pinned {
		t.Fatalf("node_modules has chart.js %s, the lock pins %s: run stack/browser.sh install", pkg.Version, pinned)
	}
	for _, f := range []struct{ committed, npm string }{
		{"static/vendor/chart.umd.min.js", "node_modules/chart.js/dist/chart.umd.min.js"},
		{"static/vendor/chart.js.LICENSE.md", "node_modules/chart.js/LICENSE.md"},
	} {
		a, err := os.ReadFile(f.committed)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(f.npm)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from chart.js %s's %s: run analytics/dashboard/update-vendor.sh", f.committed, pinned, f.npm)
		}
	}
	embedded, err := Files().Open("vendor/chart.umd.min.js")
	if err != nil {
		t.Fatalf("the chart library is not embedded: %v", err)
	}
	embedded.Close()
}
