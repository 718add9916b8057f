package fanout

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/profiles"
)

func TestEachRecipientGetsTheVariantOfTheirLocaleOnEveryChannel(t *testing.T) {
	w := newWorld()
	device := []notify.Device{{DeviceID: "d", Platform: "ios", Token: "t"}}
	for user, locale := range map[string]string{"at": "de-AT", "ch": "de-CH", "fr": "fr", "none": "", "bad": "not a locale!", "lower": "de-at"} {
		w.profiles[user] = &profiles.Profile{Locale: locale, Email: user + "@x", Phone: "+4915112345678", Devices: device}
	}
	content := func(s string) map[string]notify.Content {
		return map[string]notify.Content{
			notify.InApp: {Title: s, Body: s}, notify.Push: {Title: s, Body: s},
			notify.Email: {Subject: s, Text: s}, notify.SMS: {Text: s},
		}
	}
	e := event(notify.Transactional, "at", "ch", "fr", "none", "bad", "lower")
	e.Content = content("Hello")
	e.Localized = map[string]map[string]notify.Content{"de": content("Hallo"), "de-AT": content("Servus")}
	if err := newFanout(w).Handle(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"at": "Servus", "lower": "Servus", "ch": "Hallo", "fr": "Hello", "none": "Hello", "bad": "Hello"}
	got := map[string]map[string]string{} // user -> channel -> text
	seen := func(user, ch, text string) {
		if got[user] == nil {
			got[user] = map[string]string{}
		}
		got[user][ch] = text
	}
	for _, it := range w.inbox {
		seen(it.UserID, notify.InApp, it.Title)
	}
	for _, m := range w.sent {
		var task notify.Task
		if err := json.Unmarshal(m.Value, &task); err != nil {
			t.Fatal(err)
		}
		text := task.Content.Title + task.Content.Subject
		if task.Channel == notify.SMS {
			text = task.Content.Text
		}
		seen(task.UserID, task.Channel, text)
	}
	for user, text := range want {
		for _, ch := range notify.Channels {
			if got[user][ch] != text {
				t.Errorf("%s (%q) %s: got %q, want %q", user, w.profiles[user].Locale, ch, got[user][ch], text)
			}
		}
	}
}

func TestLocalesAreReadOnlyForEventsWithVariants(t *testing.T) {
	w := newWorld()
	w.profiles["at"] = &profiles.Profile{Locale: "de-AT"}
	loader := &needs{ProfileLoader: w}
	f := newFanout(w)
	f.profiles = loader
	e := event(notify.Social, "at")
	e.Channels = []string{notify.InApp}
	if err := f.Handle(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	e.ID = "n2"
	e.Localized = map[string]map[string]notify.Content{"de": {notify.InApp: {Title: "Hallo"}}}
	if err := f.Handle(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if len(loader.got) != 2 || loader.got[0].Locale || !loader.got[1].Locale {
		t.Fatalf("needs: %+v (want no locale, then the locale)", loader.got)
	}
	if len(w.inbox) != 2 || w.inbox[0].Title != "t" || w.inbox[1].Title != "Hallo" {
		t.Fatalf("inbox: %+v", w.inbox)
	}
}

// needs records what each Load asked for.
type needs struct {
	ProfileLoader
	got []profiles.Need
}

func (n *needs) Load(ctx context.Context, app string, users []string, need profiles.Need) (map[string]*profiles.Profile, error) {
	n.got = append(n.got, need)
	return n.ProfileLoader.Load(ctx, app, users, need)
}
