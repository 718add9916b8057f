//go:build integration

package gateway_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/herald-notify/herald/platform/testenv"
)

func TestTemplateLocalesReachEveryRegionAndAreCheckedAtTheGateway(t *testing.T) {
	w := newWorld(t)
	tpl := map[string]any{"type": "social", "category": "welcome",
		"content": map[string]any{"in_app": map[string]any{"title": "Hi {{.name}}", "body": `{{plural .n "one" "# gift" "other" "# gifts"}}`}},
		"locales": map[string]any{
			"de":    map[string]any{"in_app": map[string]any{"title": "Hallo {{.name}}", "body": `{{plural .n "one" "# Geschenk" "other" "# Geschenke"}}`}},
			"de-AT": map[string]any{"in_app": map[string]any{"title": "Servus {{.name}}", "body": `{{plural .n "one" "# Geschenk" "other" "# Geschenke"}}`}},
		}}
	w.must(http.StatusCreated, "PUT", "/v1/templates/welcome", tpl)
	for _, base := range []string{w.eu1.Base, w.eu2.Base, w.us1.Base} {
		got := regionTemplate(t, base, w.app, "/v1/templates/welcome")
		locales, _ := got["locales"].(map[string]any)
		at, _ := locales["de-AT"].(map[string]any)
		if at == nil || at["in_app"].(map[string]any)["title"] != "Servus {{.name}}" || locales["de"] == nil {
			t.Fatalf("template in %s: %v", base, got)
		}
	}
	// A key that is not canonical is refused by the gateway, which stores it nowhere.
	bad := map[string]any{"type": "social", "category": "welcome", "content": tpl["content"],
		"locales": map[string]any{"de_AT": tpl["locales"].(map[string]any)["de-AT"]}}
	code, out, _ := w.call(w.key, "PUT", "/v1/templates/bad", bad)
	if e, _ := out["error"].(map[string]any); code != http.StatusBadRequest || e["field"] != "locales.de_AT" {
		t.Fatalf("non-canonical locale: %d %v", code, out)
	}
	for _, base := range []string{w.eu1.Base, w.eu2.Base, w.us1.Base} {
		if code := regionGet(t, base, w.app, "/v1/templates/bad"); code != http.StatusNotFound {
			t.Fatalf("refused template in %s: %d", base, code)
		}
	}
}

func regionTemplate(t *testing.T, base, app, path string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest("GET", base+path, nil)
	req.Header.Set("X-Herald-App", app)
	req.Header.Set("Authorization", "Bearer region-secret")
	resp, err := testenv.RegionClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		t.Fatalf("GET %s%s: %d", base, path, resp.StatusCode)
	}
	return out
}
