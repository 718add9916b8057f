package notify

// callingCodes maps every ITU-T E.164 country calling code, by its digits, to the ISO 3166-1
// alpha-2 code of the country it prices an SMS for. A few codes are shared by several
// countries and are split by the national prefixes that tell them apart (longest prefix wins):
//
//   - +1 (NANP): Canada's and the Caribbean's area codes are listed; any other +1 number,
//     toll-free and unassigned area codes included, counts as US (the documented default).
//   - +7: Kazakhstan's +76 and +77; the rest is Russia.
//   - +262 Réunion and Mayotte, +358 Finland and Åland, +39 Italy and the Vatican,
//     +44 the UK and the crown dependencies' geographic numbers, +47 Norway and Svalbard,
//     +599 Curaçao and the Caribbean Netherlands.
//
// Codes of no country (international freephone, satellite and global networks, +800, +870,
// +881-+883, ...) map to "": such numbers are priced at the default. Kosovo (+383) is "XK",
// the code in common use outside ISO 3166-1.
var callingCodes = map[string]string{
	// Zone 1: the North American Numbering Plan, +1 and a 3-digit area code.
	"1": "US",
	// Canada.
	"1204": "CA", "1226": "CA", "1236": "CA", "1249": "CA", "1250": "CA", "1257": "CA", "1263": "CA",
	"1289": "CA", "1306": "CA", "1343": "CA", "1354": "CA", "1365": "CA", "1367": "CA", "1368": "CA",
	"1382": "CA", "1403": "CA", "1416": "CA", "1418": "CA", "1428": "CA", "1431": "CA", "1437": "CA",
	"1438": "CA", "1450": "CA", "1468": "CA", "1474": "CA", "1506": "CA", "1514": "CA", "1519": "CA",
	"1548": "CA", "1579": "CA", "1581": "CA", "1584": "CA", "1587": "CA", "1604": "CA", "1613": "CA",
	"1639": "CA", "1647": "CA", "1672": "CA", "1683": "CA", "1705": "CA", "1709": "CA", "1742": "CA",
	"1753": "CA", "1778": "CA", "1780": "CA", "1782": "CA", "1807": "CA", "1819": "CA", "1825": "CA",
	"1867": "CA", "1873": "CA", "1879": "CA", "1902": "CA", "1905": "CA", "1942": "CA",
	// The Caribbean and the Pacific territories of the NANP.
	"1242": "BS", "1246": "BB", "1264": "AI", "1268": "AG", "1284": "VG", "1340": "VI", "1345": "KY",
	"1441": "BM", "1473": "GD", "1649": "TC", "1658": "JM", "1664": "MS", "1670": "MP", "1671": "GU",
	"1684": "AS", "1721": "SX", "1758": "LC", "1767": "DM", "1784": "VC", "1787": "PR", "1809": "DO",
	"1829": "DO", "1849": "DO", "1868": "TT", "1869": "KN", "1876": "JM", "1939": "PR",

	// Zone 2: Africa, and a few islands.
	"20": "EG", "211": "SS", "212": "MA", "213": "DZ", "216": "TN", "218": "LY", "220": "GM",
	"221": "SN", "222": "MR", "223": "ML", "224": "GN", "225": "CI", "226": "BF", "227": "NE",
	"228": "TG", "229": "BJ", "230": "MU", "231": "LR", "232": "SL", "233": "GH", "234": "NG",
	"235": "TD", "236": "CF", "237": "CM", "238": "CV", "239": "ST", "240": "GQ", "241": "GA",
	"242": "CG", "243": "CD", "244": "AO", "245": "GW", "246": "IO", "247": "SH", "248": "SC",
	"249": "SD", "250": "RW", "251": "ET", "252": "SO", "253": "DJ", "254": "KE", "255": "TZ",
	"256": "UG", "257": "BI", "258": "MZ", "260": "ZM", "261": "MG", "262": "RE", "262269": "YT",
	"262639": "YT", "263": "ZW", "264": "NA", "265": "MW", "266": "LS", "267": "BW", "268": "SZ",
	"269": "KM", "27": "ZA", "290": "SH", "291": "ER", "297": "AW", "298": "FO", "299": "GL",

	// Zones 3 and 4: Europe.
	"30": "GR", "31": "NL", "32": "BE", "33": "FR", "34": "ES", "350": "GI", "351": "PT",
	"352": "LU", "353": "IE", "354": "IS", "355": "AL", "356": "MT", "357": "CY", "358": "FI",
	"35818": "AX", "359": "BG", "36": "HU", "370": "LT", "371": "LV", "372": "EE", "373": "MD",
	"374": "AM", "375": "BY", "376": "AD", "377": "MC", "378": "SM", "379": "VA", "380": "UA",
	"381": "RS", "382": "ME", "383": "XK", "385": "HR", "386": "SI", "387": "BA", "389": "MK",
	"39": "IT", "3906698": "VA",
	"40": "RO", "41": "CH", "420": "CZ", "421": "SK", "423": "LI", "43": "AT", "44": "GB",
	"441481": "GG", "441534": "JE", "441624": "IM", "45": "DK", "46": "SE", "47": "NO",
	"4779": "SJ", "48": "PL", "49": "DE",

	// Zone 5: Central and South America.
	"500": "FK", "501": "BZ", "502": "GT", "503": "SV", "504": "HN", "505": "NI", "506": "CR",
	"507": "PA", "508": "PM", "509": "HT", "51": "PE", "52": "MX", "53": "CU", "54": "AR",
	"55": "BR", "56": "CL", "57": "CO", "58": "VE", "590": "GP", "591": "BO", "592": "GY",
	"593": "EC", "594": "GF", "595": "PY", "596": "MQ", "597": "SR", "598": "UY", "599": "CW",
	"5993": "BQ", "5994": "BQ", "5997": "BQ",

	// Zone 6: South-East Asia and Oceania.
	"60": "MY", "61": "AU", "62": "ID", "63": "PH", "64": "NZ", "65": "SG", "66": "TH",
	"670": "TL", "672": "NF", "673": "BN", "674": "NR", "675": "PG", "676": "TO", "677": "SB",
	"678": "VU", "679": "FJ", "680": "PW", "681": "WF", "682": "CK", "683": "NU", "685": "WS",
	"686": "KI", "687": "NC", "688": "TV", "689": "PF", "690": "TK", "691": "FM", "692": "MH",

	// Zone 7: Russia and Kazakhstan.
	"7": "RU", "76": "KZ", "77": "KZ",

	// Zone 8: East Asia, and international services.
	"800": "", "808": "", "81": "JP", "82": "KR", "84": "VN", "850": "KP", "852": "HK",
	"853": "MO", "855": "KH", "856": "LA", "86": "CN", "870": "", "878": "", "880": "BD",
	"881": "", "882": "", "883": "", "886": "TW", "888": "",

	// Zone 9: West, Central and South Asia, and the Middle East.
	"90": "TR", "91": "IN", "92": "PK", "93": "AF", "94": "LK", "95": "MM", "960": "MV",
	"961": "LB", "962": "JO", "963": "SY", "964": "IQ", "965": "KW", "966": "SA", "967": "YE",
	"968": "OM", "970": "PS", "971": "AE", "972": "IL", "973": "BH", "974": "QA", "975": "BT",
	"976": "MN", "977": "NP", "979": "", "98": "IR", "991": "", "992": "TJ", "993": "TM",
	"994": "AZ", "995": "GE", "996": "KG", "998": "UZ",
}

// longestCallingCode is the length of the longest key of callingCodes.
var longestCallingCode = func() int {
	n := 0
	for p := range callingCodes {
		n = max(n, len(p))
	}
	return n
}()

// PhoneCountry returns the ISO 3166-1 alpha-2 code of an E.164 number's country ("+49151...":
// "DE"), by the longest calling-code prefix it starts with. It returns "" for a number that is
// not E.164 or whose code is of no country (international freephone, satellite networks). A +1
// number of an area code outside callingCodes' Canadian and Caribbean ones counts as US.
func PhoneCountry(phone string) string {
	digits, ok := cutPlus(phone)
	if !ok {
		return ""
	}
	for n := min(len(digits), longestCallingCode); n > 0; n-- {
		if cc, ok := callingCodes[digits[:n]]; ok {
			return cc
		}
	}
	return ""
}

// cutPlus returns the digits of an E.164 number ("+" and digits only; the region API stores
// no other form), or false for anything else.
func cutPlus(phone string) (string, bool) {
	if len(phone) < 2 || phone[0] != '+' {
		return "", false
	}
	for _, r := range phone[1:] {
		if r < '0' || r > '9' {
			return "", false
		}
	}
	return phone[1:], true
}
