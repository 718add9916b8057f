package wire

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// fallback is the workflow docs/workflows.md opens with: in-app now; if still unread after an
// hour, push; if the push found no device (or failed), email.
const fallback = `{"name": "Comment", "type": "social", "category": "comments", "steps": [
	{"id": "chat", "type": "in_app", "template_id": "comment"},
	{"id": "wait", "type": "delay", "duration": "1h"},
	{"id": "nudge", "type": "push", "template_id": "comment", "if": [{"step": "chat", "is": "unread"}]},
	{"id": "mail", "type": "email", "template_id": "comment", "if": [{"step": "chat", "is": "unread"}, {"step": "nudge", "is": "undelivered"}]}
]}`

const fallbackYAML = `
# in-app now; push if unread after an hour; email if the push was not delivered
name: Comment
type: social
category: comments
steps:
  - {id: chat, type: in_app, template_id: comment}
  - id: wait
    type: delay
    duration: 1h
  - id: nudge
    type: push
    template_id: comment
    if:
      - {step: chat, is: unread}
  - id: mail
    type: email
    template_id: comment
    if:
      - step: chat
        is: unread
      - step: nudge
        is: undelivered
`

func TestWorkflowValidateNamesTheStepAndTheField(t *testing.T) {
	step := func(s string) string {
		return `{"type": "marketing", "category": "promo", "steps": [{"id": "a", "type": "email", "template_id": "t"}, ` + s + `]}`
	}
	tests := []struct {
		name, body, code, field string
	}{
		{"the fallback chain", fallback, "", ""},
		{"a digest until 09:00 in the user's zone", step(`{"id": "d", "type": "digest", "until": "09:00", "key": "post.id", "items": 5}`), "", ""},
		{"a digest over ten minutes", step(`{"id": "d", "type": "digest", "duration": "10m"}`), "", ""},
		{"a throttle of 3 a week", step(`{"id": "cap", "type": "throttle", "limit": 3, "duration": "1w"}`), "", ""},
		{"a delay of two days", step(`{"id": "w", "type": "delay", "duration": "2d"}`), "", ""},
		{"payload conditions", step(`{"id": "b", "type": "sms", "template_id": "t", "if": [{"payload": "order.total", "op": "gte", "value": 100}, {"payload": "vip", "op": "exists"}, {"payload": "tier", "op": "in", "value": ["gold", 2, true]}]}`), "", ""},
		{"a preference condition", step(`{"id": "b", "type": "sms", "template_id": "t", "if": [{"preference": "push", "is": "disabled"}]}`), "", ""},

		{"no type", `{"category": "c", "steps": [{"id": "a", "type": "email", "template_id": "t"}]}`, CodeMissingField, "type"},
		{"an unknown tier", `{"type": "urgent", "category": "c", "steps": [{"id": "a", "type": "email", "template_id": "t"}]}`, CodeInvalidType, "type"},
		{"no category", `{"type": "social", "steps": [{"id": "a", "type": "email", "template_id": "t"}]}`, CodeMissingField, "category"},
		{"no steps", `{"type": "social", "category": "c"}`, CodeMissingField, "steps"},
		{"empty steps", `{"type": "social", "category": "c", "steps": []}`, CodeMissingField, "steps"},
		{"no channel step", `{"type": "social", "category": "c", "steps": [{"id": "w", "type": "delay", "duration": "1h"}]}`, CodeMissingField, "steps"},
		{"a step without id", step(`{"type": "sms", "template_id": "t"}`), CodeMissingField, "steps[1].id"},
		{"an upper-case step id", step(`{"id": "B", "type": "sms", "template_id": "t"}`), CodeInvalidField, "steps[1].id"},
		{"a repeated step id", step(`{"id": "a", "type": "sms", "template_id": "t"}`), CodeInvalidField, "steps[1].id"},
		{"an unknown step type", step(`{"id": "b", "type": "fax", "template_id": "t"}`), CodeInvalidField, "steps[1].type"},
		{"a step type in capitals", step(`{"id": "b", "type": "EMAIL", "template_id": "t"}`), CodeInvalidField, "steps[1].type"},
		{"a channel step without template", step(`{"id": "b", "type": "sms"}`), CodeMissingField, "steps[1].template_id"},
		{"a template id that is a path", step(`{"id": "b", "type": "sms", "template_id": ".."}`), CodeInvalidField, "steps[1].template_id"},
		{"a channel step with a duration", step(`{"id": "b", "type": "sms", "template_id": "t", "duration": "1h"}`), CodeInvalidField, "steps[1].duration"},
		{"a delay with both", step(`{"id": "w", "type": "delay", "duration": "1h", "until": "09:00"}`), CodeConflictingFields, "steps[1].until"},
		{"a delay with neither", step(`{"id": "w", "type": "delay"}`), CodeMissingField, "steps[1].duration"},
		{"a delay of 24:00", step(`{"id": "w", "type": "delay", "until": "24:00"}`), CodeInvalidField, "steps[1].until"},
		{"a delay of 9:00 without its zero", step(`{"id": "w", "type": "delay", "until": "9:00"}`), CodeInvalidField, "steps[1].until"},
		{"a negative delay", step(`{"id": "w", "type": "delay", "duration": "-1h"}`), CodeInvalidField, "steps[1].duration"},
		{"a delay under a second", step(`{"id": "w", "type": "delay", "duration": "10ms"}`), CodeInvalidField, "steps[1].duration"},
		{"a delay over 30 days", step(`{"id": "w", "type": "delay", "duration": "31d"}`), CodeInvalidField, "steps[1].duration"},
		{"a delay in fractional days", step(`{"id": "w", "type": "delay", "duration": "1.5d"}`), CodeInvalidField, "steps[1].duration"},
		{"a delay with a template", step(`{"id": "w", "type": "delay", "duration": "1h", "template_id": "t"}`), CodeInvalidField, "steps[1].template_id"},
		{"a second digest", step(`{"id": "d", "type": "digest", "duration": "1h"}, {"id": "e", "type": "digest", "duration": "1h"}`), CodeInvalidField, "steps[2].type"},
		{"a digest of 8 days", step(`{"id": "d", "type": "digest", "duration": "8d"}`), CodeInvalidField, "steps[1].duration"},
		{"a digest keeping 101 items", step(`{"id": "d", "type": "digest", "duration": "1h", "items": 101}`), CodeInvalidField, "steps[1].items"},
		{"a digest keeping -1 items", step(`{"id": "d", "type": "digest", "duration": "1h", "items": -1}`), CodeInvalidField, "steps[1].items"},
		{"a digest key that is not a path", step(`{"id": "d", "type": "digest", "duration": "1h", "key": "a..b"}`), CodeInvalidField, "steps[1].key"},
		{"a throttle without limit", step(`{"id": "c", "type": "throttle", "duration": "1d"}`), CodeInvalidField, "steps[1].limit"},
		{"a throttle without window", step(`{"id": "c", "type": "throttle", "limit": 3}`), CodeMissingField, "steps[1].duration"},
		{"a throttle until a time", step(`{"id": "c", "type": "throttle", "limit": 3, "duration": "1d", "until": "09:00"}`), CodeInvalidField, "steps[1].until"},
		{"a limit that is a string", step(`{"id": "c", "type": "throttle", "limit": "3", "duration": "1d"}`), CodeInvalidField, "steps[1].limit"},
		{"a condition on a later step", `{"type": "social", "category": "c", "steps": [{"id": "a", "type": "email", "template_id": "t", "if": [{"step": "b", "is": "read"}]}, {"id": "b", "type": "sms", "template_id": "t"}]}`, CodeInvalidField, "steps[0].if[0].step"},
		{"a condition on itself", step(`{"id": "b", "type": "sms", "template_id": "t", "if": [{"step": "b", "is": "read"}]}`), CodeInvalidField, "steps[1].if[0].step"},
		{"a condition on a delay", step(`{"id": "w", "type": "delay", "duration": "1h"}, {"id": "b", "type": "sms", "template_id": "t", "if": [{"step": "w", "is": "read"}]}`), CodeInvalidField, "steps[2].if[0].step"},
		{"an unknown status", step(`{"id": "b", "type": "sms", "template_id": "t", "if": [{"step": "a", "is": "opened"}]}`), CodeInvalidField, "steps[1].if[0].is"},
		{"two kinds in one condition", step(`{"id": "b", "type": "sms", "template_id": "t", "if": [{"step": "a", "preference": "push", "is": "read"}]}`), CodeInvalidField, "steps[1].if[0]"},
		{"an empty condition", step(`{"id": "b", "type": "sms", "template_id": "t", "if": [{}]}`), CodeInvalidField, "steps[1].if[0]"},
		{"a preference on fax", step(`{"id": "b", "type": "sms", "template_id": "t", "if": [{"preference": "fax", "is": "enabled"}]}`), CodeInvalidChannel, "steps[1].if[0].preference"},
		{"an unknown op", step(`{"id": "b", "type": "sms", "template_id": "t", "if": [{"payload": "x", "op": "like", "value": "a"}]}`), CodeInvalidField, "steps[1].if[0].op"},
		{"exists with a value", step(`{"id": "b", "type": "sms", "template_id": "t", "if": [{"payload": "x", "op": "exists", "value": 1}]}`), CodeInvalidField, "steps[1].if[0].value"},
		{"eq without a value", step(`{"id": "b", "type": "sms", "template_id": "t", "if": [{"payload": "x", "op": "eq"}]}`), CodeInvalidField, "steps[1].if[0].value"},
		{"eq with null", step(`{"id": "b", "type": "sms", "template_id": "t", "if": [{"payload": "x", "op": "eq", "value": null}]}`), CodeInvalidField, "steps[1].if[0].value"},
		{"gt with an object", step(`{"id": "b", "type": "sms", "template_id": "t", "if": [{"payload": "x", "op": "gt", "value": {"a": 1}}]}`), CodeInvalidField, "steps[1].if[0].value"},
		{"in with an empty list", step(`{"id": "b", "type": "sms", "template_id": "t", "if": [{"payload": "x", "op": "in", "value": []}]}`), CodeInvalidField, "steps[1].if[0].value"},
		{"a payload path with a NUL", step(`{"id": "b", "type": "sms", "template_id": "t", "if": [{"payload": "x\u0000", "op": "exists"}]}`), CodeInvalidField, "steps[1].if[0].payload"},
		{"a repeated member", `{"type": "social", "type": "marketing", "category": "c", "steps": [{"id": "a", "type": "email", "template_id": "t"}]}`, CodeDuplicateField, "type"},
		{"a member in capitals", `{"Type": "social", "category": "c", "steps": [{"id": "a", "type": "email", "template_id": "t"}]}`, CodeUnknownField, "Type"},
		{"an unknown step member", step(`{"id": "b", "type": "sms", "template_id": "t", "retries": 3}`), CodeUnknownField, "steps[1].retries"},
		{"21 steps", `{"type": "social", "category": "c", "steps": [` + strings.Repeat(`{"id": "a", "type": "email", "template_id": "t"},`, 20) + `{"id": "z", "type": "email", "template_id": "t"}]}`, CodeInvalidField, "steps"},
		{"a name of invalid UTF-8", `{"name": "\udc00", "type": "social", "category": "c", "steps": [{"id": "a", "type": "email", "template_id": "t"}]}`, CodeInvalidField, "name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, e := DecodeWorkflow([]byte(tt.body))
			switch {
			case tt.code == "" && e != nil:
				t.Fatalf("refused: %v", e)
			case tt.code != "" && (e == nil || e.Code != tt.code || e.Field != tt.field):
				t.Fatalf("got %v, want %s (%s)", e, tt.code, tt.field)
			}
		})
	}
}

func TestAWorkflowFileInYAMLIsTheSameWorkflowAsItsJSONBody(t *testing.T) {
	fromJSON, e := DecodeWorkflow([]byte(fallback))
	if e != nil {
		t.Fatal(e)
	}
	fromYAML, e := DecodeWorkflowFile([]byte(fallbackYAML))
	if e != nil {
		t.Fatal(e)
	}
	if !reflect.DeepEqual(fromJSON, fromYAML) {
		t.Fatalf("YAML %+v\nJSON %+v", fromYAML, fromJSON)
	}
	fromFile, e := DecodeWorkflowFile([]byte(fallback))
	if e != nil || !reflect.DeepEqual(fromJSON, fromFile) {
		t.Fatalf("a JSON file: %v %+v", e, fromFile)
	}
}

func TestAWorkflowFileIsRefusedAsItsBodyWouldBe(t *testing.T) {
	tests := []struct {
		name, file, code, field string
	}{
		{"a repeated key", "type: social\ntype: marketing\ncategory: c\nsteps: [{id: a, type: email, template_id: t}]\n", CodeMalformedJSON, ""},
		{"an unknown key", "type: social\ncategory: c\ntemplate: x\nsteps: [{id: a, type: email, template_id: t}]\n", CodeUnknownField, "template"},
		{"a null", "type: social\ncategory: c\nsteps: [{id: a, type: email, template_id: ~}]\n", CodeInvalidField, "steps[0].template_id"},
		{"a list, not a mapping", "- type: social\n", CodeMalformedJSON, ""},
		{"a number key", "type: social\ncategory: c\n1: x\nsteps: [{id: a, type: email, template_id: t}]\n", CodeMalformedJSON, ""},
		{"a bad step, by index", "type: social\ncategory: c\nsteps:\n  - {id: a, type: email, template_id: t}\n  - {id: w, type: delay, duration: 1y}\n", CodeInvalidField, "steps[1].duration"},
		{"not YAML", "type: [social\n", CodeMalformedJSON, ""},
		{"empty", "", CodeMalformedJSON, ""},
		{"a NUL in a value", "type: social\ncategory: c\nsteps: [{id: a, type: email, template_id: \"t\\0\"}]\n", CodeInvalidField, "steps[0].template_id"},
		{"too big", strings.Repeat("#", MaxWorkflowBytes+1), CodePayloadTooLarge, ""},
		{"an alias bomb", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n", CodeMalformedJSON, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, e := DecodeWorkflowFile([]byte(tt.file))
			if e == nil || e.Code != tt.code || e.Field != tt.field {
				t.Fatalf("got %v, want %s (%s)", e, tt.code, tt.field)
			}
		})
	}
}

func TestAFlowStyleYAMLFileIsYAMLNotBrokenJSON(t *testing.T) {
	w, e := DecodeWorkflowFile([]byte("{type: social, category: c, steps: [{id: a, type: in_app, template_id: t}]}\n"))
	if e != nil || w.Steps[0].TemplateID != "t" {
		t.Fatalf("%+v %v", w, e)
	}
	// JSON with a repeated member is still refused as JSON, not read again as YAML.
	if _, e := DecodeWorkflowFile([]byte(`{"type": "social", "type": "marketing", "category": "c", "steps": [{"id": "a", "type": "in_app", "template_id": "t"}]}`)); e == nil || e.Code != CodeDuplicateField {
		t.Fatalf("repeated member: %v", e)
	}
}

func TestAnUnquotedTimeOfDayInYAMLIsATime(t *testing.T) {
	w, e := DecodeWorkflowFile([]byte("type: marketing\ncategory: c\nsteps:\n  - {id: d, type: digest, until: 09:00}\n  - {id: a, type: email, template_id: t}\n"))
	if e != nil {
		t.Fatal(e)
	}
	if w.Steps[0].Until != "09:00" {
		t.Fatalf("until %q, want 09:00 (YAML 1.1 would read 540)", w.Steps[0].Until)
	}
}

func TestParseStepDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90s", 90 * time.Second, true}, {"1h30m", 90 * time.Minute, true}, {"2d", 48 * time.Hour, true},
		{"1w", 7 * 24 * time.Hour, true}, {"0d", 0, true}, {"-1d", 0, false}, {"+1h", 0, false}, {"d", 0, false},
		{"1.5d", 0, false}, {"1dw", 0, false}, {"99999999d", 0, false}, {"1y", 0, false}, {"", 0, false},
		{"1H", 0, false}, {"１h", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseStepDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseStepDuration(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestWorkflowTriggerValidate(t *testing.T) {
	tests := []struct {
		name, body, code, field string
	}{
		{"recipients and a payload", `{"recipients": ["u1", "u1", "u2"], "payload": {"post": {"id": 7}, "note": null}}`, "", ""},
		{"a topic", `{"topic": "post-7", "idempotency_key": "k"}`, "", ""},
		{"neither", `{"payload": {}}`, CodeMissingField, "recipients"},
		{"both", `{"topic": "t", "recipients": ["u"]}`, CodeConflictingFields, "topic"},
		{"a recipient that is a path", `{"recipients": ["u", ".."]}`, CodeInvalidField, "recipients[1]"},
		{"a key of spaces", `{"recipients": ["u"], "idempotency_key": "  "}`, CodeInvalidField, "idempotency_key"},
		{"a payload that is a list", `{"recipients": ["u"], "payload": [1]}`, CodeInvalidField, "payload"},
		{"a null payload", `{"recipients": ["u"], "payload": null}`, CodeInvalidField, "payload"},
		{"a NUL in the payload", `{"recipients": ["u"], "payload": {"a": "\u0000"}}`, CodeInvalidField, "payload.a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, e := DecodeWorkflowTrigger([]byte(tt.body))
			switch {
			case tt.code == "" && e != nil:
				t.Fatalf("refused: %v", e)
			case tt.code != "" && (e == nil || e.Code != tt.code || e.Field != tt.field):
				t.Fatalf("got %v, want %s (%s)", e, tt.code, tt.field)
			case tt.code == "" && len(tr.Recipients) > 0 && !reflect.DeepEqual(tr.Recipients, []string{"u1", "u2"}):
				t.Fatalf("recipients %v, want the repeats dropped", tr.Recipients)
			}
		})
	}
}

func TestPayloadValueFollowsADottedPath(t *testing.T) {
	p := map[string]any{"order": map[string]any{"total": 120.0, "lines": []any{1.0}}, "vip": false}
	for path, want := range map[string]any{"order.total": 120.0, "vip": false} {
		if got, ok := PayloadValue(p, path); !ok || got != want {
			t.Errorf("%s: %v %v", path, got, ok)
		}
	}
	for _, path := range []string{"order.missing", "vip.x", "order.lines.0", "nope"} {
		if got, ok := PayloadValue(p, path); ok {
			t.Errorf("%s found %v", path, got)
		}
	}
}

// FuzzWorkflowFile: whatever the file, reading it never panics or hangs; a workflow accepted
// from YAML is accepted again, equal, from its JSON body (the one reading), and every channel
// step it names a condition on comes before the condition.
func FuzzWorkflowFile(f *testing.F) {
	f.Add([]byte(fallback))
	f.Add([]byte(fallbackYAML))
	f.Add([]byte("type: marketing\ncategory: c\nsteps:\n  - {id: d, type: digest, until: 09:00, key: post.id}\n  - {id: a, type: email, template_id: t}\n"))
	f.Add([]byte("type: social\ncategory: c\nsteps: [{id: c, type: throttle, limit: 3, duration: 1w}, {id: a, type: sms, template_id: t, if: [{payload: x, op: in, value: [1, a]}]}]\n"))
	f.Add([]byte("a: &a [x]\nb: [*a, *a]\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		w, e := DecodeWorkflowFile(raw)
		if e != nil {
			if w != nil {
				t.Fatal("a refusal with a workflow")
			}
			return
		}
		body := Encode(w) // what the gateway forwards
		again, e := DecodeWorkflow(body)
		if e != nil {
			t.Fatalf("accepted from the file, refused as its body %s: %v", body, e)
		}
		if !reflect.DeepEqual(w, again) {
			t.Fatalf("the file and its body differ:\n%+v\n%+v", w, again)
		}
		seen := map[string]bool{}
		for _, s := range w.Steps {
			for _, c := range s.If {
				if c.Step != "" && !seen[c.Step] {
					t.Fatalf("step %s has a condition on %s, not an earlier channel step", s.ID, c.Step)
				}
			}
			if s.IsChannel() {
				seen[s.ID] = true
			}
		}
	})
}

// FuzzWorkflowTrigger: whatever the body, reading it never panics; an accepted trigger, as the
// gateway forwards it, is read by a region as the same trigger.
func FuzzWorkflowTrigger(f *testing.F) {
	for _, s := range []string{
		`{"recipients": ["u1", "u1", "u2"], "payload": {"post": {"id": 7}, "note": null}}`, `{"topic": "t", "idempotency_key": "k"}`,
		`{"recipients": ["u"], "payload": {"a": [1, {"b": null}], "c": 1e308, "d": "\u00e9"}}`, `{"recipients": ["u"], "payload": {"a": -0}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		tr, e := DecodeWorkflowTrigger(raw)
		if e != nil {
			return
		}
		again, e := DecodeWorkflowTrigger(Encode(tr))
		if e != nil {
			t.Fatalf("accepted, then refused as forwarded: %v", e)
		}
		if !reflect.DeepEqual(tr, again) {
			t.Fatalf("the forwarded trigger differs:\n%+v\n%+v", tr, again)
		}
	})
}
