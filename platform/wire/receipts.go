package wire

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/url"
	"sort"
	"strings"
	"unicode/utf8"
)

// Limits of a provider's status callback, well above what Twilio sends (a dozen parameters of
// ids, numbers and statuses).
const (
	MaxCallbackBytes       = 16 << 10
	MaxCallbackParams      = 64
	MaxCallbackValueBytes  = 1024
	MaxCallbackURLBytes    = 2048
	MaxCallbackSignature   = 128
	TwilioSignatureHeader  = "X-Twilio-Signature"
	TwilioCallbackMimeType = "application/x-www-form-urlencoded"
)

// TwilioCallback is a Twilio status callback as a gateway parsed it and forwards it to the
// region its token names: the URL Twilio posted to (the signature covers it), the form's
// parameters, and X-Twilio-Signature.
type TwilioCallback struct {
	URL       string              `json:"url"`
	Params    map[string][]string `json:"params"`
	Signature string              `json:"signature"`
}

// ParseTwilioForm reads a status callback's form body strictly: valid UTF-8 without NUL,
// at most MaxCallbackParams parameters of at most MaxCallbackValueBytes each.
func ParseTwilioForm(raw string) (url.Values, *Error) {
	if len(raw) > MaxCallbackBytes {
		return nil, refuse(CodePayloadTooLarge, "", "the callback's body is over 16 KiB")
	}
	form, err := url.ParseQuery(raw)
	if err != nil {
		return nil, refuse(CodeInvalidField, "", "the body is not a form (application/x-www-form-urlencoded)")
	}
	return form, checkParams(form)
}

func checkParams(p map[string][]string) *Error {
	if len(p) > MaxCallbackParams {
		return refuse(CodeInvalidField, "", "a callback has at most 64 parameters")
	}
	for k, vs := range p {
		if k == "" || len(k) > 64 || !utf8.ValidString(k) || strings.ContainsRune(k, 0) {
			return refuse(CodeInvalidField, "", "a parameter name is empty, over 64 bytes, or not text")
		}
		if len(vs) > 8 {
			return refuse(CodeInvalidField, k, "a parameter is given at most 8 times")
		}
		for _, v := range vs {
			if len(v) > MaxCallbackValueBytes || !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
				return refuse(CodeInvalidField, k, "a value is over 1 KiB or not text")
			}
		}
	}
	return nil
}

// Validate checks a forwarded callback as strictly as the gateway read it.
func (t *TwilioCallback) Validate() *Error {
	switch {
	case t.URL == "":
		return refuse(CodeMissingField, "url", "url is required")
	case len(t.URL) > MaxCallbackURLBytes || !utf8.ValidString(t.URL) || strings.ContainsRune(t.URL, 0):
		return refuse(CodeInvalidField, "url", "url is over 2 KiB or not text")
	case t.Signature == "":
		return refuse(CodeMissingField, TwilioSignatureHeader, "the callback is not signed")
	case len(t.Signature) > MaxCallbackSignature:
		return refuse(CodeInvalidField, TwilioSignatureHeader, "the signature is over 128 bytes")
	}
	if u, err := url.Parse(t.URL); err != nil || !u.IsAbs() || u.Host == "" {
		return refuse(CodeInvalidField, "url", "url must be absolute")
	}
	return checkParams(t.Params)
}

// TwilioSignature is Twilio's request signature (X-Twilio-Signature): base64 HMAC-SHA1, keyed
// with the account's auth token, of the URL followed by each POST parameter's name and value,
// in name order.
func TwilioSignature(authToken, u string, params url.Values) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(u)
	for _, k := range keys {
		for _, v := range params[k] {
			b.WriteString(k)
			b.WriteString(v)
		}
	}
	mac := hmac.New(sha1.New, []byte(authToken))
	mac.Write([]byte(b.String()))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
