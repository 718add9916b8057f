//go:build integration

package region_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/region/notify"
)

// commentTemplate has English default content, a German variant of in-app, push and email,
// and an Austrian one of in-app and push.
func commentTemplate() map[string]any {
	variant := func(greeting, comments, total string) map[string]any {
		return map[string]any{
			"in_app": map[string]string{"title": greeting + " {{.who}}", "body": comments},
			"push":   map[string]string{"title": greeting + " {{.who}}", "body": comments},
			"email":  map[string]string{"subject": greeting + " {{.who}}", "text": comments + " " + total},
		}
	}
	en := variant("Hello", `{{plural .count "one" "# comment" "other" "# comments"}}`, "({{number .total}} points)")
	return map[string]any{"type": "social", "category": "comment", "content": en, "locales": map[string]any{
		"de": variant("Hallo", `{{plural .count "one" "# Kommentar" "other" "# Kommentare"}}`, "({{number .total}} Punkte)"),
		// Austria differs in greeting and number format only: its email comes from de.
		"de-AT": map[string]any{
			"in_app": map[string]string{"title": "Servus {{.who}}", "body": `{{plural .count "one" "# Kommentar" "other" "# Kommentare"}}`},
			"push":   map[string]string{"title": "Servus {{.who}}", "body": `{{plural .count "one" "# Kommentar" "other" "# Kommentare"}} · {{number .total}}`},
		},
	}}
}

func TestEachRecipientGetsTheTemplateInTheirLocaleOnEveryChannel(t *testing.T) {
	r := startRegion(t)
	if code, b := r.call("PUT", "/v1/templates/comment", commentTemplate(), r.app); code != 201 {
		t.Fatalf("put: %d %v", code, b)
	}
	if code, b := r.call("GET", "/v1/templates/comment", nil, r.app); code != 200 || b["locales"].(map[string]any)["de-AT"] == nil {
		t.Fatalf("get: %d %v", code, b)
	}
	// A template whose default content is German: stored and read back with its rules.
	de := map[string]any{"type": "social", "category": "comment", "default_locale": "de",
		"content": map[string]any{"sms": map[string]string{"text": "{{number .total}}"}}}
	if code, b := r.call("PUT", "/v1/templates/german", de, r.app); code != 201 || b["default_locale"] != "de" {
		t.Fatalf("put german: %d %v", code, b)
	}
	if code, b := r.call("GET", "/v1/templates/german", nil, r.app); code != 200 || b["default_locale"] != "de" {
		t.Fatalf("get german: %d %v", code, b)
	}
	// Refused when saved, not when sent: a missing field of a variant, a variable the default
	// lacks, a plural without the locale's forms, a key that is not canonical.
	for _, tc := range []struct {
		name, code, field string
		edit              func(tpl map[string]any)
	}{
		{"missing variant field", "missing_field", "locales.de.push.body", func(tpl map[string]any) {
			tpl["locales"].(map[string]any)["de"].(map[string]any)["push"] = map[string]string{"title": "Hallo"}
		}},
		{"variable the default lacks", "invalid_template", "locales.de.push.body", func(tpl map[string]any) {
			tpl["locales"].(map[string]any)["de"].(map[string]any)["push"] = map[string]string{"title": "Hallo", "body": "{{.vorname}}"}
		}},
		{"plural missing Polish forms", "invalid_template", "locales.pl.push.body", func(tpl map[string]any) {
			tpl["locales"].(map[string]any)["pl"] = map[string]any{"push": map[string]string{"title": "Cześć", "body": `{{plural .count "one" "# komentarz" "other" "# komentarzy"}}`}}
		}},
		{"not canonical", "invalid_field", "locales.de_AT", func(tpl map[string]any) {
			tpl["locales"].(map[string]any)["de_AT"] = tpl["locales"].(map[string]any)["de-AT"]
		}},
	} {
		tpl := commentTemplate()
		tc.edit(tpl)
		code, b := r.call("PUT", "/v1/templates/comment", tpl, r.app)
		e, _ := b["error"].(map[string]any)
		if code != 400 || e["code"] != tc.code || e["field"] != tc.field {
			t.Errorf("%s: got %d %v, want 400 %s on %s", tc.name, code, b, tc.code, tc.field)
		}
	}

	users := map[string]string{"at": "de-AT", "ch": "de-CH", "fr": "fr", "none": "", "bad": ""}
	for user, locale := range users {
		body := map[string]any{"email": user + "@example.com"}
		if locale != "" {
			body["locale"] = locale
		}
		if code, b := r.call("PUT", "/v1/users/"+user, body, r.app); code/100 != 2 {
			t.Fatalf("put user %s: %d %v", user, code, b)
		}
		if code, b := r.call("POST", "/v1/users/"+user+"/devices", map[string]any{"platform": "ios",
			"token": fmt.Sprintf("%064x", time.Now().UnixNano()), "device_id": "phone-" + user}, r.app); code/100 != 2 {
			t.Fatalf("device of %s: %d %v", user, code, b)
		}
	}
	// A locale stored before the API checked it strictly, which no tag reads.
	if _, err := r.pg.Exec(t.Context(), `UPDATE users SET locale = 'zz_ZZ!' WHERE app_id = $1 AND user_id = 'bad'`, r.app); err != nil {
		t.Fatal(err)
	}
	recipients := []string{"at", "ch", "fr", "none", "bad"}
	send := func(count int) string {
		code, b := r.call("POST", "/v1/notifications", map[string]any{"type": "social", "template_id": "comment",
			"data": map[string]any{"who": "Bob", "count": count, "total": 1234.5}, "recipients": recipients}, r.app)
		if code != 202 {
			t.Fatalf("send: %d %v", code, b)
		}
		return b["notification_id"].(string)
	}
	one, three := send(1), send(3)
	// The in-app items are written as the push and email tasks go out (whose later states
	// are the simulated providers' business).
	for _, id := range []string{one, three} {
		for _, u := range recipients {
			r.waitState(id, u, notify.InApp, "delivered")
		}
	}
	// Every variable of every locale is needed at accept: a send without one is a 400 there.
	code, b := r.call("POST", "/v1/notifications", map[string]any{"type": "social", "template_id": "comment",
		"data": map[string]any{"who": "Bob", "count": 1}, "recipients": recipients}, r.app)
	if e, _ := b["error"].(map[string]any); code != 400 || e["code"] != "missing_variable" || e["field"] != "data.total" {
		t.Fatalf("send without total: %d %v", code, b)
	}
	type want struct{ title, body, email string }
	expect := map[string]map[string]want{
		one: {
			"at": {"Servus Bob", "1 Kommentar", "Hallo Bob|1 Kommentar (1.234,5 Punkte)"},
			"ch": {"Hallo Bob", "1 Kommentar", "1 Kommentar (1.234,5 Punkte)"},
			"fr": {"Hello Bob", "1 comment", "1 comment (1,234.5 points)"},
		},
		three: {
			"at": {"Servus Bob", "3 Kommentare", "Hallo Bob|3 Kommentare (1.234,5 Punkte)"},
			"ch": {"Hallo Bob", "3 Kommentare", "3 Kommentare (1.234,5 Punkte)"},
			"fr": {"Hello Bob", "3 comments", "3 comments (1,234.5 points)"},
		},
	}
	for _, id := range []string{one, three} {
		expect[id]["none"], expect[id]["bad"] = expect[id]["fr"], expect[id]["fr"]
	}
	pushes, emails := r.waitTasks(notify.Push, 10), r.waitTasks(notify.Email, 10)
	if len(pushes) != 10 || len(emails) != 10 {
		t.Fatalf("%d push and %d email tasks, want 10 each", len(pushes), len(emails))
	}
	for _, task := range pushes {
		w := expect[task.NotificationID][task.UserID]
		if task.UserID == "at" {
			w.body += " · 1\u00a0234,5" // de-AT's number format
		}
		if task.Content.Title != w.title || task.Content.Body != w.body {
			t.Errorf("push of %s to %s: %q / %q, want %q / %q", task.NotificationID, task.UserID, task.Content.Title, task.Content.Body, w.title, w.body)
		}
	}
	for _, task := range emails {
		w := expect[task.NotificationID][task.UserID]
		if subject, text, ok := strings.Cut(w.email, "|"); ok { // a channel the variant leaves to its parent
			w.title, w.email = subject, text
		}
		if task.Content.Subject != w.title || task.Content.Text != w.email {
			t.Errorf("email of %s to %s: %q / %q, want %q / %q", task.NotificationID, task.UserID, task.Content.Subject, task.Content.Text, w.title, w.email)
		}
	}
	bucket := time.Now().UTC().Year()*100 + int(time.Now().UTC().Month())
	for _, u := range recipients {
		iter := r.cass.Query(`SELECT notification_id, title, body FROM notification_log WHERE app_id = ? AND user_id = ? AND bucket = ?`, r.app, u, bucket).Iter()
		var id, title, body string
		n := 0
		for iter.Scan(&id, &title, &body) {
			n++
			if w := expect[id][u]; title != w.title || body != w.body {
				t.Errorf("in-app item %s of %s: %q / %q, want %q / %q", id, u, title, body, w.title, w.body)
			}
		}
		if err := iter.Close(); err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Errorf("%s has %d in-app items, want 2", u, n)
		}
	}
}

func TestAScheduledSendKeepsItsLocaleVariantsUntilItFires(t *testing.T) {
	r := startRegion(t)
	if code, b := r.call("PUT", "/v1/templates/comment", commentTemplate(), r.app); code != 201 {
		t.Fatalf("put: %d %v", code, b)
	}
	if code, b := r.call("PUT", "/v1/users/ch", map[string]any{"locale": "de-CH"}, r.app); code/100 != 2 {
		t.Fatalf("put user: %d %v", code, b)
	}
	at := time.Now().Add(3 * time.Second).UTC().Truncate(time.Second)
	code, b := r.call("POST", "/v1/notifications", map[string]any{"type": "social", "template_id": "comment",
		"data": map[string]any{"who": "Bob", "count": 2, "total": 1}, "recipients": []string{"ch"}, "channels": []string{"in_app"},
		"send_at": at.Format(time.RFC3339)}, r.app)
	if code != 202 {
		t.Fatalf("send: %d %v", code, b)
	}
	id := b["notification_id"].(string)
	r.waitState(id, "ch", notify.InApp, "delivered")
	if time.Now().Before(at) {
		t.Fatal("delivered before send_at")
	}
	var title, body string
	if err := r.cass.Query(`SELECT title, body FROM notification_log WHERE app_id = ? AND user_id = ? AND bucket = ? LIMIT 1`,
		r.app, "ch", time.Now().UTC().Year()*100+int(time.Now().UTC().Month())).Scan(&title, &body); err != nil {
		t.Fatal(err)
	}
	if title != "Hallo Bob" || body != "2 Kommentare" {
		t.Fatalf("in-app item after send_at: %q / %q", title, body)
	}
}
