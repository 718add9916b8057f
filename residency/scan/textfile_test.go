package scan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestTextfileListsEveryStoreAndCountsViolations(t *testing.T) {
	rep := &Report{
		Stores: []StoreStat{{Region: "us-east-1", Store: "postgres:users"}, {Region: "eu-west-1", Store: "postgres:users"}, {Region: "us-east-1", Store: "redis:prefs"}},
		Misplaced: []Finding{
			{Sighting: Sighting{Store: "postgres:users", Region: "us-east-1", App: "a", User: "u1"}},
			{Sighting: Sighting{Store: "postgres:users", Region: "us-east-1", App: "a", User: "u2"}},
		},
		UnregisteredUsers: 3,
	}
	path := filepath.Join(t.TempDir(), "herald_residency.prom")
	if err := WriteTextfile(path, rep, time.Unix(1_800_000_000, 0)); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("not valid Prometheus text: %v\n%s", err, raw)
	}
	got := map[string]float64{}
	for _, m := range mfs["herald_residency_scan_violations"].GetMetric() {
		var region, store string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "region":
				region = l.GetValue()
			case "store":
				store = l.GetValue()
			}
		}
		got[region+"/"+store] = m.GetGauge().GetValue()
	}
	want := map[string]float64{"us-east-1/postgres:users": 2, "eu-west-1/postgres:users": 0, "us-east-1/redis:prefs": 0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if mfs["herald_residency_scan_unregistered_users"].GetMetric()[0].GetGauge().GetValue() != 3 {
		t.Error("unregistered users not exported")
	}
}
