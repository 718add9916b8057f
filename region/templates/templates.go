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
	"regexp"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/region/notify"
)

// ErrNotFound means the app has no template with that id.
var ErrNotFound = errors.New("template not found")

// Template is a stored template. Content maps a channel to the text of its fields, each a Go
// template ({{.name}}) over the event's data.
type Template struct {
	ID        string                    `json:"id"`
	Type      string                    `json:"type"`
	Category  string                    `json:"category"`
	Content   map[string]notify.Content `json:"content"`
	Version   int                       `json:"version"`
	UpdatedAt time.Time                 `json:"updated_at"`
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

func fieldsOf(c notify.Content) map[string]string {
	return map[string]string{"title": c.Title, "body": c.Body, "link": c.Link, "subject": c.Subject, "text": c.Text, "html": c.HTML}
}

// Check parses every field of the template, so a broken template is refused when stored.
func Check(t Template) error {
	if len(t.Content) == 0 {
		return &FieldError{"content", "must have content for at least one channel"}
	}
	for ch, c := range t.Content {
		allowed, ok := channelFields[ch]
		if !ok {
			return &FieldError{"content." + ch, "unknown channel (in_app, push, email, sms)"}
		}
		fields := fieldsOf(c)
		nonEmpty := 0
		for name, text := range fields {
			if text == "" {
				continue
			}
			nonEmpty++
			if !contains(allowed, name) {
				return &FieldError{"content." + ch + "." + name, "not a field of the " + ch + " channel (" + strings.Join(allowed, ", ") + ")"}
			}
			if err := parse(ch, name, text); err != nil {
				return &FieldError{"content." + ch + "." + name, err.Error()}
			}
		}
		if nonEmpty == 0 {
			return &FieldError{"content." + ch, "is empty"}
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

func parse(ch, name, text string) error {
	id := ch + "." + name
	if ch == notify.Email && name == "html" {
		_, err := htmltemplate.New(id).Option("missingkey=error").Parse(text)
		return err
	}
	_, err := texttemplate.New(id).Option("missingkey=error").Parse(text)
	return err
}

var missingKeyRE = regexp.MustCompile(`map has no entry for key "([^"]+)"`)

// Render fills the template's content from data. A missing variable is a FieldError naming
// data.<variable>; any other failure (say, indexing a string) is a plain error.
func Render(t Template, data map[string]any) (map[string]notify.Content, error) {
	out := make(map[string]notify.Content, len(t.Content))
	for ch, c := range t.Content {
		var r notify.Content
		for name, text := range fieldsOf(c) {
			if text == "" {
				continue
			}
			s, err := renderOne(ch, name, text, data)
			if err != nil {
				if m := missingKeyRE.FindStringSubmatch(err.Error()); m != nil {
					return nil, &FieldError{"data." + m[1], fmt.Sprintf("template %s needs variable %q", t.ID, m[1])}
				}
				return nil, fmt.Errorf("rendering %s.%s of template %s: %w", ch, name, t.ID, err)
			}
			setField(&r, name, s)
		}
		out[ch] = r
	}
	return out, nil
}

func renderOne(ch, name, text string, data map[string]any) (string, error) {
	var buf bytes.Buffer
	id := ch + "." + name
	if ch == notify.Email && name == "html" {
		tpl, err := htmltemplate.New(id).Option("missingkey=error").Parse(text)
		if err != nil {
			return "", err
		}
		err = tpl.Execute(&buf, data)
		return buf.String(), err
	}
	tpl, err := texttemplate.New(id).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", err
	}
	err = tpl.Execute(&buf, data)
	return buf.String(), err
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
		return Template{}, err
	}
	err = s.db.QueryRow(ctx, `INSERT INTO templates (app_id, template_id, type, category, content)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (app_id, template_id) DO UPDATE SET type = EXCLUDED.type, category = EXCLUDED.category,
			content = EXCLUDED.content, version = templates.version + 1, updated_at = now()
		RETURNING version, updated_at`, appID, t.ID, t.Type, t.Category, content).Scan(&t.Version, &t.UpdatedAt)
	if err != nil {
		return Template{}, fmt.Errorf("storing template: %w", err)
	}
	return t, nil
}

// Get returns one template of the app.
func (s *Store) Get(ctx context.Context, appID, id string) (Template, error) {
	t := Template{ID: id}
	var content []byte
	err := s.db.QueryRow(ctx, `SELECT type, category, content, version, updated_at FROM templates
		WHERE app_id = $1 AND template_id = $2`, appID, id).Scan(&t.Type, &t.Category, &content, &t.Version, &t.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Template{}, ErrNotFound
	}
	if err != nil {
		return Template{}, fmt.Errorf("reading template: %w", err)
	}
	if err := json.Unmarshal(content, &t.Content); err != nil {
		return Template{}, fmt.Errorf("decoding template %s: %w", id, err)
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
