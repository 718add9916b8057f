package wire

import (
	"fmt"
	"strings"
	"testing"
)

// templateWith is a template body whose default content has push title and body and an email
// subject, with locales given as raw JSON.
func templateWith(locales string) string {
	return `{"type":"social","category":"comment","content":{"push":{"title":"New comment","body":"{{.who}} commented"},` +
		`"email":{"subject":"{{.who}} commented"}},"locales":` + locales + `}`
}

func decodeTemplate(body string) *Error {
	var t Template
	if e := Decode([]byte(body), &t); e != nil {
		return e
	}
	return t.Validate()
}

func TestTemplateLocalesAreCanonicalKnownAndComplete(t *testing.T) {
	many := make([]string, 0, MaxLocales+1)
	for _, l := range []string{"af", "am", "ar", "az", "be", "bg", "bn", "bs", "ca", "cs", "cy", "da", "de", "el", "en", "es", "et", "eu",
		"fa", "fi", "fr", "ga", "gl", "gu", "he", "hi", "hr", "hu", "hy", "id", "is", "it", "ja"} {
		many = append(many, fmt.Sprintf(`%q:{"push":{"title":"t","body":"b"}}`, l))
	}
	for _, tc := range []struct {
		name, locales, code, field string
	}{
		{"underscore", `{"de_AT":{"push":{"title":"t","body":"b"}}}`, CodeInvalidField, "locales.de_AT"},
		{"case", `{"DE-at":{"push":{"title":"t","body":"b"}}}`, CodeInvalidField, "locales.DE-at"},
		{"deprecated code", `{"iw":{"push":{"title":"t","body":"b"}}}`, CodeInvalidField, "locales.iw"},
		{"not a tag", `{"german":{"push":{"title":"t","body":"b"}}}`, CodeInvalidField, "locales.german"},
		{"unknown language", `{"xx":{"push":{"title":"t","body":"b"}}}`, CodeInvalidField, "locales.xx"},
		{"root", `{"und":{"push":{"title":"t","body":"b"}}}`, CodeInvalidField, "locales.und"},
		{"extension", `{"de-AT-u-nu-latn":{"push":{"title":"t","body":"b"}}}`, CodeInvalidField, "locales.de-AT-u-nu-latn"},
		{"private use", `{"x-klingon":{"push":{"title":"t","body":"b"}}}`, CodeInvalidField, "locales.x-klingon"},
		{"empty key", `{"":{"push":{"title":"t","body":"b"}}}`, CodeInvalidField, "locales."},
		{"huge key", `{"` + strings.Repeat("a", 100) + `":{"push":{"title":"t","body":"b"}}}`, CodeInvalidField, "locales." + strings.Repeat("a", 100)},
		{"too many", `{` + strings.Join(many, ",") + `}`, CodeInvalidField, "locales"},
		{"no channel", `{"de":{}}`, CodeMissingField, "locales.de"},
		{"unknown channel", `{"de":{"fax":{"text":"t"}}}`, CodeInvalidChannel, "locales.de.fax"},
		{"channel the default lacks", `{"de":{"sms":{"text":"t"}}}`, CodeInvalidChannel, "locales.de.sms"},
		{"missing field", `{"de":{"push":{"title":"t"}}}`, CodeMissingField, "locales.de.push.body"},
		{"empty field", `{"de":{"push":{"title":"t","body":""}}}`, CodeMissingField, "locales.de.push.body"},
		{"field the default lacks", `{"de":{"push":{"title":"t","body":"b","link":"https://x"}}}`, CodeInvalidField, "locales.de.push.link"},
		{"unknown field", `{"de":{"push":{"title":"t","body":"b","footer":"f"}}}`, CodeUnknownField, "locales.de.push.footer"},
		{"duplicate locale", `{"de":{"push":{"title":"t","body":"b"}},"de":{"push":{"title":"t","body":"b"}}}`, CodeDuplicateField, "locales.de"},
		{"duplicate locale by escape", `{"de":{"push":{"title":"t","body":"b"}},"d\u0065":{"push":{"title":"t","body":"b"}}}`, CodeDuplicateField, "locales.de"},
		{"null locale", `{"de":null}`, CodeInvalidField, "locales.de"},
		{"null locales", `null`, CodeInvalidField, "locales"},
		{"NUL in a field", `{"de":{"push":{"title":"t","body":"a\u0000b"}}}`, CodeInvalidField, "locales.de.push.body"},
		{"NUL in a key", `{"de\u0000":{"push":{"title":"t","body":"b"}}}`, CodeInvalidField, "locales.de\x00"},
		{"wrong kind", `{"de":"Hallo"}`, CodeInvalidField, "locales.de"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := decodeTemplate(templateWith(tc.locales))
			if e == nil {
				t.Fatalf("accepted %s", tc.locales)
			}
			if e.Code != tc.code || e.Field != tc.field {
				t.Fatalf("got %s field %q, want %s field %q (%s)", e.Code, e.Field, tc.code, tc.field, e.Message)
			}
		})
	}
}

func TestTemplateDefaultLocaleIsACanonicalTag(t *testing.T) {
	body := func(loc string) string {
		return `{"type":"social","category":"c","content":{"sms":{"text":"x"}},"default_locale":"` + loc + `"}`
	}
	for loc, ok := range map[string]bool{"de": true, "pt-BR": true, "de_DE": false, "EN": false, "xx": false, "und": false, "en-u-nu-thai": false} {
		e := decodeTemplate(body(loc))
		if ok != (e == nil) || (e != nil && e.Field != "default_locale") {
			t.Errorf("default_locale %q: %v", loc, e)
		}
	}
	if e := decodeTemplate(`{"type":"social","category":"c","content":{"sms":{"text":"x"}},"default_locale":null}`); e == nil || e.Field != "default_locale" {
		t.Errorf("null default_locale: %v", e)
	}
}

func TestTemplateLocaleRefusalSaysTheCanonicalForm(t *testing.T) {
	e := decodeTemplate(templateWith(`{"de_AT":{"push":{"title":"t","body":"b"}}}`))
	if e == nil || !strings.Contains(e.Message, `"de-AT"`) {
		t.Fatalf("want the canonical form named, got %v", e)
	}
}

func TestTemplateLocalesAccepted(t *testing.T) {
	for _, locales := range []string{
		`{}`,
		`{"de":{"push":{"title":"Neuer Kommentar","body":"{{.who}} hat kommentiert"}}}`,
		`{"de":{"push":{"title":"t","body":"b"}},"de-AT":{"push":{"title":"t","body":"b"},"email":{"subject":"s"}}}`,
		`{"zh-Hant":{"email":{"subject":"s"}},"sr-Latn":{"email":{"subject":"s"}},"es-419":{"email":{"subject":"s"}},"de-CH-1901":{"email":{"subject":"s"}}}`,
	} {
		if e := decodeTemplate(templateWith(locales)); e != nil {
			t.Errorf("%s: refused: %v", locales, e)
		}
	}
}

func FuzzTemplateLocales(f *testing.F) {
	f.Add(`{"de":{"push":{"title":"t","body":"b"}}}`)
	f.Add(`{"de_AT":{"push":{"title":"t"}}}`)
	f.Add(`{"zh-hant-tw":{"email":{"subject":"s"}},"en-GB-oed":{}}`)
	f.Add(`{"sgn-BE-FR":{"push":{"title":"t","body":"b"}}}`)
	f.Fuzz(func(t *testing.T, locales string) {
		var tpl Template
		if e := Decode([]byte(templateWith(locales)), &tpl); e != nil {
			return
		}
		if e := tpl.Validate(); e != nil {
			if e.Field == "" || e.Code == "" {
				t.Fatalf("a refusal names no field or code: %v", e)
			}
			return
		}
		for loc := range tpl.Locales {
			c, ok, err := CanonicalLocale(loc)
			if err != nil || !ok || c != loc {
				t.Fatalf("accepted %q, whose canonical form is %q (%v)", loc, c, err)
			}
			if again, ok, err := CanonicalLocale(c); err != nil || !ok || again != c {
				t.Fatalf("canonical form %q is not stable: %q %v", c, again, err)
			}
		}
	})
}

func TestTemplateLocalesSurviveTheGatewaysReencoding(t *testing.T) {
	body := templateWith(`{"de":{"push":{"title":"Hallo","body":"{{plural .n \"one\" \"# Kommentar\" \"other\" \"# Kommentare\"}}"}},"de-AT":{"email":{"subject":"Servus"}}}`)
	var first, second Template
	if e := Decode([]byte(body), &first); e != nil {
		t.Fatal(e)
	}
	if e := Decode(Encode(&first), &second); e != nil {
		t.Fatal(e)
	}
	if string(Encode(&first)) != string(Encode(&second)) || second.Locales["de"]["push"].Body != first.Locales["de"]["push"].Body ||
		second.Locales["de-AT"]["email"].Subject != "Servus" {
		t.Fatalf("re-encoded: %s", Encode(&second))
	}
	var withRules Template
	if e := Decode([]byte(`{"type":"social","category":"c","content":{"sms":{"text":"x"}},"default_locale":"de-AT"}`), &withRules); e != nil {
		t.Fatal(e)
	}
	if !strings.Contains(string(Encode(&withRules)), `"default_locale":"de-AT"`) {
		t.Fatalf("default_locale lost: %s", Encode(&withRules))
	}
	if strings.Contains(string(Encode(&Template{Type: "social", Category: "c", Content: map[string]Content{"sms": {Text: "x"}}})), "locale") {
		t.Fatal("a template without locales is forwarded with them")
	}
}
