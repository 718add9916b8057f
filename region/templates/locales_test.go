package templates

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/herald-notify/herald/region/notify"
)

// comment is a template with German and Austrian variants.
func comment() Template {
	return Template{ID: "comment", Type: "social", Category: "comment",
		Content: map[string]notify.Content{
			notify.Push:  {Title: "{{.who}} commented", Body: `{{plural .count "one" "# comment" "other" "# comments"}} on {{.post.title}}`},
			notify.Email: {Subject: "{{.who}} commented", HTML: `<p>{{plural .count "=0" "no comments" "one" "# comment" "other" "# comments"}}, {{number .total}} in all</p>`},
		},
		Locales: map[string]map[string]notify.Content{
			"de": {
				notify.Push:  {Title: "{{.who}} hat kommentiert", Body: `{{plural .count "one" "# Kommentar" "other" "# Kommentare"}} zu {{.post.title}}`},
				notify.Email: {Subject: "{{.who}} hat kommentiert", HTML: `<p>{{plural .count "=0" "keine Kommentare" "one" "# Kommentar" "other" "# Kommentare"}}, {{number .total}} insgesamt</p>`},
			},
			"de-AT": {
				notify.Push:  {Title: "{{.who}} hat kommentiert", Body: `Servus: {{plural .count "one" "# Kommentar" "other" "# Kommentare"}}`},
				notify.Email: {Subject: "{{.who}} hat kommentiert", HTML: `<p>{{number .total}}</p>`},
			},
		}}
}

func TestCheckRefusesLocaleVariantsThatCouldFailASend(t *testing.T) {
	tests := []struct {
		name      string
		variant   notify.Content // the de push variant
		wantField string
		wantMsg   string
	}{
		{"a variable the default lacks", notify.Content{Title: "{{.who}}", Body: "{{.extra}}"}, "locales.de.push.body", ".extra"},
		{"a field of a variable the default lacks", notify.Content{Title: "{{.who}}", Body: "{{.post.author}}"}, "locales.de.push.body", ".post.author"},
		{"a variable through $", notify.Content{Title: "{{.who}}", Body: "{{with .post}}{{$.secret}}{{end}}"}, "locales.de.push.body", ".secret"},
		{"a variable through a variable", notify.Content{Title: "{{.who}}", Body: "{{$d := .}}{{$d.secret}}"}, "locales.de.push.body", ".secret"},
		{"a field through a variable", notify.Content{Title: "{{.who}}", Body: "{{$p := .post}}{{$q := $p}}{{$q.author}}"}, "locales.de.push.body", ".post.author"},
		{"a variable in a defined template", notify.Content{Title: "{{.who}}", Body: `{{define "x"}}{{.secret}}{{end}}{{template "x" .}}`}, "locales.de.push.body", ".secret"},
		{"a variable in an if", notify.Content{Title: "{{if .vip}}VIP{{end}}", Body: "b"}, "locales.de.push.title", ".vip"},
		{"unparsable", notify.Content{Title: "{{.who", Body: "b"}, "locales.de.push.title", "unclosed"},
		{"unknown function", notify.Content{Title: "{{upper .who}}", Body: "b"}, "locales.de.push.title", "upper"},
		{"unknown plural form", notify.Content{Title: "t", Body: `{{plural .count "one" "x" "plenty" "y" "other" "z"}}`}, "locales.de.push.body", `"plenty"`},
		{"a form German never uses", notify.Content{Title: "t", Body: `{{plural .count "one" "x" "few" "y" "other" "z"}}`}, "locales.de.push.body", `"few"`},
		{"no other form", notify.Content{Title: "t", Body: `{{plural .count "one" "x" "=0" "y"}}`}, "locales.de.push.body", "one, other"},
		{"a form twice", notify.Content{Title: "t", Body: `{{plural .count "one" "x" "one" "y" "other" "z"}}`}, "locales.de.push.body", "twice"},
		{"form name not a literal", notify.Content{Title: "t", Body: `{{plural .count .who "x" "other" "z"}}`}, "locales.de.push.body", "literal"},
		{"text without a form", notify.Content{Title: "t", Body: `{{plural .count "other"}}`}, "locales.de.push.body", "pairs"},
		{"piped", notify.Content{Title: "t", Body: `{{.count | plural "one" "x" "other" "y"}}`}, "locales.de.push.body", "number first"},
		{"a bad exact form", notify.Content{Title: "t", Body: `{{plural .count "=zero" "x" "one" "y" "other" "z"}}`}, "locales.de.push.body", "=zero"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tpl := comment()
			tpl.Locales["de"][notify.Push] = tt.variant
			err := Check(tpl)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField || !strings.Contains(fe.Msg, tt.wantMsg) {
				t.Fatalf("want %s naming %s, got %v", tt.wantField, tt.wantMsg, err)
			}
		})
	}
	if err := Check(comment()); err != nil {
		t.Fatalf("valid template refused: %v", err)
	}
	tpl := comment()
	tpl.Content[notify.Push] = notify.Content{Title: "{{.who}}", Body: "{{range .tags}}{{.}}{{end}}"}
	tpl.Locales["de"][notify.Push] = notify.Content{Title: "{{$w := .who}}{{$w}}", Body: "{{range $t := .tags}}{{$t.name}}{{end}}"}
	tpl.Locales["de-AT"][notify.Push] = notify.Content{Title: "{{.who}}", Body: "{{.tags}}"}
	if err := Check(tpl); err != nil {
		t.Fatalf("variables of the default's, through variables and range, refused: %v", err)
	}
}

func TestCheckRefusesPluralsMissingALocalesForms(t *testing.T) {
	for _, tt := range []struct {
		locale, body, want string
	}{
		{"pl", `{{plural .count "one" "# komentarz" "other" "# komentarzy"}}`, "one, few, many, other"},
		{"ru", `{{plural .count "one" "# комментарий" "few" "# комментария" "other" "# комментариев"}}`, "one, few, many, other"},
		{"ar", `{{plural .count "one" "x" "other" "y"}}`, "zero, one, two, few, many, other"},
		{"ja", `{{plural .count "one" "x" "other" "y"}}`, `"one" is never used`},
	} {
		t.Run(tt.locale, func(t *testing.T) {
			tpl := Template{ID: "t", Content: map[string]notify.Content{notify.SMS: {Text: `{{plural .count "one" "# x" "other" "# xs"}}`}},
				Locales: map[string]map[string]notify.Content{tt.locale: {notify.SMS: {Text: tt.body}}}}
			var fe *FieldError
			if err := Check(tpl); !errors.As(err, &fe) || fe.Field != "locales."+tt.locale+".sms.text" || !strings.Contains(fe.Msg, tt.want) {
				t.Fatalf("want locales.%s.sms.text naming %s, got %v", tt.locale, tt.want, err)
			}
		})
	}
	// The default content follows English rules.
	tpl := Template{ID: "t", Content: map[string]notify.Content{notify.SMS: {Text: `{{plural .count "other" "# xs"}}`}}}
	var fe *FieldError
	if err := Check(tpl); !errors.As(err, &fe) || fe.Field != "content.sms.text" {
		t.Fatalf("default plural without one: %v", err)
	}
}

func TestPluralAndNumberFollowTheLocalesRules(t *testing.T) {
	forms := map[string]string{
		"en": `{{plural .n "one" "# comment" "other" "# comments"}}`,
		"de": `{{plural .n "one" "# Kommentar" "other" "# Kommentare"}}`,
		"pl": `{{plural .n "one" "# komentarz" "few" "# komentarze" "many" "# komentarzy" "other" "# komentarza"}}`,
		"ru": `{{plural .n "one" "# комментарий" "few" "# комментария" "many" "# комментариев" "other" "# комментария"}}`,
		"ar": `{{plural .n "zero" "لا تعليقات" "one" "تعليق" "two" "تعليقان" "few" "# تعليقات" "many" "# تعليقًا" "other" "# تعليق"}}`,
	}
	for _, tt := range []struct {
		locale string
		n      any
		want   string
	}{
		{"en", 1.0, "1 comment"}, {"en", 0.0, "0 comments"}, {"en", 2.0, "2 comments"}, {"en", 1234.0, "1,234 comments"},
		{"en", 1.5, "1.5 comments"}, {"en", "1", "1 comment"}, {"en", 7, "7 comments"},
		{"de", 1.0, "1 Kommentar"}, {"de", 1234.0, "1.234 Kommentare"}, {"de", 2.5, "2,5 Kommentare"},
		{"pl", 1.0, "1 komentarz"}, {"pl", 2.0, "2 komentarze"}, {"pl", 4.0, "4 komentarze"}, {"pl", 5.0, "5 komentarzy"},
		{"pl", 12.0, "12 komentarzy"}, {"pl", 22.0, "22 komentarze"}, {"pl", 25.0, "25 komentarzy"}, {"pl", 1.5, "1,5 komentarza"},
		{"ru", 1.0, "1 комментарий"}, {"ru", 21.0, "21 комментарий"}, {"ru", 3.0, "3 комментария"}, {"ru", 11.0, "11 комментариев"},
		{"ar", 0.0, "لا تعليقات"}, {"ar", 2.0, "تعليقان"}, {"ar", 3.0, "٣ تعليقات"}, {"ar", 11.0, "١١ تعليقًا"}, {"ar", 100.0, "١٠٠ تعليق"},
	} {
		got, err := renderOne(tt.locale, notify.SMS, "text", forms[tt.locale], map[string]any{"n": tt.n})
		if err != nil || got != tt.want {
			t.Errorf("%s %v: got %q (%v), want %q", tt.locale, tt.n, got, err, tt.want)
		}
	}
	for _, tt := range []struct {
		locale string
		n      any
		want   string
	}{
		{"en", 1234.5, "1,234.5"}, {"de", 1234.5, "1.234,5"}, {"de-AT", 1234.5, "1\u00a0234,5"}, {"de-CH", 1234.5, "1’234.5"},
		{"fr", 1234567.0, "1\u00a0234\u00a0567"}, {"de", "-3", "-3"},
	} {
		got, err := renderOne(tt.locale, notify.SMS, "text", "{{number .n}}", map[string]any{"n": tt.n})
		if err != nil || got != tt.want {
			t.Errorf("number %s %v: got %q (%v), want %q", tt.locale, tt.n, got, err, tt.want)
		}
	}
	for _, bad := range []any{"many", true, nil, "1e400", "0x10"} {
		if _, err := renderOne("en", notify.SMS, "text", "{{number .n}}", map[string]any{"n": bad}); err == nil {
			t.Errorf("number of %#v rendered", bad)
		}
	}
}

func TestRenderLocalesRendersEveryVariantAndNamesAMissingVariable(t *testing.T) {
	data := map[string]any{"who": "Bob", "count": 1.0, "total": 1234.5, "post": map[string]any{"title": "Herbst"}}
	def, err := Render(comment(), data)
	if err != nil {
		t.Fatal(err)
	}
	if def[notify.Push].Body != "1 comment on Herbst" || def[notify.Email].HTML != "<p>1 comment, 1,234.5 in all</p>" {
		t.Fatalf("default: %+v", def)
	}
	locs, err := RenderLocales(comment(), data)
	if err != nil {
		t.Fatal(err)
	}
	if got := locs["de"][notify.Push].Body; got != "1 Kommentar zu Herbst" {
		t.Fatalf("de push: %q", got)
	}
	if got := locs["de-AT"][notify.Email].HTML; got != "<p>1\u00a0234,5</p>" {
		t.Fatalf("de-AT email: %q", got)
	}
	data["count"] = 0.0
	if locs, _ := RenderLocales(comment(), data); locs["de"][notify.Email].HTML != "<p>keine Kommentare, 1.234,5 insgesamt</p>" {
		t.Fatalf("de exact form: %q", locs["de"][notify.Email].HTML)
	}
	delete(data, "post")
	var fe *FieldError
	if _, err := RenderLocales(comment(), data); !errors.As(err, &fe) || fe.Field != "data.post" {
		t.Fatalf("want data.post, got %v", err)
	}
	if got, err := RenderLocales(otp(), data); got != nil || err != nil {
		t.Fatalf("a template without variants: %v %v", got, err)
	}
}

func TestRenderedSizeCountsEveryField(t *testing.T) {
	got := RenderedSize(map[string]notify.Content{notify.Email: {Subject: "ab", Text: "c", HTML: "de"}, notify.InApp: {Title: "f", Body: "g", Link: "h"}})
	if got != 8 {
		t.Fatalf("size %d, want 8", got)
	}
}

// BenchmarkRenderAtAccept is what a send with a template costs at accept: the default content
// and every variant, parsed and rendered.
func BenchmarkRenderAtAccept(b *testing.B) {
	data := map[string]any{"who": "Bob", "count": 3.0, "total": 1234.5, "post": map[string]any{"title": "Herbst"}}
	for _, n := range []int{0, 2, 32} {
		tpl := comment()
		variants := tpl.Locales
		tpl.Locales = map[string]map[string]notify.Content{}
		for i, loc := range []string{"de", "de-AT", "fr", "it", "es", "pt", "nl", "sv", "da", "fi", "nb", "is", "et", "lv", "lt", "cs",
			"sk", "hu", "ro", "bg", "hr", "sl", "el", "tr", "he", "ja", "ko", "zh-Hans", "zh-Hant", "th", "vi", "id"}[:n] {
			tpl.Locales[loc] = variants[[]string{"de", "de-AT"}[i%2]]
		}
		b.Run("locales="+strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				if _, err := Render(tpl, data); err != nil {
					b.Fatal(err)
				}
				if _, err := RenderLocales(tpl, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestRenderingIsSafeForConcurrentSends(t *testing.T) {
	data := map[string]any{"who": "Bob", "count": 3.0, "total": 1234.5, "post": map[string]any{"title": "Herbst"}}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for range 50 {
				locs, err := RenderLocales(comment(), data)
				if err == nil && locs["de"][notify.Email].HTML != "<p>3 Kommentare, 1.234,5 insgesamt</p>" {
					err = errors.New("de email: " + locs["de"][notify.Email].HTML)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzCheckLocaleVariant saves a variant field of any text under any locale: Check never
// panics, and a variant it accepts renders from data that fills the default content, or fails
// only for a reason of the data's values (never a missing variable).
func FuzzCheckLocaleVariant(f *testing.F) {
	f.Add("de", `{{plural .count "one" "# Kommentar" "other" "# Kommentare"}}`)
	f.Add("pl", `{{plural .count "one" "a" "few" "b" "many" "c" "other" "d"}} {{number .total}}`)
	f.Add("ar", `{{with .post}}{{.title}}{{end}}{{$.who}}`)
	f.Add("de-AT", `{{range .items}}{{.}}{{end}}{{if .post.title}}x{{end}}`)
	f.Add("ja", `{{plural .count "=0" "none" "other" "#"}}`)
	f.Add("de", `{{$d := .}}{{$p := $d.post}}{{$p.title}}`)
	f.Add("de", `{{define "x"}}{{.who}}{{end}}{{template "x" .}}`)
	f.Fuzz(func(t *testing.T, locale, text string) {
		tpl := Template{ID: "t", Content: map[string]notify.Content{
			notify.SMS: {Text: `{{.who}} {{plural .count "one" "# x" "other" "# xs"}} {{number .total}} {{.post.title}} {{range .items}}{{.}}{{end}}`},
		}, Locales: map[string]map[string]notify.Content{locale: {notify.SMS: {Text: text}}}}
		if Check(tpl) != nil {
			return
		}
		data := map[string]any{"who": "Bob", "count": 2.0, "total": 1.5, "post": map[string]any{"title": "T"}, "items": []any{"a"}}
		_, err := RenderLocales(tpl, data)
		var fe *FieldError
		if errors.As(err, &fe) {
			t.Fatalf("accepted %q for %q, which needs %s", text, locale, fe.Field)
		}
	})
}

func TestDefaultContentFollowsTheTemplatesDefaultLocale(t *testing.T) {
	tpl := Template{ID: "t", DefaultLocale: "pl", Content: map[string]notify.Content{
		notify.SMS: {Text: `{{plural .n "one" "# komentarz" "other" "# komentarzy"}}`}}}
	var fe *FieldError
	if err := Check(tpl); !errors.As(err, &fe) || fe.Field != "content.sms.text" || !strings.Contains(fe.Msg, "few") {
		t.Fatalf("Polish default content without few and many: %v", err)
	}
	tpl.Content[notify.SMS] = notify.Content{Text: `{{plural .n "one" "# komentarz" "few" "# komentarze" "many" "# komentarzy" "other" "# komentarza"}}, {{number .total}}`}
	if err := Check(tpl); err != nil {
		t.Fatal(err)
	}
	got, err := Render(tpl, map[string]any{"n": 3.0, "total": 1234.5})
	if err != nil || got[notify.SMS].Text != "3 komentarze, 1\u00a0234,5" {
		t.Fatalf("rendered %q (%v)", got[notify.SMS].Text, err)
	}
}
