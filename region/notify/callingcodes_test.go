package notify

import (
	"regexp"
	"strings"
	"testing"
)

func TestPhoneCountryTakesTheLongestCallingCodePrefix(t *testing.T) {
	for _, tc := range []struct {
		name, phone, want string
	}{
		{"Germany", "+4915112345678", "DE"},
		{"United Kingdom", "+447700900123", "GB"},
		{"Ireland, not a guess from +3", "+353871234567", "IE"},
		{"Portugal", "+351912345678", "PT"},
		{"Finland", "+358401234567", "FI"},
		{"Aland inside +358", "+3581812345", "AX"},
		{"Italy", "+393123456789", "IT"},
		{"Rome is Italy", "+390612345678", "IT"},
		{"the Vatican inside +39 06", "+39066981234", "VA"},
		{"Guernsey inside +44", "+441481123456", "GG"},
		{"Jersey inside +44", "+441534123456", "JE"},
		{"Isle of Man inside +44", "+441624123456", "IM"},
		{"Svalbard inside +47", "+4779021234", "SJ"},
		{"Norway", "+4741234567", "NO"},
		{"Kosovo", "+38344123456", "XK"},
		{"Russia", "+79161234567", "RU"},
		{"Kazakhstan inside +7 (7)", "+77011234567", "KZ"},
		{"Kazakhstan inside +7 (6)", "+76221234567", "KZ"},
		{"Egypt", "+201001234567", "EG"},
		{"South Africa", "+27821234567", "ZA"},
		{"Nigeria", "+2348031234567", "NG"},
		{"Reunion", "+262692123456", "RE"},
		{"Mayotte inside +262", "+262639123456", "YT"},
		{"Saint Helena", "+29022123", "SH"},
		{"Greenland", "+299123456", "GL"},
		{"Brazil", "+5511912345678", "BR"},
		{"Curacao", "+59995123456", "CW"},
		{"Bonaire inside +599", "+5997123456", "BQ"},
		{"Falklands", "+50012345", "FK"},
		{"Australia", "+61412345678", "AU"},
		{"Tuvalu", "+68812345", "TV"},
		{"Japan", "+819012345678", "JP"},
		{"Hong Kong", "+85291234567", "HK"},
		{"Taiwan", "+886912345678", "TW"},
		{"India", "+919812345678", "IN"},
		{"Uzbekistan", "+998901234567", "UZ"},
		{"Palestine", "+970591234567", "PS"},
		{"US", "+12125551234", "US"},
		{"US toll-free area code", "+18005551234", "US"},
		{"Canada, Toronto", "+14165551234", "CA"},
		{"Canada, Vancouver", "+16045551234", "CA"},
		{"Jamaica", "+18765551234", "JM"},
		{"Puerto Rico", "+17875551234", "PR"},
		{"Dominican Republic", "+18295551234", "DO"},
		{"Guam", "+16715551234", "GU"},
		{"international freephone", "+80012345678", ""},
		{"Inmarsat", "+870773112345", ""},
		{"a global network", "+882161234567", ""},
		{"no plus", "4915112345678", ""},
		{"spaces", "+49 151 12345678", ""},
		{"only a plus", "+", ""},
		{"empty", "", ""},
		{"no such code", "+0123456", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PhoneCountry(tc.phone); got != tc.want {
				t.Errorf("PhoneCountry(%q) = %q, want %q", tc.phone, got, tc.want)
			}
		})
	}
}

// Every zone's codes are in the table: each 1- to 3-digit code a number can start with either
// has an entry, or is one of the codes ITU has not assigned (spare), so no assigned code is
// missed by a typo. The spare (and reserved) codes are those of ITU-T's list of assigned
// country codes (Annex to the ITU Operational Bulletin); a 2-digit entry spares all ten.
func TestCallingCodesCoverEveryAssignedCountryCode(t *testing.T) {
	spare := map[string]bool{}
	for _, c := range strings.Fields(`
		210 214 215 217 219 259 28 292 293 294 295 296
		384 388 422 424 425 426 427 428 429
		671 684 693 694 695 696 697 698 699
		801 802 803 804 805 806 807 809 830 831 832 833 834 835 836 837 838 839
		851 854 857 858 859 871 872 873 874 875 876 877 879 884 885 887 889
		89 969 978 990 997 999`) {
		spare[c] = true
	}
	// A code is covered when it, or a shorter code it starts with, has an entry.
	covered := func(code string) bool {
		for n := len(code); n > 0; n-- {
			if _, ok := callingCodes[code[:n]]; ok {
				return true
			}
		}
		return false
	}
	var missing []string
	for d := '1'; d <= '9'; d++ {
		for _, code := range allCodesUnder(string(d)) {
			if spare[code] || spare[code[:min(2, len(code))]] || covered(code) {
				continue
			}
			missing = append(missing, code)
		}
	}
	if len(missing) > 0 {
		t.Errorf("no entry for %v: add them to callingCodes, or to the spare list if ITU has not assigned them", missing)
	}
	iso := regexp.MustCompile(`^[A-Z]{2}$`)
	digits := regexp.MustCompile(`^[1-9][0-9]*$`)
	for prefix, cc := range callingCodes {
		if !digits.MatchString(prefix) {
			t.Errorf("prefix %q is not digits", prefix)
		}
		if cc != "" && !iso.MatchString(cc) {
			t.Errorf("%s: %q is not an ISO 3166-1 alpha-2 code (central refuses any other country)", prefix, cc)
		}
	}
}

// allCodesUnder lists every 3-digit code of zone d ("200" to "299" for "2"); a country with a
// 1- or 2-digit code covers its 3-digit ones.
func allCodesUnder(d string) []string {
	var out []string
	for i := '0'; i <= '9'; i++ {
		two := d + string(i)
		for j := '0'; j <= '9'; j++ {
			out = append(out, two+string(j))
		}
	}
	return out
}
