// Package wire is the one reading of the public API's request bodies. The gateway and every
// region decode a body with Decode into the same types and check it with the same Validate, so
// no body can mean one thing to the gateway and another to a region: a difference between two
// readings is a residency hole (the gateway routes on one reading, the region stores the other).
// The gateway forwards what it decoded, re-encoded with Encode, never the caller's bytes.
//
// The rules, for every body:
//   - one JSON object, nothing after it;
//   - member names match exactly, case included (no folding of any kind), and appear once;
//   - a name the type does not declare is refused;
//   - strings are valid UTF-8 (unpaired surrogate escapes included) and hold no NUL, which
//     Postgres text cannot store;
//   - null is refused (leave a field out instead), except inside a send's free-form "data" and
//     a workflow trigger's "payload".
//
// Every refusal is an *Error naming the field, as the API reports it ("recipients[3]",
// "metadata.key").
package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Error codes of a refused body. They are stable: clients branch on them.
const (
	CodeMalformedJSON     = "malformed_json"
	CodeUnknownField      = "unknown_field"
	CodeDuplicateField    = "duplicate_field"
	CodePayloadTooLarge   = "payload_too_large"
	CodeInvalidField      = "invalid_field"
	CodeMissingField      = "missing_field"
	CodeConflictingFields = "conflicting_fields"
	CodeInvalidType       = "invalid_type"
	CodeTooManyRecipients = "too_many_recipients"
	CodeInvalidChannel    = "invalid_channel"
	CodeInvalidSendAt     = "invalid_send_at"
)

// Error is a refused body: always a 400 (413 for payload_too_large is not used: the size is a
// 400 like every other refusal of the body).
type Error struct {
	Code    string
	Field   string
	Message string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Code + ": " + e.Message
	}
	return e.Code + " (" + e.Field + "): " + e.Message
}

func refuse(code, field, msg string) *Error { return &Error{Code: code, Field: field, Message: msg} }

// freeForm lists the top-level members whose contents are the app's own values, where null is a
// value like any other (template variables).
var freeForm = map[string]bool{"data": true, "payload": true}

// Read reads a body of at most limit bytes and decodes it with Decode.
func Read(r io.Reader, dst any, limit int64) *Error {
	raw, e := ReadRaw(r, limit)
	if e != nil {
		return e
	}
	return Decode(raw, dst)
}

// ReadRaw reads a body of at most limit bytes, for a decoder that picks its type from
// something else (DecodeCredential).
func ReadRaw(r io.Reader, limit int64) ([]byte, *Error) {
	raw, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, refuse(CodePayloadTooLarge, "", fmt.Sprintf("the body is over %d bytes", limit))
		}
		return nil, refuse(CodeMalformedJSON, "", "the body could not be read")
	}
	if int64(len(raw)) > limit {
		return nil, refuse(CodePayloadTooLarge, "", fmt.Sprintf("the body is over %d bytes", limit))
	}
	return raw, nil
}

// Decode reads raw, one JSON object, into dst (a pointer to one of this package's types, or any
// struct with json tags) under the rules of the package.
func Decode(raw []byte, dst any) *Error {
	if e := scan(raw); e != nil {
		return e
	}
	err := json.Unmarshal(raw, dst, json.RejectUnknownMembers(true))
	if err == nil {
		return nil
	}
	var se *json.SemanticError
	if errors.As(err, &se) {
		field := pointerField(string(se.JSONPointer))
		if errors.Is(err, json.ErrUnknownName) {
			return refuse(CodeUnknownField, field, fmt.Sprintf("unknown field %q", field))
		}
		if field == "" {
			return refuse(CodeMalformedJSON, "", "the body must be a JSON object")
		}
		want := "a value of another kind"
		if se.GoType != nil {
			want = kindName(se.GoType.Kind().String())
		}
		return refuse(CodeInvalidField, field, fmt.Sprintf("%s must be %s", field, want))
	}
	return refuse(CodeMalformedJSON, "", "the body is not a JSON object: "+err.Error())
}

// scan checks what the type-driven decoding cannot see: syntax, duplicate names, invalid UTF-8,
// NUL, null, and that the body is one object.
func scan(raw []byte) *Error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return refuse(CodeMalformedJSON, "", "the body is empty; it must be a JSON object")
	}
	dec := jsontext.NewDecoder(bytes.NewReader(raw))
	first := true
	for {
		tok, err := dec.ReadToken()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return syntaxError(dec, err)
		}
		kind := tok.Kind()
		if first {
			if kind != '{' {
				return refuse(CodeMalformedJSON, "", "the body must be a JSON object")
			}
			first = false
		}
		switch kind {
		case 'n':
			if f := stackField(dec); !underFreeForm(dec) {
				return refuse(CodeInvalidField, f, f+" is null: leave the field out instead")
			}
		case '"':
			if s := tok.String(); strings.IndexByte(s, 0) >= 0 {
				f := stackField(dec)
				return refuse(CodeInvalidField, f, "a NUL character cannot be stored")
			}
		}
		if dec.StackDepth() == 0 && !first {
			// The top-level object is closed: anything after it is refused.
			if _, err := dec.ReadToken(); err != io.EOF {
				return refuse(CodeMalformedJSON, "", "the body has data after the JSON object")
			}
			return nil
		}
	}
}

// syntaxError names what the syntactic error is about.
func syntaxError(dec *jsontext.Decoder, err error) *Error {
	var se *jsontext.SyntacticError
	field := ""
	if errors.As(err, &se) {
		field = pointerField(string(se.JSONPointer))
	}
	msg := err.Error()
	switch {
	case errors.Is(err, jsontext.ErrDuplicateName):
		return refuse(CodeDuplicateField, field, fmt.Sprintf("field %q appears more than once", field))
	case strings.Contains(msg, "invalid UTF-8") || strings.Contains(msg, "surrogate"):
		return refuse(CodeInvalidField, field, "strings must be valid UTF-8")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return refuse(CodeMalformedJSON, "", "the body ends before its JSON object does")
	}
	if se != nil {
		return refuse(CodeMalformedJSON, "", "the body is not valid JSON: "+se.Err.Error())
	}
	return refuse(CodeMalformedJSON, "", "the body is not valid JSON")
}

// underFreeForm reports whether the decoder is inside a free-form top-level member.
func underFreeForm(dec *jsontext.Decoder) bool {
	ptr := string(dec.StackPointer())
	top, _, _ := strings.Cut(strings.TrimPrefix(ptr, "/"), "/")
	return strings.Count(ptr, "/") >= 2 && freeForm[unescapePointer(top)]
}

// stackField names the value the decoder just read, from its stack: object members as .name,
// array elements as [i].
func stackField(dec *jsontext.Decoder) string {
	return fieldName(string(dec.StackPointer()), func(level int, _ string) bool {
		kind, _ := dec.StackIndex(level + 1)
		return kind == '['
	})
}

// pointerField turns a JSON Pointer into the API's field name: "/recipients/3" is
// "recipients[3]", "/metadata/k" is "metadata.k" (a number after the first token is taken for
// an index).
func pointerField(ptr string) string {
	return fieldName(ptr, func(level int, t string) bool {
		_, err := strconv.Atoi(t)
		return err == nil && level > 0
	})
}

// fieldName writes a JSON Pointer's tokens as a field path; index says which are array indices.
func fieldName(ptr string, index func(level int, token string) bool) string {
	if ptr == "" {
		return ""
	}
	var b strings.Builder
	for level, t := range strings.Split(ptr, "/")[1:] {
		if index(level, t) {
			fmt.Fprintf(&b, "[%s]", t)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(unescapePointer(t))
	}
	return b.String()
}

func unescapePointer(t string) string {
	return strings.NewReplacer("~1", "/", "~0", "~").Replace(t)
}

func kindName(goKind string) string {
	switch goKind {
	case "slice", "array":
		return "a list"
	case "map", "struct":
		return "an object"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer" // 1.5, 1e3 and numbers out of range are refused too
	case "float32", "float64":
		return "a number"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	case "ptr":
		return "a value of the documented kind"
	}
	return "a " + goKind
}

// Encode is the body the gateway forwards: the decoded value, encoded again (map keys sorted).
func Encode(v any) []byte {
	b, err := json.Marshal(v, json.Deterministic(true))
	if err != nil {
		// Every type here encodes; a failure is a programming error.
		panic(fmt.Sprintf("wire: encoding %T: %v", v, err))
	}
	return b
}
