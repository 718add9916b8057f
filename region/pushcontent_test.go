package region

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-notify/herald/platform/discovery"
)

const pushPolicyDoc = `version: %d
jurisdictions:
  EU:
    regions: [eu-west-1]
    countries: [DE]
    gateway_url: https://eu.example
    push_content: %s
  US:
    regions: [us-east-1]
    countries: [US]
    gateway_url: https://us.example
`

const pushKey = "herald/residency/policy"

// fileDiscovery is the file discovery backend under a fresh directory.
func fileDiscovery(t *testing.T) discovery.Backend {
	t.Helper()
	d, err := discovery.Open(discovery.Defaults(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func put(t *testing.T, d discovery.Backend, doc string) {
	t.Helper()
	if err := d.Put(context.Background(), pushKey, []byte(doc)); err != nil {
		t.Fatal(err)
	}
}

func waitMinimal(t *testing.T, pc *pushContent, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for pc.minimal() != want {
		if time.Now().After(deadline) {
			t.Fatalf("minimal() stayed %v", !want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPushContentComesFromTheJurisdictionInThePolicy(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, tt := range []struct {
		jurisdiction, setting string
		want                  bool
	}{
		{"EU", "minimal", true},
		{"EU", "full", false},
		{"US", "minimal", false}, // EU's setting is not the US's; the US omits it: full
		{"IN", "minimal", false}, // a jurisdiction the policy does not name: full, logged
	} {
		d := fileDiscovery(t)
		put(t, d, fmt.Sprintf(pushPolicyDoc, 1, tt.setting))
		pc, err := loadPushContent(t.Context(), d, pushKey, tt.jurisdiction, log)
		if err != nil {
			t.Fatal(err)
		}
		if got := pc.minimal(); got != tt.want {
			t.Errorf("%s with EU %s: minimal %v, want %v", tt.jurisdiction, tt.setting, got, tt.want)
		}
	}
}

func TestPushContentRefusesToStartOnAnInvalidPolicy(t *testing.T) {
	d := fileDiscovery(t)
	put(t, d, fmt.Sprintf(pushPolicyDoc, 1, "partial"))
	_, err := loadPushContent(t.Context(), d, pushKey, "EU", slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "jurisdictions.EU.push_content") {
		t.Fatalf("an invalid push_content: %v, want an error naming jurisdictions.EU.push_content", err)
	}
}

func TestPushContentRefusesToStartWhenDiscoveryCannotBeRead(t *testing.T) {
	dir := t.TempDir()
	d, err := discovery.Open(discovery.Defaults(dir))
	if err != nil {
		t.Fatal(err)
	}
	// The key's path is a directory: reading it fails with something other than "not found".
	if err := os.MkdirAll(filepath.Join(dir, "kv", pushKey), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := loadPushContent(t.Context(), d, pushKey, "EU", slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("started with an unreadable policy")
	}
}

func TestPushContentFollowsThePolicyAndKeepsMinimalThroughBadUpdates(t *testing.T) {
	d := fileDiscovery(t)
	log := slog.New(slog.DiscardHandler)
	// Started before any policy: full, until one is published.
	pc, err := loadPushContent(t.Context(), d, pushKey, "EU", log)
	if err != nil {
		t.Fatal(err)
	}
	if pc.minimal() {
		t.Fatal("minimal without a policy")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { pc.watch(ctx, d, pushKey, log); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	put(t, d, fmt.Sprintf(pushPolicyDoc, 5, "minimal"))
	waitMinimal(t, pc, true)
	// Refused updates keep minimal: an invalid value, an older version saying full, the same
	// version with other content, the key emptied. Each is waited for in the holder's outcome
	// count, then minimal must still hold.
	for _, tc := range []struct{ outcome, doc string }{
		{"invalid", fmt.Sprintf(pushPolicyDoc, 6, "FULL")},
		{"rollback", fmt.Sprintf(pushPolicyDoc, 4, "full")},
		{"conflict", fmt.Sprintf(pushPolicyDoc, 5, "full")},
		{"missing", ""},
	} {
		before := policyUpdates(t, tc.outcome)
		put(t, d, tc.doc)
		deadline := time.Now().Add(10 * time.Second)
		for policyUpdates(t, tc.outcome) == before {
			if time.Now().After(deadline) {
				t.Fatalf("the %s update was not seen", tc.outcome)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !pc.minimal() {
			t.Fatalf("a refused update (%s) turned minimal off", tc.outcome)
		}
	}
	put(t, d, fmt.Sprintf(pushPolicyDoc, 6, "full"))
	waitMinimal(t, pc, false)
}

// policyUpdates reads herald_residency_policy_updates_total{outcome} from the default registry.
func policyUpdates(t *testing.T, outcome string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "herald_residency_policy_updates_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
