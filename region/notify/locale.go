package notify

import "golang.org/x/text/language"

// ContentFor returns the content for a recipient whose stored locale is locale, and the
// variant's tag ("" for the default content): the first of the tag, canonicalised, and its
// CLDR parents (de-AT, de; zh-TW, zh-Hant; es-AR, es-419, es) that the event has a variant for,
// else the default content. An empty or invalid locale gets the default content.
func (e Event) ContentFor(locale string) (map[string]Content, string) {
	if len(e.Localized) == 0 || locale == "" {
		return e.Content, ""
	}
	tag, err := language.Parse(locale)
	if err != nil {
		return e.Content, ""
	}
	for t := tag; !t.IsRoot(); t = t.Parent() {
		if c, ok := e.Localized[t.String()]; ok {
			return c, t.String()
		}
	}
	return e.Content, ""
}
