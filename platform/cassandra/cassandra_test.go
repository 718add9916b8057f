package cassandra

import (
	"strings"
	"testing"
)

func TestValidateRefusesReplicationWithoutALocalDataCentreOfIt(t *testing.T) {
	base := Defaults()
	base.Keyspace = "herald_eu"
	cases := []struct {
		name    string
		rep     map[string]int
		local   string
		wantKey string // "" = valid
	}{
		{"simple strategy", nil, "", ""},
		{"simple strategy with a local dc", nil, "eu-west-1", ""},
		{"two data centres", map[string]int{"eu-west-1": 3, "eu-central-1": 3}, "eu-west-1", ""},
		{"no local dc", map[string]int{"eu-west-1": 1}, "", "local_dc"},
		{"local dc not replicated", map[string]int{"eu-west-1": 1}, "eu-central-1", "local_dc"},
		{"zero replicas", map[string]int{"eu-west-1": 0}, "eu-west-1", "replication.eu-west-1"},
		{"quote in a dc name", map[string]int{"eu'west": 1}, "eu'west", "replication"},
		{"empty dc name", map[string]int{"": 1}, "", "replication"},
		{"NUL in local dc", nil, "eu\x00", "local_dc"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			c.Replication, c.LocalDC = tc.rep, tc.local
			err := c.Validate()
			if tc.wantKey == "" {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantKey) {
				t.Fatalf("want an error naming %q, got %v", tc.wantKey, err)
			}
		})
	}
}

func TestReplicationCQLListsEveryDataCentreInOrder(t *testing.T) {
	c := Defaults()
	if got, want := c.ReplicationCQL(), `{'class': 'SimpleStrategy', 'replication_factor': 1}`; got != want {
		t.Fatalf("simple: %s, want %s", got, want)
	}
	c.Replication = map[string]int{"eu-west-1": 3, "eu-central-1": 2}
	if got, want := c.ReplicationCQL(), `{'class': 'NetworkTopologyStrategy', 'eu-central-1': 2, 'eu-west-1': 3}`; got != want {
		t.Fatalf("nts: %s, want %s", got, want)
	}
}

func TestReplicaDCsAndSameReplicationReadTheClusterForm(t *testing.T) {
	nts := map[string]string{"class": "org.apache.cassandra.locator.NetworkTopologyStrategy", "eu-west-1": "1", "eu-central-1": "1"}
	if got := ReplicaDCs(nts); strings.Join(got, ",") != "eu-central-1,eu-west-1" {
		t.Fatalf("dcs %v", got)
	}
	simple := map[string]string{"class": "org.apache.cassandra.locator.SimpleStrategy", "replication_factor": "1"}
	if got := ReplicaDCs(simple); got != nil {
		t.Fatalf("simple strategy dcs %v, want nil", got)
	}
	if !sameReplication(nts, map[string]int{"eu-west-1": 1, "eu-central-1": 1}) {
		t.Fatal("same replication not recognised")
	}
	if sameReplication(nts, map[string]int{"eu-west-1": 1}) || sameReplication(nts, map[string]int{"eu-west-1": 1, "eu-central-1": 3}) || sameReplication(simple, map[string]int{"eu-west-1": 1}) {
		t.Fatal("a different replication counted as the same")
	}
}
