package wire

import (
	"maps"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTwilioSignatureMatchesTwiliosDocumentedExample(t *testing.T) {
	// The example of twilio-php's request validation docs (docs/usage/validation.rst): auth
	// token 12345, this URL and these parameters sign to RSOYDt4T1cUTdK1PDd93/VVr8B8= (HMAC-SHA1
	// of the URL, then each parameter's name and value in name order).
	p := url.Values{"CallSid": {"CA1234567890ABCDE"}, "Caller": {"+14158675309"}, "Digits": {"1234"}, "From": {"+14158675309"}, "To": {"+18005551212"}}
	got := TwilioSignature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", p)
	if got != "RSOYDt4T1cUTdK1PDd93/VVr8B8=" {
		t.Fatalf("signature %s", got)
	}
}

func TestParseTwilioFormRefusesWhatNoProviderSends(t *testing.T) {
	ok := "MessageSid=SM1&MessageStatus=delivered&To=%2B15551234567"
	if p, e := ParseTwilioForm(ok); e != nil || p.Get("MessageStatus") != "delivered" {
		t.Fatalf("good form: %v %v", p, e)
	}
	many := make([]string, MaxCallbackParams+1)
	for i := range many {
		many[i] = "p" + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "=1"
	}
	for name, c := range map[string]struct{ body, code string }{
		"not a form":          {"MessageSid=%zz", CodeInvalidField},
		"a NUL in a value":    {"MessageSid=SM%001", CodeInvalidField},
		"a value not UTF-8":   {"MessageSid=%ff%fe", CodeInvalidField},
		"a huge value":        {"MessageSid=" + strings.Repeat("a", MaxCallbackValueBytes+1), CodeInvalidField},
		"too many parameters": {strings.Join(many, "&"), CodeInvalidField},
		"a value nine times":  {strings.Repeat("To=1&", 9), CodeInvalidField},
		"an empty name":       {"=1", CodeInvalidField},
		"over 16 KiB":         {strings.Repeat("a", MaxCallbackBytes+1), CodePayloadTooLarge},
	} {
		if _, e := ParseTwilioForm(c.body); e == nil || e.Code != c.code {
			t.Errorf("%s: %v, want %s", name, e, c.code)
		}
	}
}

// FuzzParseTwilioForm: whatever the body, parsing never panics, and a form it accepts has at
// most MaxCallbackParams names, each value valid UTF-8 without NUL and within its bound, and
// signs the same however often it is signed.
func FuzzParseTwilioForm(f *testing.F) {
	for _, s := range []string{"MessageSid=SM1&MessageStatus=delivered", "a=%00", "=", "&&&", "To=%2B1&To=%2B2", "x=%ff", ";=;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		p, e := ParseTwilioForm(body)
		if e != nil {
			return
		}
		if len(p) > MaxCallbackParams {
			t.Fatalf("accepted %d parameters", len(p))
		}
		for k, vs := range p {
			for _, v := range vs {
				if !utf8.ValidString(v) || strings.ContainsRune(v, 0) || len(v) > MaxCallbackValueBytes {
					t.Fatalf("accepted %q=%q", k, v)
				}
			}
		}
		sig := TwilioSignature("k", "https://x/y", p)
		if again := TwilioSignature("k", "https://x/y", maps.Clone(p)); again != sig {
			t.Fatalf("one form signs as %q and as %q", sig, again)
		}
		if TwilioSignature("k2", "https://x/y", p) == sig {
			t.Fatal("another auth token signs the form alike")
		}
		cb := TwilioCallback{URL: "https://x/v1/receipts/twilio/t", Params: p, Signature: "s"}
		if e := cb.Validate(); e != nil {
			t.Fatalf("a form the gateway accepted is refused forwarded: %v", e)
		}
	})
}
