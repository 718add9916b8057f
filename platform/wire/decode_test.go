package wire

import (
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// refusal is a send body and the refusal it must get.
type refusal struct{ name, body, code, field string }

func checkRefusals(t *testing.T, cases []refusal) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, e := DecodeSend([]byte(tc.body), now)
			if e == nil {
				t.Fatalf("accepted %s", tc.body)
			}
			if e.Code != tc.code || e.Field != tc.field {
				t.Fatalf("got %s field %q, want %s field %q (%s)", e.Code, e.Field, tc.code, tc.field, e.Message)
			}
		})
	}
}

func TestDecodeRefusesWhatTwoReadersCouldReadDifferently(t *testing.T) {
	cases := []refusal{
		{"key in another case", `{"type":"social","category":"c","body":"b","Recipients":["us1"]}`, CodeUnknownField, "Recipients"},
		{"key with a Unicode fold (Kelvin sign)", "{\"type\":\"social\",\"category\":\"c\",\"body\":\"b\",\"recipients\":[\"a\"],\"lin\u212a\":\"x\"}", CodeUnknownField, "lin\u212a"},
		{"long s folding to s", "{\"type\":\"social\",\"category\":\"c\",\"body\":\"b\",\"recipient\u017f\":[\"a\"]}", CodeUnknownField, "recipient\u017f"},
		{"duplicate key", `{"type":"social","category":"c","body":"b","recipients":["a"],"recipients":["b"]}`, CodeDuplicateField, "recipients"},
		{"duplicate key by escape", `{"type":"social","category":"c","body":"b","recipients":["a"],"recipient\u0073":["b"]}`, CodeDuplicateField, "recipients"},
		{"unknown key", `{"type":"social","category":"c","body":"b","recipients":["a"],"region":"eu-west-1"}`, CodeUnknownField, "region"},
		{"invalid UTF-8", "{\"type\":\"social\",\"category\":\"c\",\"body\":\"\xff\",\"recipients\":[\"a\"]}", CodeInvalidField, "body"},
		{"unpaired surrogate", `{"type":"social","category":"c","body":"\ud800","recipients":["a"]}`, CodeInvalidField, "body"},
		{"trailing data", `{"type":"social","category":"c","body":"b","recipients":["a"]} {"recipients":["b"]}`, CodeMalformedJSON, ""},
		{"trailing garbage", `{"type":"social","category":"c","body":"b","recipients":["a"]}x`, CodeMalformedJSON, ""},
		{"not an object", `["a"]`, CodeMalformedJSON, ""},
		{"empty", ``, CodeMalformedJSON, ""},
		{"cut short", `{"type":"social"`, CodeMalformedJSON, ""},
		{"NUL in body", `{"type":"social","category":"c","body":"a\u0000b","recipients":["a"]}`, CodeInvalidField, "body"},
		{"NUL in a recipient", `{"type":"social","category":"c","body":"b","recipients":["a","b\u0000"]}`, CodeInvalidField, "recipients[1]"},
		{"NUL in a metadata key", `{"type":"social","category":"c","body":"b","recipients":["a"],"metadata":{"k\u0000":"v"}}`, CodeInvalidField, "metadata.k\x00"},
		{"null topic", `{"type":"social","category":"c","body":"b","recipients":["a"],"topic":null}`, CodeInvalidField, "topic"},
		{"null recipients", `{"type":"social","category":"c","body":"b","recipients":null,"topic":"t"}`, CodeInvalidField, "recipients"},
		{"wrong kind", `{"type":"social","category":"c","body":"b","recipients":"a"}`, CodeInvalidField, "recipients"},
		{"wrong element kind", `{"type":"social","category":"c","body":"b","recipients":["a",1]}`, CodeInvalidField, "recipients[1]"},
	}
	checkRefusals(t, cases)
}

func TestSendValidateRefusesEmptyAndAmbiguousTargets(t *testing.T) {
	cases := []refusal{
		{"empty topic beside recipients", `{"type":"transactional","category":"otp","body":"1","recipients":["us1"],"topic":""}`, CodeConflictingFields, "topic"},
		{"empty topic alone", `{"type":"transactional","category":"otp","body":"1","topic":""}`, CodeInvalidField, "topic"},
		{"topic and empty recipients", `{"type":"transactional","category":"otp","body":"1","recipients":[],"topic":"t"}`, CodeConflictingFields, "topic"},
		{"empty recipients", `{"type":"transactional","category":"otp","body":"1","recipients":[]}`, CodeMissingField, "recipients"},
		{"neither", `{"type":"transactional","category":"otp","body":"1"}`, CodeMissingField, "recipients"},
		{"empty user id", `{"type":"transactional","category":"otp","body":"1","recipients":[""]}`, CodeInvalidField, "recipients[0]"},
		{"dot user id", `{"type":"transactional","category":"otp","body":"1","recipients":["ok","."]}`, CodeInvalidField, "recipients[1]"},
		{"dotdot user id", `{"type":"transactional","category":"otp","body":"1","recipients":[".."]}`, CodeInvalidField, "recipients[0]"},
		{"dotdot topic", `{"type":"transactional","category":"otp","body":"1","topic":".."}`, CodeInvalidField, "topic"},
		{"empty channels", `{"type":"transactional","category":"otp","body":"1","recipients":["a"],"channels":[]}`, CodeInvalidChannel, "channels"},
		{"javascript link", `{"type":"social","category":"c","body":"1","recipients":["a"],"link":"javascript://%0aalert(1)"}`, CodeInvalidField, "link"},
		{"JavaScript link, upper case", `{"type":"social","category":"c","body":"1","recipients":["a"],"link":"JavaScript:alert(1)"}`, CodeInvalidField, "link"},
		{"data link", `{"type":"social","category":"c","body":"1","recipients":["a"],"link":"data:text/html,<script>x</script>"}`, CodeInvalidField, "link"},
		{"empty body", `{"type":"social","category":"c","body":"","recipients":["a"]}`, CodeMissingField, "body"},
		{"blank idempotency key", `{"type":"social","category":"c","body":"1","recipients":["a"],"idempotency_key":"  "}`, CodeInvalidField, "idempotency_key"},
		{"too many recipients", `{"type":"social","category":"c","body":"1","recipients":[` + strings.Repeat(`"a",`, MaxRecipients) + `"b"]}`, CodeTooManyRecipients, "recipients"},
	}
	checkRefusals(t, cases)
}

func TestSendAcceptsAndReEncodesWhatItRead(t *testing.T) {
	body := `{"type":"social","category":"c","title":"T","body":"B","link":"myapp://x","recipients":["a","b","a"],"channels":["push"],"data":null,"metadata":{"k":"v"}}`
	// data is null: free-form only inside it, so null data itself is refused.
	if _, e := DecodeSend([]byte(body), now); e == nil || e.Field != "data" {
		t.Fatalf("null data: %v", e)
	}
	body = `{"type":"social","category":"c","title":"T","body":"B","link":"myapp://x","recipients":["a","b","a"],"channels":["push"],"metadata":{"k":"v"},"send_at":"2026-12-07T09:00:00Z"}`
	s, e := DecodeSend([]byte(body), now)
	if e != nil {
		t.Fatal(e)
	}
	if strings.Join(s.Recipients, ",") != "a,b" || s.ScheduledFor() == nil || s.TopicName() != "" {
		t.Fatalf("read %+v", s)
	}
	again, e := DecodeSend(Encode(s), now)
	if e != nil {
		t.Fatalf("re-encoded body refused: %v (%s)", e, Encode(s))
	}
	if string(Encode(again)) != string(Encode(s)) {
		t.Fatalf("re-encoding changed the send:\n%s\n%s", Encode(s), Encode(again))
	}
	tmpl := `{"type":"social","template_id":"t1","data":{"n":null,"x":[1,{"y":null}]},"topic":"news"}`
	s, e = DecodeSend([]byte(tmpl), now)
	if e != nil {
		t.Fatalf("null inside data refused: %v", e)
	}
	if s.TopicName() != "news" || s.Recipients != nil {
		t.Fatalf("read %+v", s)
	}
}

func TestUserKeepsOmittedFieldsApart(t *testing.T) {
	var u User
	if e := Decode([]byte(`{"country":"US"}`), &u); e != nil {
		t.Fatal(e)
	}
	if u.Email != nil || u.Phone != nil || u.Locale != nil || u.Country == nil {
		t.Fatalf("read %+v", u)
	}
	if got := string(Encode(&u)); got != `{"country":"US"}` {
		t.Fatalf("encoded %s", got)
	}
	for _, body := range []string{`{"country":"us"}`, `{"country":""}`, `{"email":"a@b\u0000.c"}`, `{"email":"Ada <a@b.c>"}`, `{"phone":"123"}`, `{"locale":"de_DE!"}`, `{"Email":"a@b.c"}`} {
		var u User
		e := Decode([]byte(body), &u)
		if e == nil {
			e = u.Validate()
		}
		if e == nil {
			t.Errorf("accepted %s", body)
		}
	}
}

func TestDeviceAndRefsRefuseBadIDs(t *testing.T) {
	for _, body := range []string{
		`{"platform":"ios","token":"` + strings.Repeat("a", 64) + `","device_id":".."}`,
		`{"platform":"ios","token":"` + strings.Repeat("a", 64) + `","device_id":""}`,
		`{"platform":"IOS","token":"` + strings.Repeat("a", 64) + `","device_id":"d"}`,
		`{"platform":"android","token":"short","device_id":"d"}`,
	} {
		var d Device
		e := Decode([]byte(body), &d)
		if e == nil {
			e = d.Validate()
		}
		if e == nil {
			t.Errorf("accepted %s", body)
		}
	}
	for _, body := range []string{`{}`, `{"user_id":""}`, `{"user_id":"."}`, `{"User_id":"a"}`, `{"user_id":"a","user_id":"b"}`} {
		var r UserRef
		e := Decode([]byte(body), &r)
		if e == nil {
			e = r.Validate()
		}
		if e == nil {
			t.Errorf("accepted %s", body)
		}
	}
	var empty Empty
	if e := Decode([]byte(`{}`), &empty); e != nil {
		t.Errorf("{} refused: %v", e)
	}
	if e := Decode([]byte(`{"x":1}`), &empty); e == nil || e.Code != CodeUnknownField {
		t.Errorf(`{"x":1} as an empty body: %v`, e)
	}
}

func TestPreferencesValidate(t *testing.T) {
	ok := `{"channels":{"sms":false},"categories":{"promo":{"email":false}},"quiet_hours":{"start":"22:00","end":"07:00"},"timezone":"Europe/Paris","channel_order":["push","email"],"hard_stop":false}`
	var p Preferences
	if e := Decode([]byte(ok), &p); e != nil || p.Validate() != nil {
		t.Fatalf("refused %s: %v %v", ok, e, p.Validate())
	}
	for _, body := range []string{`{"channels":{"fax":true}}`, `{"timezone":"Local"}`, `{"timezone":"../../etc/passwd"}`, `{"quiet_hours":{"start":"25:00","end":"07:00"}}`, `{"channel_order":["push","push"]}`, `{"quiet_hours":null}`} {
		var p Preferences
		e := Decode([]byte(body), &p)
		if e == nil {
			e = p.Validate()
		}
		if e == nil {
			t.Errorf("accepted %s", body)
		}
	}
}
