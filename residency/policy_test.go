package residency

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

// base is a valid policy; the failure cases each break one thing in it.
const base = `version: 3
jurisdictions:
  EU:
    regions: [eu-west-1, eu-central-1]
    countries: [AT, BE, CH, DE]
    allow_transit: false
    gateway_url: https://eu.herald.example
  US:
    regions: [us-east-1, us-west-2]
    countries: [US, CA]
    allow_transit: true
    gateway_url: https://us.herald.example
  IN:
    regions: [in-south-1]
    countries: [IN]
    gateway_url: https://in.herald.example/api
`

func mustParse(tb testing.TB, doc string) *Policy {
	tb.Helper()
	p, err := Parse([]byte(doc))
	if err != nil {
		tb.Fatalf("Parse: %v", err)
	}
	return p
}

// replace applies old→new pairs to base, failing if one does not match (a case that silently
// tests the unchanged base would pass for the wrong reason).
func replace(tb testing.TB, pairs ...string) string {
	tb.Helper()
	doc := base
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(doc, pairs[i]) {
			tb.Fatalf("test bug: %q is not in the base policy", pairs[i])
		}
		doc = strings.Replace(doc, pairs[i], pairs[i+1], 1)
	}
	return doc
}

func problems(err error) []*FieldError {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ve.Problems
	}
	return nil
}

func TestParseSamplePolicy(t *testing.T) {
	data, err := os.ReadFile("../config/local/residency-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(data)
	if err != nil {
		t.Fatalf("config/local/residency-policy.yaml: %v", err)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := p.Codes(); !slices.Equal(got, []string{"EU", "IN", "US"}) {
		t.Errorf("jurisdictions %v", got)
	}
	if got := p.Regions("EU"); !slices.Equal(got, []string{"eu-west-1", "eu-central-1"}) {
		t.Errorf("EU regions %v", got)
	}
	eu := []string{"AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
		"LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", "IS", "LI", "NO", "CH"}
	for _, c := range eu {
		if j, _ := p.JurisdictionOf(c); j != "EU" {
			t.Errorf("%s maps to %q, want EU", c, j)
		}
	}
	for c, want := range map[string]string{"US": "US", "CA": "US", "MX": "US", "BR": "US", "PR": "US", "IN": "IN", "RE": "EU"} {
		if j, _ := p.JurisdictionOf(c); j != want {
			t.Errorf("%s maps to %q, want %s", c, j, want)
		}
	}
	if j, ok := p.JurisdictionOf("GB"); ok {
		t.Errorf("GB maps to %s; the sample leaves it unmapped", j)
	}
	for j, want := range map[string]bool{"EU": false, "US": true, "IN": false} {
		if p.AllowsTransit(j) != want {
			t.Errorf("AllowsTransit(%s) = %v", j, !want)
		}
		if p.GatewayURL(j) != "http://127.0.0.1:8080" {
			t.Errorf("GatewayURL(%s) = %q", j, p.GatewayURL(j))
		}
	}
	if r, _, err := p.Route("IN", nil); r != "in-south-1" || err != nil {
		t.Errorf("IN routes to %q, %v", r, err)
	}
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		check func(t *testing.T, p *Policy)
	}{
		{"base", base, func(t *testing.T, p *Policy) {
			if p.Version != 3 || len(p.Jurisdictions) != 3 {
				t.Errorf("got %+v", p)
			}
		}},
		{"JSON", `{"version": 7, "jurisdictions": {"EU": {"regions": ["eu-west-1"], "countries": ["FR"],
			"allow_transit": true, "gateway_url": "https://eu.example"}}}`, func(t *testing.T, p *Policy) {
			if j, _ := p.JurisdictionOf("FR"); p.Version != 7 || j != "EU" || !p.AllowsTransit("EU") {
				t.Errorf("got %+v", p)
			}
		}},
		// YAML 1.1 read NO as false (the "Norway problem"); yaml.v3 keeps it a string here.
		{"Norway is a country, not false", replace(t, "[AT, BE, CH, DE]", "[NO, AT, ON]", "ON]", "SE]"), func(t *testing.T, p *Policy) {
			if j, _ := p.JurisdictionOf("NO"); j != "EU" {
				t.Errorf("NO maps to %q", j)
			}
		}},
		{"block lists", replace(t, "countries: [US, CA]", "countries:\n      - US\n      - CA"), func(t *testing.T, p *Policy) {
			if j, _ := p.JurisdictionOf("CA"); j != "US" {
				t.Errorf("CA maps to %q", j)
			}
		}},
		{"allow_transit omitted is false", base, func(t *testing.T, p *Policy) {
			if p.AllowsTransit("IN") {
				t.Error("IN allows transit")
			}
		}},
		{"a jurisdiction may list no country", replace(t, "    countries: [IN]\n", ""), func(t *testing.T, p *Policy) {
			if j, ok := p.JurisdictionOf("IN"); ok {
				t.Errorf("IN maps to %s", j)
			}
		}},
		{"long jurisdiction code", replace(t, "  IN:", "  INDIAXYZ:"), func(t *testing.T, p *Policy) {
			if j, _ := p.JurisdictionOf("IN"); j != "INDIAXYZ" {
				t.Errorf("IN maps to %q", j)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.doc)
			if err := p.Validate(); err != nil {
				t.Fatalf("parsed policy fails Validate: %v", err)
			}
			tt.check(t, p)
		})
	}
}

func TestParseInvalidNamesTheField(t *testing.T) {
	tests := []struct {
		name      string
		doc       string
		field     string // the one problem's field
		reasonHas string
	}{
		{"version zero", replace(t, "version: 3", "version: 0"), "version", "must be 1 or more"},
		{"version negative", replace(t, "version: 3", "version: -2"), "version", "must be 1 or more"},
		{"version missing", replace(t, "version: 3\n", ""), "version", "must be 1 or more"},
		{"version not a number", replace(t, "version: 3", "version: three"), "version", "cannot unmarshal"},
		{"version not an integer", replace(t, "version: 3", "version: 1.5"), "version", "must be an integer"},
		{"version in exponent form", replace(t, "version: 3", "version: 1e3"), "version", "must be an integer"},
		{"version as a string", replace(t, "version: 3", `version: "3"`), "version", "cannot unmarshal"},
		{"version too large", replace(t, "version: 3", "version: 99999999999999999999"), "version", ""},
		{"no jurisdictions", "version: 1\n", "jurisdictions", "at least one"},
		{"empty jurisdictions", "version: 1\njurisdictions: {}\n", "jurisdictions", "at least one"},
		{"lower-case jurisdiction", replace(t, "  IN:", "  in:"), "jurisdictions.in", "2 to 8 uppercase letters"},
		{"one-letter jurisdiction", replace(t, "  IN:", "  I:"), "jurisdictions.I", "2 to 8 uppercase letters"},
		{"nine-letter jurisdiction", replace(t, "  IN:", "  INDIAXYZW:"), "jurisdictions.INDIAXYZW", "2 to 8 uppercase letters"},
		{"jurisdiction with a digit", replace(t, "  IN:", "  IN2:"), "jurisdictions.IN2", "2 to 8 uppercase letters"},
		{"duplicate jurisdiction key", replace(t, "  IN:", "  EU:"), "jurisdictions.EU", "already defined"},
		{"no regions", replace(t, "    regions: [in-south-1]\n", ""), "jurisdictions.IN.regions", "at least one region"},
		{"empty regions", replace(t, "[in-south-1]", "[]"), "jurisdictions.IN.regions", "at least one region"},
		{"region upper case", replace(t, "eu-central-1", "EU-central-1"), "jurisdictions.EU.regions[1]", "not a region name"},
		{"region without number", replace(t, "eu-central-1", "eu-central"), "jurisdictions.EU.regions[1]", "not a region name"},
		{"region two digits", replace(t, "eu-central-1", "eu-central-12"), "jurisdictions.EU.regions[1]", "not a region name"},
		{"region three-letter prefix", replace(t, "eu-central-1", "eur-central-1"), "jurisdictions.EU.regions[1]", "not a region name"},
		{"region with space", replace(t, "in-south-1", "'in-south-1 '"), "jurisdictions.IN.regions[0]", "not a region name"},
		{"region twice in a jurisdiction", replace(t, "[eu-west-1, eu-central-1]", "[eu-west-1, eu-central-1, eu-west-1]"), "jurisdictions.EU.regions[2]", `"eu-west-1" is listed twice (also jurisdictions.EU.regions[0])`},
		{"region in two jurisdictions", replace(t, "[us-east-1, us-west-2]", "[us-east-1, eu-central-1]"), "jurisdictions.US.regions[1]", "already belongs to jurisdiction EU (jurisdictions.EU.regions[1])"},
		{"regions not a list", replace(t, "[in-south-1]", "in-south-1"), "jurisdictions.IN.regions", "cannot unmarshal"},
		{"country lower case", replace(t, "DE]", "de]"), "jurisdictions.EU.countries[3]", `"de" is not an ISO 3166-1 alpha-2 code`},
		{"country alpha-3", replace(t, "DE]", "DEU]"), "jurisdictions.EU.countries[3]", "not an ISO 3166-1 alpha-2 code"},
		{"country numeric", replace(t, "DE]", "276]"), "jurisdictions.EU.countries[3]", "not an ISO 3166-1 alpha-2 code"},
		{"country user-assigned (Kosovo)", replace(t, "DE]", "XK]"), "jurisdictions.EU.countries[3]", "not an assigned code"},
		{"country reserved (UK, not GB)", replace(t, "[US, CA]", "[US, CA, UK]"), "jurisdictions.US.countries[2]", "not an assigned code"},
		{"country twice in a jurisdiction", replace(t, "[US, CA]", "[US, CA, US]"), "jurisdictions.US.countries[2]", "listed twice (also jurisdictions.US.countries[0])"},
		{"country in two jurisdictions", replace(t, "[IN]", "[IN, CH]"), "jurisdictions.IN.countries[1]", "already belongs to jurisdiction EU (jurisdictions.EU.countries[2])"},
		{"country not a string", replace(t, "[IN]", "[IN, {a: 1}]"), "jurisdictions.IN.countries", "cannot unmarshal"},
		{"country on its own line", replace(t, "countries: [US, CA]", "countries:\n      - US\n      - ca"), "jurisdictions.US.countries[1]", `"ca" is not`},
		{"gateway missing", replace(t, "    gateway_url: https://in.herald.example/api\n", ""), "jurisdictions.IN.gateway_url", "is required"},
		{"gateway relative", replace(t, "https://in.herald.example/api", "/api"), "jurisdictions.IN.gateway_url", "absolute http or https"},
		{"gateway no scheme", replace(t, "https://in.herald.example/api", "in.herald.example"), "jurisdictions.IN.gateway_url", "absolute http or https"},
		{"gateway ftp", replace(t, "https://in.herald.example/api", "ftp://in.herald.example"), "jurisdictions.IN.gateway_url", "absolute http or https"},
		{"gateway no host", replace(t, "https://in.herald.example/api", "https:///api"), "jurisdictions.IN.gateway_url", "with a host"},
		{"gateway opaque", replace(t, "https://in.herald.example/api", "https:in.herald.example"), "jurisdictions.IN.gateway_url", "with a host"},
		{"gateway credentials", replace(t, "https://in.herald.example/api", "https://u:p@in.herald.example"), "jurisdictions.IN.gateway_url", "credentials"},
		{"gateway query", replace(t, "https://in.herald.example/api", "https://in.herald.example/?a=1"), "jurisdictions.IN.gateway_url", "query or fragment"},
		{"gateway fragment", replace(t, "https://in.herald.example/api", "https://in.herald.example/#x"), "jurisdictions.IN.gateway_url", "query or fragment"},
		{"gateway unparsable", replace(t, "https://in.herald.example/api", "'http://[::1'"), "jurisdictions.IN.gateway_url", "not a URL"},
		{"allow_transit not a bool", replace(t, "allow_transit: true", "allow_transit: maybe"), "jurisdictions.US.allow_transit", "cannot unmarshal"},
		{"unknown top-level key", base + "default: EU\n", "default", `unknown key "default"`},
		{"unknown jurisdiction key", replace(t, "allow_transit: true", "allow_transit: true\n    failover: auto"), "jurisdictions.US.failover", `unknown key "failover"`},
		{"misspelt key", replace(t, "allow_transit: false", "allow_transits: false"), "jurisdictions.EU.allow_transits", "unknown key"},
		{"push_content unknown value", replace(t, "allow_transit: false", "allow_transit: false\n    push_content: partial"), "jurisdictions.EU.push_content", `"partial" is not a push content setting: must be full or minimal`},
		{"push_content upper case", replace(t, "allow_transit: false", "allow_transit: false\n    push_content: MINIMAL"), "jurisdictions.EU.push_content", `"MINIMAL" is not a push content setting`},
		{"push_content padded", replace(t, "allow_transit: false", "allow_transit: false\n    push_content: 'minimal '"), "jurisdictions.EU.push_content", "not a push content setting"},
		{"push_content with NUL", replace(t, "allow_transit: false", "allow_transit: false\n    push_content: \"minimal\\0\""), "jurisdictions.EU.push_content", "not a push content setting"},
		{"push_content Unicode look-alike", replace(t, "allow_transit: false", "allow_transit: false\n    push_content: minımal"), "jurisdictions.EU.push_content", "not a push content setting"},
		{"push_content a bool", replace(t, "allow_transit: false", "allow_transit: false\n    push_content: false"), "jurisdictions.EU.push_content", "not a push content setting"},
		{"push_content a list", replace(t, "allow_transit: false", "allow_transit: false\n    push_content: [minimal]"), "jurisdictions.EU.push_content", "cannot unmarshal"},
		{"push_content twice", replace(t, "allow_transit: false", "allow_transit: false\n    push_content: minimal\n    push_content: full"), "jurisdictions.EU.push_content", "already defined"},
		{"push_content misspelt", replace(t, "allow_transit: false", "allow_transit: false\n    push_contents: minimal"), "jurisdictions.EU.push_contents", "unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			if p != nil {
				t.Error("Parse returned a policy with its error")
			}
			ps := problems(err)
			if len(ps) != 1 {
				t.Fatalf("want exactly one problem at %s, got %v", tt.field, err)
			}
			if ps[0].Field != tt.field || !strings.Contains(ps[0].Reason, tt.reasonHas) {
				t.Fatalf("want %s: …%s…, got %v", tt.field, tt.reasonHas, ps[0])
			}
			if want := tt.field + ": "; !strings.Contains(err.Error(), want) {
				t.Errorf("message %q does not name %s", err, tt.field)
			}
		})
	}
}

// The example of the issue, word for word.
func TestValidateMessageExample(t *testing.T) {
	_, err := Parse([]byte(replace(t, "DE]", "de]")))
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("no FieldError in %v", err)
	}
	if want := `jurisdictions.EU.countries[3]: "de" is not an ISO 3166-1 alpha-2 code`; !strings.HasPrefix(fe.Error(), want) {
		t.Fatalf("got %q, want it to start with %q", fe, want)
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	doc := replace(t, "version: 3", "version: 0", "DE]", "de]", "  IN:\n    regions: [in-south-1]", "  IN:\n    regions: []")
	ps := problems(mustFail(t, doc))
	var fields []string
	for _, p := range ps {
		fields = append(fields, p.Field)
	}
	want := []string{"version", "jurisdictions.EU.countries[3]", "jurisdictions.IN.regions"}
	if !slices.Equal(fields, want) {
		t.Fatalf("problems at %v, want %v", fields, want)
	}
}

func TestParseNullJurisdiction(t *testing.T) {
	ps := problems(mustFail(t, "version: 1\njurisdictions:\n  IN: ~\n"))
	if len(ps) != 2 || ps[0].Field != "jurisdictions.IN.regions" || ps[1].Field != "jurisdictions.IN.gateway_url" {
		t.Fatalf("got %v", ps)
	}
}

func TestParseRejectsDocumentLevelProblems(t *testing.T) {
	tests := []struct{ name, doc, errHas string }{
		{"empty", "", "empty"},
		{"only a comment", "# nothing\n", "empty"},
		{"two documents", base + "---\nversion: 4\n", "more than one"},
		{"not YAML", "version: [1\n", "yaml"},
		{"a list", "- 1\n", "cannot unmarshal"},
		{"too large", base + "# " + strings.Repeat("x", MaxPolicySize) + "\n", "bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := mustFail(t, tt.doc)
			if !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("error %q does not say %q", err, tt.errHas)
			}
		})
	}
}

func mustFail(tb testing.TB, doc string) error {
	tb.Helper()
	p, err := Parse([]byte(doc))
	if err == nil {
		tb.Fatalf("accepted: %+v", p)
	}
	return err
}

func TestValidateDoesNotModify(t *testing.T) {
	p := &Policy{Version: 1, Jurisdictions: map[string]Jurisdiction{"EU": {Regions: []string{"eu-west-1"}, GatewayURL: "https://eu.example"}}}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if p.idx != nil {
		t.Fatal("Validate built the index")
	}
	p.Jurisdictions["EU"] = Jurisdiction{Regions: []string{"eu-west-1"}, Countries: []string{"QQ"}, GatewayURL: "https://eu.example"}
	if ps := problems(p.Validate()); len(ps) != 1 || ps[0].Field != "jurisdictions.EU.countries[0]" {
		t.Fatalf("got %v", ps)
	}
}

func TestLookups(t *testing.T) {
	p := mustParse(t, base)
	countries := []struct {
		in, want string
		ok       bool
	}{
		{"DE", "EU", true}, {"CH", "EU", true}, {"US", "US", true}, {"CA", "US", true}, {"IN", "IN", true},
		{"de", "EU", true}, {"In", "IN", true}, // lookups take either case
		{"FR", "", false}, {"GB", "", false}, {"", "", false}, {"D", "", false}, {"DEU", "", false},
		{"1N", "", false}, {"D@", "", false}, {"Ä", "", false}, {"\x00\x00", "", false},
	}
	for _, c := range countries {
		if got, ok := p.JurisdictionOf(c.in); got != c.want || ok != c.ok {
			t.Errorf("JurisdictionOf(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
	regions := []struct {
		in, want string
		ok       bool
	}{
		{"eu-west-1", "EU", true}, {"eu-central-1", "EU", true}, {"us-west-2", "US", true}, {"in-south-1", "IN", true},
		{"ap-south-1", "", false}, {"EU-WEST-1", "", false}, {"", "", false},
	}
	for _, r := range regions {
		if got, ok := p.JurisdictionOfRegion(r.in); got != r.want || ok != r.ok {
			t.Errorf("JurisdictionOfRegion(%q) = %q, %v; want %q, %v", r.in, got, ok, r.want, r.ok)
		}
	}
	if got := p.Regions("US"); !slices.Equal(got, []string{"us-east-1", "us-west-2"}) {
		t.Errorf("Regions(US) = %v", got)
	}
	p.Regions("US")[0] = "xx-mutated-1"
	if got := p.Regions("US"); got[0] != "us-east-1" {
		t.Errorf("Regions returned the policy's own slice: %v", got)
	}
	if p.Regions("ZZ") != nil {
		t.Error("Regions of an unknown jurisdiction")
	}
	transit := map[string]bool{"EU": false, "US": true, "IN": false, "ZZ": false, "": false}
	for j, want := range transit {
		if got := p.AllowsTransit(j); got != want {
			t.Errorf("AllowsTransit(%q) = %v", j, got)
		}
	}
	gateways := map[string]string{"EU": "https://eu.herald.example", "IN": "https://in.herald.example/api", "ZZ": ""}
	for j, want := range gateways {
		if got := p.GatewayURL(j); got != want {
			t.Errorf("GatewayURL(%q) = %q", j, got)
		}
	}
	if got := p.Codes(); !slices.Equal(got, []string{"EU", "IN", "US"}) {
		t.Errorf("Codes() = %v", got)
	}
}

func TestLookupsOnNilPolicy(t *testing.T) {
	var p *Policy
	if _, ok := p.JurisdictionOf("DE"); ok {
		t.Error("JurisdictionOf")
	}
	if _, ok := p.JurisdictionOfRegion("eu-west-1"); ok {
		t.Error("JurisdictionOfRegion")
	}
	if p.Regions("EU") != nil || p.AllowsTransit("US") || p.GatewayURL("EU") != "" || p.Codes() != nil {
		t.Error("lookups found something in a nil policy")
	}
	if _, _, err := p.Route("EU", nil); !errors.Is(err, ErrNoPolicy) {
		t.Errorf("Route: %v", err)
	}
}

func TestRoute(t *testing.T) {
	p := mustParse(t, base)
	down := func(regions ...string) func(string) bool {
		return func(r string) bool { return !slices.Contains(regions, r) }
	}
	tests := []struct {
		name         string
		jurisdiction string
		healthy      func(string) bool
		region       string
		reason       string
		err          error
	}{
		{"home", "EU", down(), "eu-west-1", "home", nil},
		{"nil health counts all healthy", "EU", nil, "eu-west-1", "home", nil},
		{"home down: next in order", "EU", down("eu-west-1"), "eu-central-1", "failover-from-eu-west-1", nil},
		{"second down does not matter", "EU", down("eu-central-1"), "eu-west-1", "home", nil},
		{"US failover", "US", down("us-east-1"), "us-west-2", "failover-from-us-east-1", nil},
		{"all EU down, US healthy: no crossing", "EU", down("eu-west-1", "eu-central-1"), "", "", ErrNoHealthyRegion},
		{"only region down", "IN", down("in-south-1"), "", "", ErrNoHealthyRegion},
		{"everything down", "US", func(string) bool { return false }, "", "", ErrNoHealthyRegion},
		{"unknown jurisdiction", "ZZ", down(), "", "", ErrUnknownJurisdiction},
		{"jurisdiction case matters", "eu", down(), "", "", ErrUnknownJurisdiction},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var asked []string
			healthy := tt.healthy
			if healthy != nil {
				healthy = func(r string) bool { asked = append(asked, r); return tt.healthy(r) }
			}
			region, reason, err := p.Route(tt.jurisdiction, healthy)
			if region != tt.region || reason != tt.reason || !errors.Is(err, tt.err) {
				t.Fatalf("Route(%s) = %q, %q, %v; want %q, %q, %v", tt.jurisdiction, region, reason, err, tt.region, tt.reason, tt.err)
			}
			for _, r := range asked {
				if j, _ := p.JurisdictionOfRegion(r); j != tt.jurisdiction {
					t.Errorf("Route(%s) asked about %s of jurisdiction %q", tt.jurisdiction, r, j)
				}
			}
			if err != nil && !strings.Contains(err.Error(), tt.jurisdiction) {
				t.Errorf("error %q does not name the jurisdiction", err)
			}
		})
	}
}

func TestEqual(t *testing.T) {
	a := mustParse(t, base)
	tests := []struct {
		name string
		doc  string
		want bool
	}{
		{"same", base, true},
		{"country order carries no meaning", replace(t, "[AT, BE, CH, DE]", "[DE, CH, BE, AT]"), true},
		{"region order is the failover order", replace(t, "[eu-west-1, eu-central-1]", "[eu-central-1, eu-west-1]"), false},
		{"version", replace(t, "version: 3", "version: 4"), false},
		{"transit", replace(t, "allow_transit: false", "allow_transit: true"), false},
		{"gateway", replace(t, "https://eu.herald.example", "https://eu2.herald.example"), false},
		{"one country more", replace(t, "[IN]", "[IN, LK]"), false},
		{"push content minimal", replace(t, "allow_transit: false", "allow_transit: false\n    push_content: minimal"), false},
		{"push content full is the default", replace(t, "allow_transit: false", "allow_transit: false\n    push_content: full"), true},
		{"one jurisdiction less", replace(t, "  IN:\n    regions: [in-south-1]\n    countries: [IN]\n    gateway_url: https://in.herald.example/api\n", ""), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustParse(t, tt.doc)
			if a.Equal(b) != tt.want || b.Equal(a) != tt.want {
				t.Fatalf("Equal = %v, want %v", a.Equal(b), tt.want)
			}
		})
	}
	var nilp *Policy
	if a.Equal(nil) || !nilp.Equal(nil) {
		t.Error("Equal with nil")
	}
}

func TestPushContentDefaultsToFullAndIsPerJurisdiction(t *testing.T) {
	p := mustParse(t, replace(t, "allow_transit: false", "allow_transit: false\n    push_content: minimal", "allow_transit: true", "allow_transit: true\n    push_content: full"))
	for _, tt := range []struct {
		jurisdiction, want string
		known              bool
	}{
		{"EU", PushMinimal, true},
		{"US", PushFull, true},
		{"IN", PushFull, true}, // omitted
		{"eu", "", false},
		{"", "", false},
	} {
		got, ok := p.PushContent(tt.jurisdiction)
		if got != tt.want || ok != tt.known {
			t.Errorf("PushContent(%q) = %q, %v; want %q, %v", tt.jurisdiction, got, ok, tt.want, tt.known)
		}
	}
	var nilp *Policy
	if got, ok := nilp.PushContent("EU"); got != "" || ok {
		t.Errorf("nil policy: %q, %v", got, ok)
	}
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if q := mustParse(t, string(data)); !p.Equal(q) {
		t.Fatalf("JSON round trip lost push_content: %s", data)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	a := mustParse(t, base)
	data, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"allow_transit":true`) || !strings.Contains(string(data), `"gateway_url"`) {
		t.Errorf("JSON field names: %s", data)
	}
	b := mustParse(t, string(data))
	if !a.Equal(b) {
		t.Fatalf("round trip changed the policy: %s", data)
	}
}

func TestISOList(t *testing.T) {
	n := 0
	for _, ok := range assigned {
		if ok {
			n++
		}
	}
	if n != 249 {
		t.Errorf("%d assigned codes, want 249", n)
	}
	for _, c := range []string{"DE", "GB", "IN", "US", "AX", "SS", "BQ", "CW", "SX"} {
		if !IsAssignedCountry(c) {
			t.Errorf("%s should be assigned", c)
		}
	}
	for _, c := range []string{"UK", "EU", "XK", "ZZ", "AA", "QM", "AN", "YU", "CS", "de", "D", ""} {
		if IsAssignedCountry(c) {
			t.Errorf("%s should not be assigned", c)
		}
	}
}
