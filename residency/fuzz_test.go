package residency

import (
	"encoding/json"
	"os"
	"testing"
)

// FuzzParse checks that Parse never panics, and that whatever it accepts passes Validate, answers
// its own lookups consistently, and survives a JSON round trip unchanged.
func FuzzParse(f *testing.F) {
	if sample, err := os.ReadFile("../config/local/residency-policy.yaml"); err == nil {
		f.Add(sample)
	}
	f.Add([]byte(base))
	f.Add([]byte(`{"version": 1, "jurisdictions": {"EU": {"regions": ["eu-west-1"], "countries": ["DE"], "gateway_url": "https://eu.example"}}}`))
	f.Add([]byte("version: 1\njurisdictions:\n  IN: ~\n"))
	f.Add([]byte("version: 1.5\njurisdictions: {EU: {regions: [eu-west-1], gateway_url: 'http://x'}}\n"))
	f.Add([]byte("version: &v 1\njurisdictions: {EU: {regions: [eu-west-1], countries: [NO, de], gateway_url: http://x}}\n"))
	f.Add([]byte("version: 1\njurisdictions: {EU: {regions: [eu-west-1], gateway_url: 'http://x', push_content: minimal}}\n"))
	f.Add([]byte("version: 1\njurisdictions: {EU: {regions: [eu-west-1], gateway_url: 'http://x', push_content: Minimal}}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("---\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if p != nil {
				t.Fatal("Parse returned a policy with its error")
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("Parse accepted a policy that fails Validate: %v", err)
		}
		for code, j := range p.Jurisdictions {
			for _, c := range j.Countries {
				if got, ok := p.JurisdictionOf(c); !ok || got != code {
					t.Fatalf("JurisdictionOf(%s) = %q, want %s", c, got, code)
				}
			}
			for _, r := range j.Regions {
				if got, ok := p.JurisdictionOfRegion(r); !ok || got != code {
					t.Fatalf("JurisdictionOfRegion(%s) = %q, want %s", r, got, code)
				}
			}
			if pc, ok := p.PushContent(code); !ok || (pc != PushFull && pc != PushMinimal) || (j.PushContent != "" && pc != j.PushContent) {
				t.Fatalf("PushContent(%s) = %q, %v with push_content %q", code, pc, ok, j.PushContent)
			}
			if r, reason, err := p.Route(code, nil); err != nil || r != j.Regions[0] || reason != "home" {
				t.Fatalf("Route(%s) = %q, %q, %v", code, r, reason, err)
			}
		}
		data2, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		q, err := Parse(data2)
		if err != nil {
			t.Fatalf("the JSON of an accepted policy is refused: %v\n%s", err, data2)
		}
		if !p.Equal(q) {
			t.Fatalf("JSON round trip changed the policy:\n%s", data2)
		}
	})
}
