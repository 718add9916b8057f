package wire

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"golang.org/x/text/language"
)

// MaxLocales is how many locale variants a template may have.
const MaxLocales = 32

// maxLocaleBytes bounds a locale tag (RFC 5646 advises 35 characters for language-script-region).
const maxLocaleBytes = 35

// CanonicalLocale parses a locale tag of a template variant: a BCP 47 tag with a known
// language, no extensions or private use, written in its canonical form ("de-AT", not "de_AT"
// or "DE-at"; "he", not "iw"), so that two keys never name one locale. It returns the
// canonical form and whether s is it.
func CanonicalLocale(s string) (canonical string, ok bool, err error) {
	if s == "" || len(s) > maxLocaleBytes {
		return "", false, fmt.Errorf("a locale is a BCP 47 tag of 1-%d characters", maxLocaleBytes)
	}
	tag, err := language.Parse(s)
	if err != nil {
		return "", false, fmt.Errorf("%q is not a BCP 47 language tag like de-AT: %w", s, err)
	}
	if base, conf := tag.Base(); conf != language.Exact || base.String() == "und" {
		return "", false, fmt.Errorf("%q names no language", s)
	}
	if len(tag.Extensions()) > 0 || strings.Contains(tag.String(), "-x-") {
		return "", false, fmt.Errorf("%q has extensions or private use; a variant is language[-script][-region][-variant]", s)
	}
	c := tag.String()
	return c, c == s, nil
}

// validateLocales checks the template's locale variants: canonical keys, at most MaxLocales,
// only the channels of the default content, and in each channel exactly the non-empty fields
// the default content has there (a missing one is a missing variant, refused here rather than
// failing a send).
func (t *Template) validateLocales() *Error {
	if t.DefaultLocale != "" {
		canonical, ok, err := CanonicalLocale(t.DefaultLocale)
		if err != nil {
			return refuse(CodeInvalidField, "default_locale", err.Error())
		}
		if !ok {
			return refuse(CodeInvalidField, "default_locale", fmt.Sprintf("write the locale %q in its canonical form %q", t.DefaultLocale, canonical))
		}
	}
	if t.Locales == nil {
		return nil
	}
	if len(t.Locales) > MaxLocales {
		return refuse(CodeInvalidField, "locales", fmt.Sprintf("at most %d locales per template", MaxLocales))
	}
	for _, loc := range sortedKeys(t.Locales) {
		field := "locales." + loc
		canonical, ok, err := CanonicalLocale(loc)
		if err != nil {
			return refuse(CodeInvalidField, field, err.Error())
		}
		if !ok {
			return refuse(CodeInvalidField, field, fmt.Sprintf("write the locale %q in its canonical form %q", loc, canonical))
		}
		chans := t.Locales[loc]
		if len(chans) == 0 {
			return refuse(CodeMissingField, field, "a locale needs content for at least one channel")
		}
		for _, ch := range sortedKeys(chans) {
			if !slices.Contains(Channels, ch) {
				return refuse(CodeInvalidChannel, field+"."+ch, fmt.Sprintf("unknown channel %q (in_app, push, email, sms)", ch))
			}
			def, ok := t.Content[ch]
			if !ok {
				return refuse(CodeInvalidChannel, field+"."+ch, fmt.Sprintf("the default content has no %s channel; a locale varies the default's channels only", ch))
			}
			want, got := def.Fields(), chans[ch].Fields()
			for _, name := range ContentFields {
				switch {
				case want[name] != "" && got[name] == "":
					return refuse(CodeMissingField, field+"."+ch+"."+name, fmt.Sprintf("the default content has %s.%s, so every locale needs it", ch, name))
				case want[name] == "" && got[name] != "":
					return refuse(CodeInvalidField, field+"."+ch+"."+name, fmt.Sprintf("the default content has no %s.%s; a locale has the same fields as the default", ch, name))
				}
			}
		}
	}
	return nil
}

// ContentFields are the fields of a Content, in order.
var ContentFields = []string{"title", "body", "link", "subject", "text", "html"}

// Fields returns the content's fields by name.
func (c Content) Fields() map[string]string {
	return map[string]string{"title": c.Title, "body": c.Body, "link": c.Link, "subject": c.Subject, "text": c.Text, "html": c.HTML}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
