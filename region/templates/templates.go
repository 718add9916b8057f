// Package templates stores an app's notification templates and renders them safely: a
// variable missing from the event's data is an error at send time (never a blank), and email
// HTML is rendered with contextual escaping.
package templates

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"regexp"
	"strings"
	"sync"
	texttemplate "text/template"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/region/notify"
)

// ErrNotFound means the app has no template with that id.
var ErrNotFound = errors.New("template not found")

// Template is a stored template. Content maps a channel to the text of its fields, each a Go
// template ({{.name}}) over the event's data. Locales holds variants of Content by canonical
// BCP 47 tag, with the same channels and fields; Content itself is rendered under the rules of
// DefaultLocale.
type Template struct {
	ID       string                               `json:"id"`
	Type     string                               `json:"type"`
	Category string                               `json:"category"`
	Content  map[string]notify.Content            `json:"content"`
	Locales  map[string]map[string]notify.Content `json:"locales,omitempty"`
	// DefaultLocale is the locale whose plural and number rules Content follows; empty for
	// DefaultLocale.
	DefaultLocale string    `json:"default_locale,omitempty"`
	Version       int       `json:"version"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// DefaultLocale is the locale whose plural and number rules the default content is rendered
// with when the template names none.
const DefaultLocale = "en"

// contentLocale is the locale of the template's default content.
func (t Template) contentLocale() string {
	if t.DefaultLocale == "" {
		return DefaultLocale
	}
	return t.DefaultLocale
}

// FieldError names the field of a template or of the data that is at fault.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// channelFields lists which content fields each channel uses.
var channelFields = map[string][]string{
	notify.Push:  {"title", "body"},
	notify.Email: {"subject", "text", "html"},
	notify.SMS:   {"text"},
	notify.InApp: {"title", "body", "link"},
}

// contentFields are a Content's fields, in a fixed order so errors name the first at fault.
var contentFields = []string{"title", "body", "link", "subject", "text", "html"}

func fieldsOf(c notify.Content) map[string]string {
	return map[string]string{"title": c.Title, "body": c.Body, "link": c.Link, "subject": c.Subject, "text": c.Text, "html": c.HTML}
}

// Check parses every field of the template and of each locale variant, so a broken template is
// refused when stored. A variant may use only the variables the default content uses (a send
// whose data fills the default must fill every variant), and each plural names forms of its
// locale's rules.
func Check(t Template) error {
	if len(t.Content) == 0 {
		return &FieldError{"content", "must have content for at least one channel"}
	}
	var used []path // the variables the default content uses
	for _, ch := range sorted(t.Content) {
		c := t.Content[ch]
		allowed, ok := channelFields[ch]
		if !ok {
			return &FieldError{"content." + ch, "unknown channel (in_app, push, email, sms)"}
		}
		fields := fieldsOf(c)
		nonEmpty := 0
		for _, name := range contentFields {
			text := fields[name]
			if text == "" {
				continue
			}
			nonEmpty++
			field := "content." + ch + "." + name
			if !contains(allowed, name) {
				return &FieldError{field, "not a field of the " + ch + " channel (" + strings.Join(allowed, ", ") + ")"}
			}
			refs, err := analyse(t.contentLocale(), ch, name, text)
			if err != nil {
				return &FieldError{field, err.Error()}
			}
			used = append(used, refs...)
		}
		if nonEmpty == 0 {
			return &FieldError{"content." + ch, "is empty"}
		}
	}
	for _, loc := range sorted(t.Locales) {
		for _, ch := range sorted(t.Locales[loc]) {
			if _, ok := t.Content[ch]; !ok {
				return &FieldError{"locales." + loc + "." + ch, "the default content has no " + ch + " channel"}
			}
			fields := fieldsOf(t.Locales[loc][ch])
			for _, name := range contentFields {
				text := fields[name]
				if text == "" {
					continue
				}
				field := "locales." + loc + "." + ch + "." + name
				refs, err := analyse(loc, ch, name, text)
				if err != nil {
					return &FieldError{field, err.Error()}
				}
				for _, r := range refs {
					if !r.within(used) {
						return &FieldError{field, fmt.Sprintf("uses the variable %s, which the default content does not use: "+
							"a send whose data fills the default content would fail for this locale", r)}
					}
				}
			}
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var missingKeyRE = regexp.MustCompile(`map has no entry for key "([^"]+)"`)

// Render fills the template's default content from data. A missing variable is a FieldError
// naming data.<variable>; any other failure (say, indexing a string) is a plain error.
func Render(t Template, data map[string]any) (map[string]notify.Content, error) {
	return renderContent(t.ID, t.contentLocale(), t.Content, data)
}

// MaxRenderedBytes bounds a send's rendered text, the default content and every variant
// together: the event carries them all, and must fit in a Kafka record.
const MaxRenderedBytes = 512 << 10

// RenderedSize is the bytes of rendered text in content.
func RenderedSize(content map[string]notify.Content) int {
	n := 0
	for _, c := range content {
		n += len(c.Title) + len(c.Body) + len(c.Link) + len(c.Subject) + len(c.Text) + len(c.HTML)
	}
	return n
}

// RenderLocales fills every locale variant of the template from data, by locale; nil when the
// template has none. Errors are Render's, naming the locale.
func RenderLocales(t Template, data map[string]any) (map[string]map[string]notify.Content, error) {
	if len(t.Locales) == 0 {
		return nil, nil
	}
	out := make(map[string]map[string]notify.Content, len(t.Locales))
	for _, loc := range sorted(t.Locales) {
		c, err := renderContent(t.ID+" ("+loc+")", loc, t.Locales[loc], data)
		if err != nil {
			return nil, err
		}
		out[loc] = c
	}
	return out, nil
}

func renderContent(id, locale string, content map[string]notify.Content, data map[string]any) (map[string]notify.Content, error) {
	out := make(map[string]notify.Content, len(content))
	for ch, c := range content {
		var r notify.Content
		for name, text := range fieldsOf(c) {
			if text == "" {
				continue
			}
			s, err := renderOne(locale, ch, name, text, data)
			if err != nil {
				if m := missingKeyRE.FindStringSubmatch(err.Error()); m != nil {
					return nil, &FieldError{"data." + m[1], fmt.Sprintf("template %s needs variable %q", id, m[1])}
				}
				return nil, fmt.Errorf("rendering %s.%s of template %s: %w", ch, name, id, err)
			}
			setField(&r, name, s)
		}
		out[ch] = r
	}
	return out, nil
}

func renderOne(locale, ch, name, text string, data map[string]any) (string, error) {
	tpl, err := parsed(locale, ch == notify.Email && name == "html", text)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	err = tpl.Execute(&buf, data)
	return buf.String(), err
}

// executor is a parsed text/template or html/template.
type executor interface {
	Execute(w io.Writer, data any) error
}

type parseKey struct {
	locale string
	html   bool
	text   string
}

// parsedCache keeps parsed fields, so a send does not parse its template's fields (in every
// locale) again: parsing is most of rendering's cost. It is emptied when it reaches
// maxParsed entries.
var (
	parsedMu    sync.Mutex
	parsedCache = map[parseKey]executor{}
)

const maxParsed = 10000

// parsed returns the field parsed as it is rendered (html/template for email html), with the
// functions of locale.
func parsed(locale string, html bool, text string) (executor, error) {
	key := parseKey{locale, html, text}
	parsedMu.Lock()
	tpl, ok := parsedCache[key]
	parsedMu.Unlock()
	if ok {
		return tpl, nil
	}
	var err error
	if html {
		tpl, err = htmltemplate.New("field").Option("missingkey=error").Funcs(funcsFor(locale)).Parse(text)
	} else {
		tpl, err = texttemplate.New("field").Option("missingkey=error").Funcs(funcsFor(locale)).Parse(text)
	}
	if err != nil {
		return nil, err
	}
	parsedMu.Lock()
	if len(parsedCache) >= maxParsed {
		clear(parsedCache)
	}
	parsedCache[key] = tpl
	parsedMu.Unlock()
	return tpl, nil
}

func setField(c *notify.Content, name, v string) {
	switch name {
	case "title":
		c.Title = v
	case "body":
		c.Body = v
	case "link":
		c.Link = v
	case "subject":
		c.Subject = v
	case "text":
		c.Text = v
	case "html":
		c.HTML = v
	}
}

// Store keeps templates in the region's Postgres database, scoped by app.
type Store struct{ db *pgxpool.Pool }

// NewStore returns a Store.
func NewStore(db *pgxpool.Pool) *Store { return &Store{db: db} }

// Put creates or replaces a template; the version increases on each replace.
func (s *Store) Put(ctx context.Context, appID string, t Template) (Template, error) {
	content, err := json.Marshal(t.Content)
	if err != nil {
		return Template{}, fmt.Errorf("encoding template content: %w", err)
	}
	locales := []byte("{}")
	if len(t.Locales) > 0 {
		if locales, err = json.Marshal(t.Locales); err != nil {
			return Template{}, fmt.Errorf("encoding template locales: %w", err)
		}
	}
	err = s.db.QueryRow(ctx, `INSERT INTO templates (app_id, template_id, type, category, content, locales, default_locale)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (app_id, template_id) DO UPDATE SET type = EXCLUDED.type, category = EXCLUDED.category,
			content = EXCLUDED.content, locales = EXCLUDED.locales, default_locale = EXCLUDED.default_locale,
			version = templates.version + 1, updated_at = now()
		RETURNING version, updated_at`, appID, t.ID, t.Type, t.Category, content, locales, t.DefaultLocale).Scan(&t.Version, &t.UpdatedAt)
	if err != nil {
		return Template{}, fmt.Errorf("storing template: %w", err)
	}
	return t, nil
}

// Get returns one template of the app.
func (s *Store) Get(ctx context.Context, appID, id string) (Template, error) {
	t := Template{ID: id}
	var content, locales []byte
	err := s.db.QueryRow(ctx, `SELECT type, category, content, locales, default_locale, version, updated_at FROM templates
		WHERE app_id = $1 AND template_id = $2`, appID, id).Scan(&t.Type, &t.Category, &content, &locales, &t.DefaultLocale, &t.Version, &t.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Template{}, ErrNotFound
	}
	if err != nil {
		return Template{}, fmt.Errorf("reading template: %w", err)
	}
	if err := json.Unmarshal(content, &t.Content); err != nil {
		return Template{}, fmt.Errorf("decoding template %s: %w", id, err)
	}
	if err := json.Unmarshal(locales, &t.Locales); err != nil {
		return Template{}, fmt.Errorf("decoding the locales of template %s: %w", id, err)
	}
	if len(t.Locales) == 0 {
		t.Locales = nil
	}
	return t, nil
}

// Delete removes a template.
func (s *Store) Delete(ctx context.Context, appID, id string) error {
	tag, err := s.db.Exec(ctx, `DELETE FROM templates WHERE app_id = $1 AND template_id = $2`, appID, id)
	if err != nil {
		return fmt.Errorf("deleting template: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}
