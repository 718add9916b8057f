package notify

import "golang.org/x/text/language"

// ContentFor returns the content for a recipient whose stored locale is locale, channel by
// channel: the variant of the first of the tag, canonicalised, and its CLDR parents (de-AT, de;
// zh-TW, zh-Hant; es-AR, es-419, es) that has the channel, else the default content. An empty
// or invalid locale gets the default content.
func (e Event) ContentFor(locale string) map[string]Content {
	if len(e.Localized) == 0 || locale == "" {
		return e.Content
	}
	tag, err := language.Parse(locale)
	if err != nil {
		return e.Content
	}
	var chain []map[string]Content
	for t := tag; !t.IsRoot(); t = t.Parent() {
		if v, ok := e.Localized[t.String()]; ok {
			chain = append(chain, v)
		}
	}
	if len(chain) == 0 {
		return e.Content
	}
	out := make(map[string]Content, len(e.Content))
	for ch, c := range e.Content {
		out[ch] = c
		for _, v := range chain {
			if vc, ok := v[ch]; ok {
				out[ch] = vc
				break
			}
		}
	}
	return out
}
