// Package residency decides where a user's personal data may live and be processed. The
// residency policy (this file) names the jurisdictions, the regions and countries of each, the
// failover order of the regions inside a jurisdiction, whether a jurisdiction's requests may transit
// a gateway outside it, and each jurisdiction's gateway URL. The Holder (holder.go) keeps the policy
// in force and follows its changes in discovery's key-value store.
package residency

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// DefaultKey is the discovery key the policy is stored under.
const DefaultKey = "herald/residency/policy"

// MaxPolicySize bounds a policy document; a full policy (every assigned country code) is ~3 KiB.
const MaxPolicySize = 1 << 20

// Policy is the residency policy document. Get one from Parse: it is validated, indexed for the
// lookups, and must not be modified afterwards (the gateway reads it from many goroutines).
type Policy struct {
	// Version identifies the document; every change must raise it. A lower version than the one in
	// force is refused, so a stale copy can never silently roll the policy back.
	Version int64 `yaml:"version" json:"version"`
	// Jurisdictions maps a jurisdiction code (EU, US, IN) to its rules.
	Jurisdictions map[string]Jurisdiction `yaml:"jurisdictions" json:"jurisdictions"`

	idx *index // built by Parse
}

// Jurisdiction is one legal area whose users' personal data stays inside its regions.
type Jurisdiction struct {
	// Regions are the jurisdiction's regions in failover order: the first is the home region of
	// the jurisdiction's users, the next ones take over, in order, when it is unhealthy.
	Regions []string `yaml:"regions" json:"regions"`
	// Countries are the ISO 3166-1 alpha-2 codes whose users belong to the jurisdiction.
	Countries []string `yaml:"countries" json:"countries"`
	// AllowTransit lets the jurisdiction's requests pass through a gateway outside it. When false
	// (also when omitted), such a gateway answers 307 to GatewayURL instead of proxying.
	AllowTransit bool `yaml:"allow_transit" json:"allow_transit"`
	// GatewayURL is the jurisdiction's own gateway (absolute http or https URL), the 307 target.
	GatewayURL string `yaml:"gateway_url" json:"gateway_url"`
	// PushContent is what an APNs or FCM payload for the jurisdiction's users may carry:
	// PushFull (also when omitted) the notification's title, body, link and metadata;
	// PushMinimal only the notification id and what wakes the app, which then fetches the
	// content from the user's home region with a user token.
	PushContent string `yaml:"push_content,omitempty" json:"push_content,omitempty"`
}

// The values of Jurisdiction.PushContent.
const (
	PushFull    = "full"
	PushMinimal = "minimal"
)

// pushContent is the value in force: PushFull when omitted.
func (j Jurisdiction) pushContent() string {
	if j.PushContent == "" {
		return PushFull
	}
	return j.PushContent
}

// FieldError is one problem in a policy document, at its field path (for example
// jurisdictions.EU.countries[3]).
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// ValidationError lists every problem found in a policy document, in document order.
type ValidationError struct {
	Problems []*FieldError
}

func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Error()
	}
	return "invalid residency policy: " + strings.Join(msgs, "; ")
}

// Unwrap gives errors.As access to each FieldError.
func (e *ValidationError) Unwrap() []error {
	out := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p
	}
	return out
}

var (
	// ErrUnknownJurisdiction is returned by Route for a jurisdiction the policy does not name.
	ErrUnknownJurisdiction = errors.New("residency: unknown jurisdiction")
	// ErrNoHealthyRegion is returned by Route when no region of the jurisdiction is healthy. Route
	// never falls back to a region of another jurisdiction.
	ErrNoHealthyRegion = errors.New("residency: no healthy region in the jurisdiction")
	// ErrNoPolicy is returned by Route on a nil Policy (a Holder that was never loaded).
	ErrNoPolicy = errors.New("residency: no policy loaded")
)

var (
	jurisdictionRE = regexp.MustCompile(`^[A-Z]{2,8}$`)
	regionRE       = regexp.MustCompile(`^[a-z]{2}-[a-z]+-[0-9]$`)
)

// Parse decodes a policy document (YAML, or JSON, which is YAML too), strictly: unknown keys,
// duplicate keys, wrong types and trailing documents are errors. It then validates the policy and
// builds the lookup index. Every error names the field at fault.
func Parse(data []byte) (*Policy, error) {
	if len(data) > MaxPolicySize {
		return nil, fmt.Errorf("invalid residency policy: %d bytes, more than the %d allowed", len(data), MaxPolicySize)
	}
	var p Policy
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("invalid residency policy: the document is empty")
		}
		return nil, decodeError(data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("invalid residency policy: more than one YAML document")
	}
	if err := checkVersionIsInteger(data); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	p.idx = buildIndex(&p)
	return &p, nil
}

// Validate checks every rule of the policy and reports every problem, each naming its field.
// It does not modify the policy.
func (p *Policy) Validate() error {
	v := &validator{}
	if p.Version < 1 {
		v.add("version", "must be 1 or more, got %d", p.Version)
	}
	if len(p.Jurisdictions) == 0 {
		v.add("jurisdictions", "must name at least one jurisdiction")
	}
	regionOwner := map[string]string{}  // region → field where first seen
	countryOwner := map[string]string{} // country → field where first seen
	regionJur := map[string]string{}
	countryJur := map[string]string{}
	for _, code := range sortedCodes(p.Jurisdictions) {
		j := p.Jurisdictions[code]
		base := "jurisdictions." + code
		if !jurisdictionRE.MatchString(code) {
			v.add(base, "%q is not a jurisdiction code: must be 2 to 8 uppercase letters, like EU", code)
		}

		if len(j.Regions) == 0 {
			v.add(base+".regions", "must list at least one region")
		}
		for i, r := range j.Regions {
			f := fmt.Sprintf("%s.regions[%d]", base, i)
			if !regionRE.MatchString(r) {
				v.add(f, "%q is not a region name: must look like eu-west-1", r)
				continue
			}
			if prev, ok := regionOwner[r]; ok {
				if regionJur[r] == code {
					v.add(f, "%q is listed twice (also %s)", r, prev)
				} else {
					v.add(f, "%q already belongs to jurisdiction %s (%s): a region belongs to exactly one jurisdiction", r, regionJur[r], prev)
				}
				continue
			}
			regionOwner[r], regionJur[r] = f, code
		}

		for i, c := range j.Countries {
			f := fmt.Sprintf("%s.countries[%d]", base, i)
			if !isCountryShape(c) {
				v.add(f, "%q is not an ISO 3166-1 alpha-2 code: must be two uppercase letters", c)
				continue
			}
			if !assigned[countrySlot(c)] {
				v.add(f, "%q is not an ISO 3166-1 alpha-2 code: it is not an assigned code", c)
				continue
			}
			if prev, ok := countryOwner[c]; ok {
				if countryJur[c] == code {
					v.add(f, "%q is listed twice (also %s)", c, prev)
				} else {
					v.add(f, "%q already belongs to jurisdiction %s (%s): a country maps to exactly one jurisdiction", c, countryJur[c], prev)
				}
				continue
			}
			countryOwner[c], countryJur[c] = f, code
		}

		if reason := checkGatewayURL(j.GatewayURL); reason != "" {
			v.add(base+".gateway_url", "%s", reason)
		}
		if pc := j.PushContent; pc != "" && pc != PushFull && pc != PushMinimal {
			v.add(base+".push_content", "%q is not a push content setting: must be %s or %s (omitted: %s)", pc, PushFull, PushMinimal, PushFull)
		}
	}
	return v.err()
}

func checkGatewayURL(s string) string {
	if s == "" {
		return "is required: it is where a gateway outside the jurisdiction redirects (307) the jurisdiction's requests"
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Sprintf("%q is not a URL: %v", s, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("%q must be an absolute http or https URL", s)
	case u.Host == "" || u.Opaque != "":
		return fmt.Sprintf("%q must be an absolute http or https URL with a host", s)
	case u.User != nil:
		return fmt.Sprintf("%q must not carry credentials", s)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return fmt.Sprintf("%q must not have a query or fragment: the gateway appends the request's path and query", s)
	}
	return ""
}

type validator struct{ problems []*FieldError }

func (v *validator) add(field, format string, args ...any) {
	v.problems = append(v.problems, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

func (v *validator) err() error {
	if len(v.problems) == 0 {
		return nil
	}
	return &ValidationError{Problems: v.problems}
}

func sortedCodes(m map[string]Jurisdiction) []string {
	codes := make([]string, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	return codes
}

// --- lookups ---

// index answers the lookups without allocating. Country codes are two ASCII letters, so the
// country table is an array indexed by them.
type index struct {
	codes     []string              // jurisdiction codes, sorted
	byCountry [26 * 26]int32        // 1 + position in codes, 0 = unmapped
	byRegion  map[string]string     // region → jurisdiction code
	byCode    map[string]*compiledJ // jurisdiction code → rules
}

type compiledJ struct {
	regions   []string
	failover  string // "failover-from-<first region>", built once so Route does not allocate
	noHealthy error  // ErrNoHealthyRegion naming the jurisdiction and its regions, built once
	Jurisdiction
}

func buildIndex(p *Policy) *index {
	ix := &index{
		codes:    sortedCodes(p.Jurisdictions),
		byRegion: map[string]string{},
		byCode:   make(map[string]*compiledJ, len(p.Jurisdictions)),
	}
	for pos, code := range ix.codes {
		j := p.Jurisdictions[code]
		for _, c := range j.Countries {
			ix.byCountry[countrySlot(c)] = int32(pos + 1)
		}
		for _, r := range j.Regions {
			ix.byRegion[r] = code
		}
		ix.byCode[code] = &compiledJ{
			regions:      j.Regions,
			failover:     "failover-from-" + j.Regions[0],
			noHealthy:    fmt.Errorf("%w: %s (tried %s)", ErrNoHealthyRegion, code, strings.Join(j.Regions, ", ")),
			Jurisdiction: j,
		}
	}
	return ix
}

func isCountryShape(c string) bool {
	return len(c) == 2 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z'
}

// countrySlot maps two uppercase ASCII letters to 0..675.
func countrySlot(c string) int { return int(c[0]-'A')*26 + int(c[1]-'A') }

// JurisdictionOf returns the jurisdiction a country (ISO 3166-1 alpha-2, either case) belongs
// to; false when the policy maps the country to none.
func (p *Policy) JurisdictionOf(country string) (string, bool) {
	if p == nil || p.idx == nil || len(country) != 2 {
		return "", false
	}
	a, b := country[0]&^0x20, country[1]&^0x20 // ASCII upper case
	if a < 'A' || a > 'Z' || b < 'A' || b > 'Z' {
		return "", false
	}
	pos := p.idx.byCountry[int(a-'A')*26+int(b-'A')]
	if pos == 0 {
		return "", false
	}
	return p.idx.codes[pos-1], true
}

// JurisdictionOfRegion returns the jurisdiction a region belongs to.
func (p *Policy) JurisdictionOfRegion(region string) (string, bool) {
	if p == nil || p.idx == nil {
		return "", false
	}
	j, ok := p.idx.byRegion[region]
	return j, ok
}

// Codes returns the jurisdiction codes, sorted.
func (p *Policy) Codes() []string {
	if p == nil || p.idx == nil {
		return nil
	}
	return slices.Clone(p.idx.codes)
}

// Regions returns the jurisdiction's regions in failover order (a copy); nil for an unknown
// jurisdiction.
func (p *Policy) Regions(jurisdiction string) []string {
	if j := p.lookup(jurisdiction); j != nil {
		return slices.Clone(j.regions)
	}
	return nil
}

// AllowsTransit reports whether the jurisdiction's requests may pass through a gateway outside
// it; false for an unknown jurisdiction.
func (p *Policy) AllowsTransit(jurisdiction string) bool {
	j := p.lookup(jurisdiction)
	return j != nil && j.AllowTransit
}

// GatewayURL returns the jurisdiction's own gateway URL, the 307 target when it does not allow
// transit; "" for an unknown jurisdiction.
func (p *Policy) GatewayURL(jurisdiction string) string {
	if j := p.lookup(jurisdiction); j != nil {
		return j.GatewayURL
	}
	return ""
}

// PushContent returns what push payloads for the jurisdiction's users may carry, PushFull or
// PushMinimal; false for an unknown jurisdiction.
func (p *Policy) PushContent(jurisdiction string) (string, bool) {
	if j := p.lookup(jurisdiction); j != nil {
		return j.pushContent(), true
	}
	return "", false
}

// Route picks the region that serves the jurisdiction's users now: the first region, in policy
// order, for which healthy reports true (a nil healthy counts every region healthy). reason is
// "home" when that is the jurisdiction's first region, "failover-from-<first region>" otherwise.
// When no region of the jurisdiction is healthy it returns ErrNoHealthyRegion: it never answers
// a region of another jurisdiction. It does not allocate.
func (p *Policy) Route(jurisdiction string, healthy func(region string) bool) (region, reason string, err error) {
	if p == nil || p.idx == nil {
		return "", "", ErrNoPolicy
	}
	j := p.lookup(jurisdiction)
	if j == nil {
		return "", "", fmt.Errorf("%w %q", ErrUnknownJurisdiction, jurisdiction)
	}
	for i, r := range j.regions {
		if healthy == nil || healthy(r) {
			if i == 0 {
				return r, "home", nil
			}
			return r, j.failover, nil
		}
	}
	return "", "", j.noHealthy
}

func (p *Policy) lookup(jurisdiction string) *compiledJ {
	if p == nil || p.idx == nil {
		return nil
	}
	return p.idx.byCode[jurisdiction]
}

// Equal reports whether two policies say the same thing (same version and rules).
func (p *Policy) Equal(q *Policy) bool {
	if p == nil || q == nil {
		return p == q
	}
	if p.Version != q.Version || len(p.Jurisdictions) != len(q.Jurisdictions) {
		return false
	}
	for code, a := range p.Jurisdictions {
		b, ok := q.Jurisdictions[code]
		if !ok || a.AllowTransit != b.AllowTransit || a.GatewayURL != b.GatewayURL || a.pushContent() != b.pushContent() ||
			!slices.Equal(a.Regions, b.Regions) || !sameSet(a.Countries, b.Countries) {
			return false
		}
	}
	return true
}

// sameSet compares country lists, whose order carries no meaning.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// --- decode errors ---

// checkVersionIsInteger refuses a version written as a float: yaml.v3 would truncate 1.5 to 1.
func checkVersionIsInteger(data []byte) error {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return nil // the strict decode already accepted data; nothing more to see
	}
	root := doc.Content[0]
	for root.Kind == yaml.AliasNode && root.Alias != nil {
		root = root.Alias
	}
	if root.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "version" {
			continue
		}
		v := root.Content[i+1]
		for v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		if v.Kind == yaml.ScalarNode && v.ShortTag() != "!!int" && v.ShortTag() != "!!null" {
			return &ValidationError{Problems: []*FieldError{{Field: "version", Reason: fmt.Sprintf("must be an integer, got %q (line %d)", v.Value, v.Line)}}}
		}
	}
	return nil
}

var (
	lineRE    = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownRE = regexp.MustCompile(`^field (\S+) not found in type`)
)

// decodeError turns yaml.v3's line-numbered messages into FieldErrors naming the field path.
func decodeError(data []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("invalid residency policy: %w", err)
	}
	var root yaml.Node
	paths := map[int]string{}
	if yaml.Unmarshal(data, &root) == nil {
		collectPaths(&root, "", paths)
	}
	v := &validator{}
	for _, m := range te.Errors {
		field, reason := "(document)", m
		if sm := lineRE.FindStringSubmatch(m); sm != nil {
			n, _ := strconv.Atoi(sm[1])
			reason = sm[2]
			if p := paths[n]; p != "" {
				field = p
			} else {
				field = "line " + sm[1]
			}
			if um := unknownRE.FindStringSubmatch(reason); um != nil {
				reason = fmt.Sprintf("unknown key %q (line %d)", um[1], n)
			} else {
				reason = fmt.Sprintf("%s (line %d)", reason, n)
			}
		}
		v.add(field, "%s", reason)
	}
	return v.err()
}

// collectPaths records, for each line of the document, the deepest field path that starts on it.
// Elements of a sequence get their index when they are alone on their line.
func collectPaths(n *yaml.Node, path string, out map[int]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			collectPaths(c, path, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			out[k.Line] = p
			out[val.Line] = p
			collectPaths(val, p, out)
		}
	case yaml.SequenceNode:
		perLine := map[int]int{}
		for _, c := range n.Content {
			perLine[c.Line]++
		}
		block := n.Style&yaml.FlowStyle == 0
		for i, c := range n.Content {
			p := path
			if block || (c.Line != n.Line && perLine[c.Line] == 1) {
				p = fmt.Sprintf("%s[%d]", path, i)
			}
			out[c.Line] = p // the schema's sequences hold scalars: no deeper field to name
		}
	}
}
