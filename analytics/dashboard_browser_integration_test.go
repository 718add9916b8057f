//go:build integration

package analytics

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/testenv"
)

// The dashboard in headless Chromium is closed without the operator token, opens to the
// operator's sign-in, shows the query API's funnel, follows the channel and region filters,
// shows a new batch through its auto-refresh, fetches nothing from outside the service, and is
// closed again after signing out. stack/browser.sh install
// (run by make test) provides Chromium and playwright-core.
func TestDashboardInChromiumShowsTheAPIsFunnelToTheOperatorOnlyAndFollowsFilters(t *testing.T) {
	script := filepath.Join("dashboard", "test", "dashboard.mjs")
	if _, err := os.Stat(filepath.Join("dashboard", "node_modules", "playwright-core")); err != nil {
		t.Fatalf("playwright-core is not installed: run stack/browser.sh install (%v)", err)
	}
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatalf("chromium is not installed: run stack/browser.sh install (%v)", err)
	}
	s := startService(t)
	seedKnown(t, s)
	shot := filepath.Join(testenv.Root(), ".herald", "analytics-dashboard.png")
	if err := os.MkdirAll(filepath.Dir(shot), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(shot)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "node", script, s.base, shot)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// The page is the operators' listener's (plain HTTP, no client certificate); the batch the
	// auto-refresh must show goes to the ingest listener with us-east-1's exporter certificate.
	exporter := testenv.Exporter(t, "us-east-1")
	cmd.Env = append(os.Environ(), "ANALYTICS_TOKEN="+usToken, "ANALYTICS_OPERATOR_TOKEN="+testOperatorToken,
		"ANALYTICS_INGEST_URL="+s.ingest, "ANALYTICS_CA_FILE="+exporter.CAFile,
		"ANALYTICS_CLIENT_CERT="+exporter.CertFile, "ANALYTICS_CLIENT_KEY="+exporter.KeyFile)
	err := cmd.Run()
	t.Logf("page showed: %s", strings.TrimSpace(stdout.String()))
	if err != nil {
		t.Fatalf("browser test failed (%v):\n%s", err, stderr.String())
	}

	// What the page showed must also be what the seeded batches make (seedKnown).
	var seen map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &seen); err != nil {
		t.Fatalf("browser output: %v", err)
	}
	want := map[string]map[string]float64{
		"all":                          {"accepted": 1400, "fanned_out": 3300, "delivered": 3615, "read": 700},
		"channel=sms":                  {"accepted": 1400, "fanned_out": 700, "delivered": 1200, "read": 0},
		"region=us-east-1&channel=sms": {"accepted": 400, "fanned_out": 400, "delivered": 1000, "suppressed": 20},
		"after auto-refresh":           {"accepted": 400, "fanned_out": 400, "delivered": 1250, "suppressed": 20},
	}
	for view, stages := range want {
		got, _ := seen[view].(map[string]any)
		for stage, n := range stages {
			if got[stage] != n {
				t.Errorf("%s: the page showed %s = %v, want %v", view, stage, got[stage], n)
			}
		}
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 10_000 {
		t.Errorf("screenshot %s missing or empty: %v", shot, err)
	}
	t.Logf("screenshot: %s", shot)
}
