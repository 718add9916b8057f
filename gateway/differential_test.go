package gateway

// The differential test of the one reading. A residency hole opens wherever the gateway reads a
// send one way (and routes on it) and a region reads it another (and stores that): an empty
// topic taken as a topic send by one and as absent by the other, a "Recipients" key matched by
// one and not the other. This test feeds mutated bodies (case and Unicode folding of keys,
// repeated keys, empty, null and nested values, invalid UTF-8, NUL, trailing data) to the
// gateway's reading and to a region's reading, directly and through the body the gateway
// forwards, and fails on any body the two read differently rather than both refusing.
// FuzzGatewayAndRegionReadEverySendAlike runs the same check under the fuzzer in CI.

import (
	"bytes"
	stdjson "encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/api"
)

var diffNow = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// reading is what a part takes a send to mean: whether it is taken, and whom and how it goes to.
type reading struct {
	ok         bool
	typ        string
	recipients []string
	topic      string
	topicSend  bool
	channels   []string
	body       string
}

func (r reading) String() string {
	if !r.ok {
		return "refused"
	}
	return fmt.Sprintf("type=%q recipients=%q topic=%q topic_send=%v channels=%q body=%q", r.typ, r.recipients, r.topic, r.topicSend, r.channels, r.body)
}

func (r reading) same(o reading) bool {
	if r.ok != o.ok {
		return false
	}
	return !r.ok || r.typ == o.typ && slices.Equal(r.recipients, o.recipients) && r.topic == o.topic &&
		r.topicSend == o.topicSend && slices.Equal(r.channels, o.channels) && r.body == o.body
}

func fromSend(s *wire.Send) reading {
	return reading{ok: true, typ: s.Type, recipients: s.Recipients, topic: s.TopicName(), topicSend: s.Topic != nil, channels: s.Channels, body: s.Body}
}

// gatewayReading is how the gateway reads a body: what it routes on.
func gatewayReading(raw []byte) reading {
	s, e := readSend(raw, diffNow)
	if e != nil {
		return reading{}
	}
	return fromSend(s)
}

// regionReading is how a region reads a body that reaches it.
func regionReading(raw []byte) reading {
	s, e := api.DecodeSend(bytes.NewReader(raw), diffNow)
	if e != nil {
		return reading{}
	}
	return fromSend(s)
}

// differ checks one body under a pair of readings: the gateway's, and a region's of the raw body
// (a caller that bypasses the gateway) and of each body the gateway forwards (its recipients
// split over two regions). It returns what differs, or "".
func differ(raw []byte, gw, region func([]byte) reading, forward func(*wire.Send, []string) []byte) string {
	g, r := gw(raw), region(raw)
	if !g.same(r) {
		return fmt.Sprintf("gateway reads %v, a region reads %v", g, r)
	}
	if !g.ok || forward == nil {
		return ""
	}
	s, _ := readSend(raw, diffNow)
	parts := [][]string{s.Recipients}
	if n := len(s.Recipients); n > 1 {
		parts = [][]string{s.Recipients[:n/2], s.Recipients[n/2:]}
	}
	for _, part := range parts {
		fwd := forward(s, part)
		got := region(fwd)
		want := g
		if !g.topicSend {
			want.recipients = part
		}
		if !got.same(want) {
			return fmt.Sprintf("gateway reads %v and forwards %s, which a region reads as %v", want, fwd, got)
		}
	}
	return ""
}

// bases are well-formed sends the mutations start from.
var bases = []string{
	`{"type":"transactional","category":"otp","body":"1","recipients":["eu1","us1"]}`,
	`{"type":"social","category":"comment","title":"t","body":"b","topic":"news","channels":["in_app","push"]}`,
	`{"type":"marketing","template_id":"promo","data":{"name":"Ada","n":null},"recipients":["eu1"],"channels":["email"],"idempotency_key":"k","metadata":{"a":"b"}}`,
	`{"type":"social","category":"c","body":"b","link":"myapp://x","recipients":["eu1","eu1","us1"],"send_at":"2026-12-07T09:00:00Z"}`,
}

// keyVariants are spellings of a key that a folding decoder matches to it.
func keyVariants(k string) []string {
	title := strings.ToUpper(k[:1]) + k[1:]
	out := []string{strings.ToUpper(k), title, k + " ", " " + k, k + "\u0000",
		strings.ReplaceAll(k, "s", "\u017f"), strings.ReplaceAll(k, "k", "\u212a"), strings.ReplaceAll(k, "K", "\u212a"),
		strings.ReplaceAll(k, "e", "\\u0065"), strings.ReplaceAll(k, "_", "-")}
	return slices.DeleteFunc(out, func(v string) bool { return v == k })
}

// values are replacements for a member's value.
var values = []string{`null`, `""`, `[]`, `{}`, `[null]`, `[""]`, `[["us1"]]`, `1`, `true`, `"us1"`, `["us1"]`, `["US1"]`, `["us1","us1"]`,
	`["us1\u0000"]`, `["\ud800"]`, `["."]`, `[".."]`, `"news"`, `" "`, `"\u0000"`, `{"recipients":["us1"]}`}

// mutations derives hostile bodies from a well-formed one.
func mutations(base string) []string {
	var m map[string]stdjson.RawMessage
	if err := stdjson.Unmarshal([]byte(base), &m); err != nil {
		panic(err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	trimmed := strings.TrimSuffix(base, "}")
	var out []string
	add := func(extra string) { out = append(out, trimmed+","+extra+"}") }
	for _, k := range append(keys, "recipients", "topic", "channels", "type") {
		for _, v := range keyVariants(k) {
			add(fmt.Sprintf("%q:%s", v, `["us1"]`))
			add(fmt.Sprintf("%q:%s", v, `"us1"`))
		}
		for _, v := range values {
			add(fmt.Sprintf("%q:%s", k, v)) // a repeat, or a new member
			if raw, ok := m[k]; ok {
				out = append(out, strings.Replace(base, fmt.Sprintf("%q:%s", k, raw), fmt.Sprintf("%q:%s", k, v), 1))
			}
		}
		if raw, ok := m[k]; ok {
			out = append(out, strings.Replace(base, fmt.Sprintf("%q:", k), fmt.Sprintf("%q:", strings.ToUpper(k)), 1))
			out = append(out, strings.Replace(base, fmt.Sprintf("%q:%s", k, raw), "", 1))
		}
	}
	out = append(out, base+" {}", base+"x", "\xef\xbb\xbf"+base, " \n"+base+"\n ", base[:len(base)-1], "["+base+"]",
		strings.Replace(base, `"1"`, "\"\xff\"", 1), strings.Replace(base, `"b"`, "\"\xc0\xaf\"", 1), strings.Replace(base, `"eu1"`, `"eu\ud83d"`, 1),
		strings.Replace(base, `"eu1"`, `"e\u0075\u0031"`, 1))
	return out
}

func corpus() []string {
	var all []string
	for _, b := range bases {
		all = append(all, b)
		all = append(all, mutations(b)...)
	}
	return all
}

func TestGatewayAndRegionReadEveryMutatedSendAlike(t *testing.T) {
	bodies := corpus()
	refused := 0
	for _, raw := range bodies {
		if d := differ([]byte(raw), gatewayReading, regionReading, partBody); d != "" {
			t.Errorf("%s\n  %s", raw, d)
		}
		if !gatewayReading([]byte(raw)).ok {
			refused++
		}
	}
	// The corpus is hostile: most of it must be refused, and the bases taken.
	if refused < len(bodies)*3/4 {
		t.Errorf("only %d of %d mutated bodies refused", refused, len(bodies))
	}
	for _, b := range bases {
		if !gatewayReading([]byte(b)).ok {
			t.Errorf("base refused: %s", b)
		}
	}
	t.Logf("%d bodies, %d refused by both readings, the rest read alike", len(bodies), refused)
}

// legacyGateway and legacyRegion are the two readings Herald had when an empty topic and a
// "Recipients" key walked a US user's notification into EU stores: the gateway looked up exact
// keys in a map (and took a present topic as a topic send), the region used encoding/json, which
// folds case. The differential check must find them different, or it proves nothing.
func legacyGateway(raw []byte) reading {
	fields := map[string]stdjson.RawMessage{}
	if stdjson.Unmarshal(raw, &fields) != nil {
		return reading{}
	}
	var r reading
	r.ok = true
	_ = stdjson.Unmarshal(fields["recipients"], &r.recipients)
	if t, ok := fields["topic"]; ok {
		r.topicSend = true
		_ = stdjson.Unmarshal(t, &r.topic)
	}
	_ = stdjson.Unmarshal(fields["type"], &r.typ)
	_ = stdjson.Unmarshal(fields["channels"], &r.channels)
	_ = stdjson.Unmarshal(fields["body"], &r.body)
	return r
}

func legacyRegion(raw []byte) reading {
	var q struct {
		Type       string   `json:"type"`
		Category   string   `json:"category"`
		Body       string   `json:"body"`
		Recipients []string `json:"recipients"`
		Topic      string   `json:"topic"`
		Channels   []string `json:"channels"`
	}
	dec := stdjson.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if dec.Decode(&q) != nil {
		return reading{}
	}
	return reading{ok: true, typ: q.Type, recipients: q.Recipients, topic: q.Topic, topicSend: q.Topic != "", channels: q.Channels, body: q.Body}
}

func TestDifferentialCheckFindsTheReadingsHeraldHad(t *testing.T) {
	for _, raw := range []string{
		`{"type":"transactional","category":"otp","body":"1","recipients":["us1"],"topic":""}`,
		`{"type":"transactional","category":"otp","body":"1","topic":"news","Recipients":["us1"]}`,
	} {
		if differ([]byte(raw), legacyGateway, legacyRegion, nil) == "" {
			t.Errorf("the legacy readings agree on %s; the check cannot see the hole", raw)
		}
	}
	found := 0 // bodies both legacy readings took, each its own way: the residency holes
	for _, raw := range corpus() {
		if legacyGateway([]byte(raw)).ok && legacyRegion([]byte(raw)).ok && differ([]byte(raw), legacyGateway, legacyRegion, nil) != "" {
			found++
		}
	}
	if found == 0 {
		t.Fatal("the corpus finds no body the legacy readings both took and read differently")
	}
	t.Logf("the corpus finds %d bodies both legacy readings took and read differently", found)
}

// FuzzGatewayAndRegionReadEverySendAlike is the differential check under the fuzzer: make test
// runs it for a fixed time on top of the corpus.
func FuzzGatewayAndRegionReadEverySendAlike(f *testing.F) {
	for i, raw := range corpus() {
		if i%8 == 0 { // a sample: the unit test runs the whole corpus; the fuzzer mutates from here
			f.Add([]byte(raw))
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if d := differ(raw, gatewayReading, regionReading, partBody); d != "" {
			t.Fatalf("%q\n  %s", raw, d)
		}
	})
}
