package templates

import (
	"errors"
	"strings"
	"testing"

	"github.com/herald-notify/herald/region/notify"
)

func otp() Template {
	return Template{ID: "otp", Type: "transactional", Category: "otp", Content: map[string]notify.Content{
		notify.Push:  {Title: "Your code", Body: "Code {{.code}} for {{.app}}"},
		notify.Email: {Subject: "Code for {{.app}}", Text: "Code {{.code}}", HTML: "<p>Hello {{.name}}, code <b>{{.code}}</b></p>"},
		notify.SMS:   {Text: "{{.code}} is your code"},
		notify.InApp: {Title: "Sign-in code", Body: "{{.code}}", Link: "https://example.com/login"},
	}}
}

func TestRenderFillsEveryChannelAndEscapesHTML(t *testing.T) {
	got, err := Render(otp(), map[string]any{"code": "123456", "app": "Acme", "name": "<script>x</script>"})
	if err != nil {
		t.Fatal(err)
	}
	if got[notify.Push].Body != "Code 123456 for Acme" || got[notify.SMS].Text != "123456 is your code" {
		t.Fatalf("rendered %+v", got)
	}
	if html := got[notify.Email].HTML; strings.Contains(html, "<script>") || !strings.Contains(html, "&lt;script&gt;") {
		t.Fatalf("HTML not escaped: %s", html)
	}
	if got[notify.Email].Text != "Code 123456" {
		t.Fatalf("text part %q", got[notify.Email].Text)
	}
}

func TestRenderMissingVariableIsAFieldErrorNotABlank(t *testing.T) {
	_, err := Render(otp(), map[string]any{"app": "Acme", "name": "x"})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "data.code" {
		t.Fatalf("want FieldError on data.code, got %v", err)
	}
}

func TestCheckRefusesBrokenTemplates(t *testing.T) {
	tests := []struct {
		name      string
		content   map[string]notify.Content
		wantField string
	}{
		{"no content", nil, "content"},
		{"unknown channel", map[string]notify.Content{"fax": {Body: "x"}}, "content.fax"},
		{"field of another channel", map[string]notify.Content{notify.SMS: {Subject: "x"}}, "content.sms.subject"},
		{"unparsable", map[string]notify.Content{notify.Push: {Body: "{{.code"}}, "content.push.body"},
		{"empty channel", map[string]notify.Content{notify.Push: {}}, "content.push"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(Template{ID: "t", Content: tt.content})
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField {
				t.Fatalf("want field %s, got %v", tt.wantField, err)
			}
		})
	}
	if err := Check(otp()); err != nil {
		t.Fatalf("valid template refused: %v", err)
	}
}
