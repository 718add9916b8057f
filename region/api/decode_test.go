package api

import (
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestDecodeSendNormalisesRecipientsAndSendAt(t *testing.T) {
	req, err := DecodeSend(strings.NewReader(`{"type":"social","category":"c","body":"b","recipients":["a","b","a"],"send_at":"2026-11-25T11:00:00Z"}`), now)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(req.Recipients, ",") != "a,b" {
		t.Fatalf("recipients %v", req.Recipients)
	}
	if req.ScheduledFor() != nil {
		t.Fatal("a send_at in the past must mean now")
	}
	req, err = DecodeSend(strings.NewReader(`{"type":"social","category":"c","body":"b","topic":"news","send_at":"2026-11-26T09:00:00+01:00"}`), now)
	if err != nil || req.ScheduledFor() == nil || !req.ScheduledFor().Equal(time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)) {
		t.Fatalf("send_at %v err %v", req.ScheduledFor(), err)
	}
}

func TestDecodeSendRejectsEachInvalidFieldByName(t *testing.T) {
	tests := []struct{ body, code, field string }{
		{`{"type":"social","category":"c","body":"b","recipients":["u"],"channels":["push","push"]}`, CodeInvalidChannel, "channels[1]"},
		{`{"type":"social","category":"c","body":"b","recipients":["u"],"idempotency_key":"   "}`, CodeInvalidField, "idempotency_key"},
		{`{"type":"social","category":"c","body":"b","recipients":["u"],"link":"javascript-alert"}`, CodeInvalidField, "link"},
		{`{"type":"social","category":"c","body":"b","data":{"x":1},"recipients":["u"]}`, CodeConflictingFields, "data"},
		{`{"type":"social","body":"b","recipients":["u"]}`, CodeMissingField, "category"},
		{`{"type":"social","category":"c","body":"b","recipients":["u"],"metadata":{"k":1}}`, CodeInvalidField, "metadata.k"},
		{"{\"type\":\"social\",\"category\":\"c\",\"body\":\"\xff\",\"recipients\":[\"u\"]}", CodeInvalidField, "body"},
		{`{"type":"social","category":"c","body":"b","Recipients":["u"]}`, CodeUnknownField, "Recipients"},
		{`{"type":"social","category":"c","body":"b","recipients":["u"],"recipients":["v"]}`, CodeDuplicateField, "recipients"},
		{`{"type":"social","category":"c","body":"b","recipients":["u"],"topic":""}`, CodeConflictingFields, "topic"},
		{``, CodeMalformedJSON, ""},
	}
	for _, tt := range tests {
		_, err := DecodeSend(strings.NewReader(tt.body), now)
		if err == nil || err.Code != tt.code || err.Field != tt.field || err.Status != 400 {
			t.Errorf("%s: got %+v, want %s on %q", tt.body, err, tt.code, tt.field)
		}
	}
}

// FuzzDecodeSend checks that any body either decodes into a request that satisfies every rule,
// or is refused with a 400 and a stable code, and never panics.
func FuzzDecodeSend(f *testing.F) {
	seeds := []string{
		`{"type":"transactional","template_id":"otp","data":{"code":"1"},"recipients":["u1"]}`,
		`{"type":"social","category":"comment","title":"t","body":"b","topic":"news","channels":["in_app","push"]}`,
		`{"type":"marketing","category":"promo","body":"b","recipients":["a","b"],"send_at":"2026-12-01T09:00:00Z","idempotency_key":"k","metadata":{"a":"b"}}`,
		`{"type":"social",`, `[]`, `null`, `{"recipients":[1]}`, `{"type":"social","category":"c","body":"b","recipients":["u"]}{}`,
	}
	for _, s := range seeds {
		f.Add(s)
	}
	codes := map[string]bool{CodeMalformedJSON: true, CodeUnknownField: true, CodePayloadTooLarge: true, CodeInvalidField: true,
		CodeMissingField: true, CodeConflictingFields: true, CodeInvalidType: true, CodeTooManyRecipients: true,
		CodeInvalidChannel: true, CodeInvalidSendAt: true, CodeDuplicateField: true}
	f.Fuzz(func(t *testing.T, body string) {
		req, err := DecodeSend(strings.NewReader(body), now)
		if err != nil {
			if err.Status != 400 || !codes[err.Code] {
				t.Fatalf("unexpected error %+v", err)
			}
			return
		}
		if (req.TopicName() == "") == (len(req.Recipients) == 0) || len(req.Recipients) > MaxRecipients {
			t.Fatalf("accepted bad recipients: %+v", req)
		}
		if req.TemplateID == "" && req.Body == "" {
			t.Fatalf("accepted without content: %+v", req)
		}
		for _, u := range req.Recipients {
			if !idRE.MatchString(u) {
				t.Fatalf("accepted bad user id %q", u)
			}
		}
	})
}
