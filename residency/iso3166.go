package residency

import (
	_ "embed"
	"fmt"
	"strings"
)

// iso3166 lists the assigned ISO 3166-1 alpha-2 codes, one per line with the country's name.
//
//go:embed iso3166.txt
var iso3166 string

// assigned[countrySlot(c)] is true for every assigned code c.
var assigned = parseISO3166(iso3166)

func parseISO3166(text string) (out [26 * 26]bool) {
	for n, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		code, _, _ := strings.Cut(line, "\t")
		if !isCountryShape(code) {
			panic(fmt.Sprintf("residency: iso3166.txt line %d: bad code %q", n+1, code))
		}
		out[countrySlot(code)] = true
	}
	return out
}

// IsAssignedCountry reports whether c is an assigned ISO 3166-1 alpha-2 code (upper case).
func IsAssignedCountry(c string) bool {
	return isCountryShape(c) && assigned[countrySlot(c)]
}
