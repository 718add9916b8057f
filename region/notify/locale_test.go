package notify

import (
	"encoding/json"
	"testing"
)

func TestContentForFollowsTheLocaleFallbackChain(t *testing.T) {
	variant := func(s string) map[string]Content { return map[string]Content{Push: {Body: s}} }
	e := Event{Content: variant("default"), Localized: map[string]map[string]Content{
		"de": variant("de"), "de-AT": variant("de-AT"), "pt-PT": variant("pt-PT"), "zh-Hant": variant("zh-Hant"),
		"es-419": variant("es-419"), "he": variant("he"), "sr-Latn": variant("sr-Latn"),
	}}
	for _, tt := range []struct{ locale, want string }{
		{"de-AT", "de-AT"},
		{"de-CH", "de"},
		{"de", "de"},
		{"de_AT", "de-AT"},           // stored before validation was strict: canonicalised
		{"DE-at", "de-AT"},           // case
		{"de-AT-u-nu-latn", "de-AT"}, // extensions fall away
		{"de-DE-1901", "de"},         // variant, then region
		{"fr", ""},                   // no variant: the default
		{"", ""},                     // no locale
		{"not a locale!", ""},        // invalid
		{"xx", ""},                   // unknown language
		{"pt-BR", ""},                // CLDR: pt-BR's parent is pt, not pt-PT
		{"pt-AO", "pt-PT"},           // CLDR: pt-AO's parent is pt-PT
		{"zh-TW", "zh-Hant"},         // CLDR: zh-TW's parent is zh-Hant
		{"zh-Hant-TW", "zh-Hant"},    //
		{"zh-CN", ""},                // zh-CN -> zh: no zh variant
		{"es-AR", "es-419"},          // CLDR: es-AR -> es-419 -> es
		{"es-ES", ""},                //
		{"iw", "he"},                 // deprecated code canonicalised
		{"sr-Latn-RS", "sr-Latn"},    //
		{"sr", ""},                   // Cyrillic Serbian gets no Latin text
	} {
		got := e.ContentFor(tt.locale)
		want := "default"
		if tt.want != "" {
			want = tt.want
		}
		if got[Push].Body != want {
			t.Errorf("locale %q: got %q, want %q", tt.locale, got[Push].Body, want)
		}
	}
	if got := (Event{Content: variant("default")}).ContentFor("de"); got[Push].Body != "default" {
		t.Errorf("an event without variants: %v", got)
	}
}

func TestEventsWithoutVariantsDecodeAsBefore(t *testing.T) {
	var e Event
	if err := json.Unmarshal([]byte(`{"id":"n1","app_id":"a","tier":"social","category":"c","content":{"push":{"body":"hi"}},"accepted_at":"2026-12-07T12:00:00Z"}`), &e); err != nil {
		t.Fatal(err)
	}
	if e.Localized != nil {
		t.Fatalf("an old record decoded with variants: %v", e.Localized)
	}
	if got := e.ContentFor("de"); got[Push].Body != "hi" {
		t.Fatalf("old record: %v", got)
	}
	raw, _ := json.Marshal(Event{ID: "n1", Content: map[string]Content{Push: {Body: "hi"}}})
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	if _, ok := m["localized"]; ok {
		t.Fatalf("an event without variants writes localized: %s", raw)
	}
}

func TestContentForTakesAChannelAVariantLacksFromTheNextInTheChain(t *testing.T) {
	e := Event{
		Content: map[string]Content{Push: {Body: "Hello"}, Email: {Subject: "Hello"}, SMS: {Text: "Hello"}},
		Localized: map[string]map[string]Content{
			"de":    {Push: {Body: "Hallo"}, Email: {Subject: "Hallo"}},
			"de-AT": {Push: {Body: "Servus"}},
		},
	}
	got := e.ContentFor("de-AT")
	if got[Push].Body != "Servus" || got[Email].Subject != "Hallo" || got[SMS].Text != "Hello" {
		t.Fatalf("de-AT: %+v", got)
	}
	if e.Content[Push].Body != "Hello" {
		t.Fatal("choosing changed the event's default content")
	}
}
