package residency

import (
	"os"
	"testing"
)

// BenchmarkHotPath is what the gateway does per request: read the policy in force, find the
// user's jurisdiction, pick its region.
func BenchmarkHotPath(b *testing.B) {
	data, err := os.ReadFile("../config/local/residency-policy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	h := NewHolder(mustParse(b, string(data)))
	up := map[string]bool{"eu-west-1": true, "eu-central-1": true, "us-east-1": true}
	healthy := func(r string) bool { return up[r] }
	westDown := func(r string) bool { return r != "eu-west-1" && up[r] }
	cases := []struct {
		name    string
		country string
		healthy func(string) bool
		want    string
	}{
		{"home", "DE", healthy, "eu-west-1"},
		{"failover", "FR", westDown, "eu-central-1"},
		{"lower-case country", "us", healthy, "us-east-1"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p := h.Current()
				j, ok := p.JurisdictionOf(c.country)
				if !ok {
					b.Fatal("unmapped")
				}
				r, _, err := p.Route(j, c.healthy)
				if err != nil || r != c.want {
					b.Fatalf("routed to %q, %v", r, err)
				}
			}
		})
	}
	b.Run("no healthy region (error path)", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p := h.Current()
			j, _ := p.JurisdictionOf("IN")
			if _, _, err := p.Route(j, healthy); err == nil {
				b.Fatal("routed IN")
			}
		}
	})
}
