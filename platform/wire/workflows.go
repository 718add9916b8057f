package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Workflow step types besides the four channels (in_app, push, email, sms), which are steps too.
const (
	StepDelay    = "delay"
	StepDigest   = "digest"
	StepThrottle = "throttle"
)

// Limits of a workflow.
const (
	MaxWorkflowBytes    = 64 << 10
	MaxWorkflowSteps    = 20
	MaxStepConditions   = 8
	MaxDigestItems      = 100
	DefaultDigestItems  = 10
	MaxThrottleLimit    = 10000
	MaxWorkflowNameSize = 256
	MinStepDuration     = time.Second
	MaxDelayDuration    = 30 * 24 * time.Hour
	MaxDigestWindow     = 7 * 24 * time.Hour
	MaxThrottleWindow   = 366 * 24 * time.Hour
	maxPayloadPathParts = 8
)

// Condition kinds, by the member that names them.
var (
	// StepStatuses are what a condition on an earlier channel step can ask of its message.
	StepStatuses = []string{"sent", "delivered", "undelivered", "read", "unread", "failed", "skipped"}
	// PreferenceStates are what a condition on the user's preferences can ask of a channel.
	PreferenceStates = []string{"enabled", "disabled"}
	// PayloadOps are the comparisons a condition on the trigger's payload can make.
	PayloadOps = []string{"exists", "absent", "eq", "ne", "gt", "gte", "lt", "lte", "in", "contains"}
)

var (
	stepIDRE      = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
	payloadPathRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64})*$`)
	timeOfDayRE   = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)
)

// Workflow is the body of PUT /v1/workflows/{id}, and the content of a workflow file (YAML or
// JSON, read by DecodeWorkflowFile into the same type under the same rules).
type Workflow struct {
	Name     string         `json:"name,omitzero"`
	Type     string         `json:"type,omitzero"`
	Category string         `json:"category,omitzero"`
	Steps    []WorkflowStep `json:"steps,omitzero"`
}

// WorkflowStep is one step. Which members it takes depends on its type:
//   - in_app, push, email, sms: template_id, the template rendered for that channel;
//   - delay: duration ("90s", "15m", "1h", "2d") or until (a time of day, "09:00", in the
//     user's time zone: the next one after the step starts);
//   - digest: duration (a window from the first event) or until (the next time of day in the
//     user's time zone), key (a payload path whose value separates digests; none: one per user),
//     items (how many of the first and of the last events the template sees; 10 by default);
//   - throttle: limit runs per user per duration, per key when given; the excess run stops,
//     recorded as suppressed with the reason throttled.
//
// Every step can take if: conditions that must all hold for it to run; otherwise it is skipped
// with the reason condition_false and the run goes on with the next step.
type WorkflowStep struct {
	ID         string              `json:"id,omitzero"`
	Type       string              `json:"type,omitzero"`
	If         []WorkflowCondition `json:"if,omitzero"`
	TemplateID string              `json:"template_id,omitzero"`
	Duration   string              `json:"duration,omitzero"`
	Until      string              `json:"until,omitzero"`
	Key        string              `json:"key,omitzero"`
	Items      int                 `json:"items,omitzero"`
	Limit      int                 `json:"limit,omitzero"`
}

// WorkflowCondition is one condition, of exactly one of three kinds:
//   - {"step": "chat", "is": "unread"}: the message of an earlier channel step (StepStatuses);
//   - {"preference": "push", "is": "enabled"}: the user's preference for a channel in the
//     workflow's category (PreferenceStates);
//   - {"payload": "order.total", "op": "gt", "value": 100}: a value of the trigger's payload
//     (PayloadOps; exists and absent take no value, in takes a list).
type WorkflowCondition struct {
	Step       string `json:"step,omitzero"`
	Preference string `json:"preference,omitzero"`
	Payload    string `json:"payload,omitzero"`
	Is         string `json:"is,omitzero"`
	Op         string `json:"op,omitzero"`
	Value      any    `json:"value,omitzero"`
}

// IsChannel reports whether the step sends on a channel.
func (s *WorkflowStep) IsChannel() bool { return slices.Contains(Channels, s.Type) }

// DelayFor is a delay's or a digest's duration, 0 when it waits until a time of day.
func (s *WorkflowStep) DelayFor() time.Duration {
	d, _ := ParseStepDuration(s.Duration)
	return d
}

// DigestItems is how many of the first and of the last events a digest keeps for its template.
func (s *WorkflowStep) DigestItems() int {
	if s.Items == 0 {
		return DefaultDigestItems
	}
	return s.Items
}

// DecodeWorkflow reads and checks a workflow body.
func DecodeWorkflow(raw []byte) (*Workflow, *Error) {
	if len(raw) > MaxWorkflowBytes {
		return nil, refuse(CodePayloadTooLarge, "", fmt.Sprintf("a workflow is at most %d bytes", MaxWorkflowBytes))
	}
	var w Workflow
	if e := Decode(raw, &w); e != nil {
		return nil, e
	}
	if e := w.Validate(); e != nil {
		return nil, e
	}
	return &w, nil
}

// Validate checks a decoded workflow. Refusals name the step by index and the field:
// "steps[2].duration", "steps[3].if[0].step".
func (w *Workflow) Validate() *Error {
	if len(w.Name) > MaxWorkflowNameSize || !utf8.ValidString(w.Name) {
		return refuse(CodeInvalidField, "name", fmt.Sprintf("name must be valid UTF-8 of at most %d bytes", MaxWorkflowNameSize))
	}
	switch {
	case w.Type == "":
		return refuse(CodeMissingField, "type", "type is required (transactional, social or marketing): the tier of every message the workflow sends")
	case !slices.Contains(Tiers, w.Type):
		return refuse(CodeInvalidType, "type", fmt.Sprintf("unknown type %q (transactional, social or marketing)", w.Type))
	case w.Category == "":
		return refuse(CodeMissingField, "category", "category is required: the preference category of every message the workflow sends")
	case !categoryRE.MatchString(w.Category):
		return refuse(CodeInvalidField, "category", "category must match "+categoryRE.String())
	case len(w.Steps) == 0:
		return refuse(CodeMissingField, "steps", "a workflow has at least one step")
	case len(w.Steps) > MaxWorkflowSteps:
		return refuse(CodeInvalidField, "steps", fmt.Sprintf("a workflow has at most %d steps", MaxWorkflowSteps))
	}
	channelSteps := map[string]bool{}
	ids := map[string]bool{}
	digests := 0
	for i := range w.Steps {
		s := &w.Steps[i]
		at := func(f string) string { return fmt.Sprintf("steps[%d].%s", i, f) }
		switch {
		case s.ID == "":
			return refuse(CodeMissingField, at("id"), "every step has an id")
		case !stepIDRE.MatchString(s.ID):
			return refuse(CodeInvalidField, at("id"), "a step id must match "+stepIDRE.String())
		case ids[s.ID]:
			return refuse(CodeInvalidField, at("id"), fmt.Sprintf("step id %q is used twice", s.ID))
		}
		ids[s.ID] = true
		if len(s.If) > MaxStepConditions {
			return refuse(CodeInvalidField, at("if"), fmt.Sprintf("a step has at most %d conditions", MaxStepConditions))
		}
		for j := range s.If {
			if e := s.If[j].validate(fmt.Sprintf("steps[%d].if[%d]", i, j), channelSteps); e != nil {
				return e
			}
		}
		allowed := map[string]bool{}
		switch {
		case s.Type == "":
			return refuse(CodeMissingField, at("type"), "every step has a type (in_app, push, email, sms, delay, digest or throttle)")
		case s.IsChannel():
			allowed["template_id"] = true
			switch {
			case s.TemplateID == "":
				return refuse(CodeMissingField, at("template_id"), "a channel step names the template it sends")
			case !ValidID(s.TemplateID):
				return refuse(CodeInvalidField, at("template_id"), "template_id must match "+IDPattern)
			}
			channelSteps[s.ID] = true
		case s.Type == StepDelay:
			allowed["duration"], allowed["until"] = true, true
			if e := s.checkWhen(at, MaxDelayDuration); e != nil {
				return e
			}
		case s.Type == StepDigest:
			allowed["duration"], allowed["until"], allowed["key"], allowed["items"] = true, true, true, true
			if digests++; digests > 1 {
				return refuse(CodeInvalidField, at("type"), "a workflow has at most one digest step")
			}
			if e := s.checkWhen(at, MaxDigestWindow); e != nil {
				return e
			}
			if s.Items < 0 || s.Items > MaxDigestItems {
				return refuse(CodeInvalidField, at("items"), fmt.Sprintf("items must be 1-%d", MaxDigestItems))
			}
		case s.Type == StepThrottle:
			allowed["duration"], allowed["key"], allowed["limit"] = true, true, true
			if s.Limit < 1 || s.Limit > MaxThrottleLimit {
				return refuse(CodeInvalidField, at("limit"), fmt.Sprintf("a throttle's limit is 1-%d runs", MaxThrottleLimit))
			}
			if s.Duration == "" {
				return refuse(CodeMissingField, at("duration"), "a throttle's duration is its window (\"1h\", \"7d\")")
			}
			if _, e := checkDuration(at("duration"), s.Duration, MaxThrottleWindow); e != nil {
				return e
			}
		default:
			return refuse(CodeInvalidField, at("type"), fmt.Sprintf("unknown step type %q (in_app, push, email, sms, delay, digest or throttle)", s.Type))
		}
		if s.Key != "" && (!payloadPathRE.MatchString(s.Key) || strings.Count(s.Key, ".") >= maxPayloadPathParts) {
			return refuse(CodeInvalidField, at("key"), "key is a payload path like post_id or order.id")
		}
		for name, set := range map[string]bool{"template_id": s.TemplateID != "", "duration": s.Duration != "", "until": s.Until != "", "key": s.Key != "", "items": s.Items != 0, "limit": s.Limit != 0} {
			if set && !allowed[name] {
				return refuse(CodeInvalidField, at(name), fmt.Sprintf("a %s step takes no %s", s.Type, name))
			}
		}
	}
	if len(channelSteps) == 0 {
		return refuse(CodeMissingField, "steps", "a workflow has at least one channel step (in_app, push, email or sms)")
	}
	return nil
}

// checkWhen checks a delay's or a digest's duration or until: exactly one of them.
func (s *WorkflowStep) checkWhen(at func(string) string, maxDur time.Duration) *Error {
	switch {
	case s.Duration != "" && s.Until != "":
		return refuse(CodeConflictingFields, at("until"), "give duration or until, not both")
	case s.Duration == "" && s.Until == "":
		return refuse(CodeMissingField, at("duration"), "give duration (\"10m\") or until (a time of day, \"09:00\")")
	case s.Until != "" && !timeOfDayRE.MatchString(s.Until):
		return refuse(CodeInvalidField, at("until"), "until is a time of day, HH:MM from 00:00 to 23:59")
	case s.Duration != "":
		_, e := checkDuration(at("duration"), s.Duration, maxDur)
		return e
	}
	return nil
}

func checkDuration(field, v string, maxDur time.Duration) (time.Duration, *Error) {
	d, err := ParseStepDuration(v)
	if err != nil {
		return 0, refuse(CodeInvalidField, field, err.Error())
	}
	if d < MinStepDuration || d > maxDur {
		return 0, refuse(CodeInvalidField, field, fmt.Sprintf("%s must be from %v to %s", field, MinStepDuration, FormatDays(maxDur)))
	}
	return d, nil
}

// ParseStepDuration reads a step's duration: Go's form ("90s", "1h30m") or whole days and
// weeks ("2d", "1w"). It never reads a negative or fractional day.
func ParseStepDuration(v string) (time.Duration, error) {
	bad := fmt.Errorf("%q is not a duration like 90s, 15m, 1h30m, 2d or 1w", v)
	if n, unit := strings.TrimRight(v, "dw"), strings.TrimLeft(v, "0123456789"); unit == "d" || unit == "w" {
		k, err := strconv.Atoi(n)
		if err != nil || k < 0 || k > 10000 || len(n) == 0 || len(n) > 5 {
			return 0, bad
		}
		day := 24 * time.Hour
		if unit == "w" {
			day *= 7
		}
		return time.Duration(k) * day, nil
	}
	if len(v) > 32 || strings.HasPrefix(v, "-") || strings.HasPrefix(v, "+") {
		return 0, bad
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, bad
	}
	return d, nil
}

// FormatDays writes d in days when it is whole days, as Go does otherwise.
func FormatDays(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

func (c *WorkflowCondition) validate(field string, channelSteps map[string]bool) *Error {
	kinds := 0
	for _, set := range []bool{c.Step != "", c.Preference != "", c.Payload != ""} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return refuse(CodeInvalidField, field, "a condition names exactly one of step, preference or payload")
	}
	switch {
	case c.Step != "":
		switch {
		case !channelSteps[c.Step]:
			return refuse(CodeInvalidField, field+".step", fmt.Sprintf("%q is not an earlier channel step of this workflow", c.Step))
		case !slices.Contains(StepStatuses, c.Is):
			return refuse(CodeInvalidField, field+".is", "is must be one of "+strings.Join(StepStatuses, ", "))
		case c.Op != "" || c.Value != nil:
			return refuse(CodeInvalidField, field+".op", "a condition on a step takes is, not op or value")
		}
	case c.Preference != "":
		switch {
		case !slices.Contains(Channels, c.Preference):
			return refuse(CodeInvalidChannel, field+".preference", fmt.Sprintf("unknown channel %q (in_app, push, email, sms)", c.Preference))
		case !slices.Contains(PreferenceStates, c.Is):
			return refuse(CodeInvalidField, field+".is", "is must be enabled or disabled")
		case c.Op != "" || c.Value != nil:
			return refuse(CodeInvalidField, field+".op", "a condition on a preference takes is, not op or value")
		}
	default:
		switch {
		case !payloadPathRE.MatchString(c.Payload) || strings.Count(c.Payload, ".") >= maxPayloadPathParts:
			return refuse(CodeInvalidField, field+".payload", "payload is a path like order.total")
		case c.Is != "":
			return refuse(CodeInvalidField, field+".is", "a condition on the payload takes op and value, not is")
		case !slices.Contains(PayloadOps, c.Op):
			return refuse(CodeInvalidField, field+".op", "op must be one of "+strings.Join(PayloadOps, ", "))
		}
		return checkOperand(field+".value", c.Op, c.Value)
	}
	return nil
}

// checkOperand checks a payload condition's value against its op.
func checkOperand(field, op string, v any) *Error {
	scalar := func(v any) bool {
		switch v.(type) {
		case string, float64, bool:
			return true
		}
		return false
	}
	switch op {
	case "exists", "absent":
		if v != nil {
			return refuse(CodeInvalidField, field, op+" takes no value")
		}
	case "gt", "gte", "lt", "lte":
		switch v.(type) {
		case float64, string:
		default:
			return refuse(CodeInvalidField, field, op+" compares with a number or a string")
		}
	case "in":
		list, ok := v.([]any)
		if !ok || len(list) == 0 || len(list) > 100 {
			return refuse(CodeInvalidField, field, "in takes a list of 1-100 strings, numbers or booleans")
		}
		for _, x := range list {
			if !scalar(x) {
				return refuse(CodeInvalidField, field, "in takes a list of 1-100 strings, numbers or booleans")
			}
		}
	default: // eq, ne, contains
		if !scalar(v) {
			return refuse(CodeInvalidField, field, op+" takes a string, a number or a boolean")
		}
	}
	return nil
}

// DecodeWorkflowFile reads a workflow file as an app keeps it in its repository: the API's body
// as JSON, or the same document as YAML. YAML is read into plain values (a repeated key is
// refused) and checked as the JSON it is equal to, so a file and a body never differ in meaning.
func DecodeWorkflowFile(raw []byte) (*Workflow, *Error) {
	if len(raw) > MaxWorkflowBytes {
		return nil, refuse(CodePayloadTooLarge, "", fmt.Sprintf("a workflow is at most %d bytes", MaxWorkflowBytes))
	}
	if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '{' {
		w, e := DecodeWorkflow(raw)
		if e == nil || e.Code != CodeMalformedJSON {
			return w, e
		}
		// Not JSON: a YAML file may begin with a flow mapping ({name: x, ...}).
	}
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, refuse(CodeMalformedJSON, "", "the file is neither a JSON object nor valid YAML: "+strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if _, ok := doc.(map[string]any); !ok {
		return nil, refuse(CodeMalformedJSON, "", "the file must be one mapping (a JSON object), with string keys")
	}
	asJSON, err := json.Marshal(doc)
	if err != nil {
		return nil, refuse(CodeMalformedJSON, "", "the file holds a value JSON cannot carry (a mapping with keys that are not strings, a timestamp): "+err.Error())
	}
	return DecodeWorkflow(asJSON)
}

// WorkflowTrigger is the body of POST /v1/workflows/{id}/trigger: one run per recipient (or per
// subscriber of the topic), each in the user's home region.
type WorkflowTrigger struct {
	Recipients     []string       `json:"recipients,omitzero"`
	Topic          *string        `json:"topic,omitzero"`
	Payload        map[string]any `json:"payload,omitzero"`
	IdempotencyKey string         `json:"idempotency_key,omitzero"`
}

// DecodeWorkflowTrigger reads and checks a trigger body.
func DecodeWorkflowTrigger(raw []byte) (*WorkflowTrigger, *Error) {
	var t WorkflowTrigger
	if e := Decode(raw, &t); e != nil {
		return nil, e
	}
	if e := t.Validate(); e != nil {
		return nil, e
	}
	return &t, nil
}

// Validate checks a decoded trigger and drops repeated recipients, in order.
func (t *WorkflowTrigger) Validate() *Error {
	if e := checkAudience(&t.Recipients, t.Topic); e != nil {
		return e
	}
	if len(t.IdempotencyKey) > 255 || (t.IdempotencyKey != "" && strings.TrimSpace(t.IdempotencyKey) == "") {
		return refuse(CodeInvalidField, "idempotency_key", "idempotency_key must be 1-255 characters, not only spaces")
	}
	return nil
}

// ForRecipients is a copy of a validated trigger with only recipients (one region's share).
func (t *WorkflowTrigger) ForRecipients(recipients []string) *WorkflowTrigger {
	c := *t
	c.Recipients = recipients
	return &c
}

// PayloadValue finds a dotted path in a payload: ("order.total") is payload["order"]["total"].
func PayloadValue(payload map[string]any, path string) (any, bool) {
	var cur any = payload
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}
