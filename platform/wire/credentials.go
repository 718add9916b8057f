package wire

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// Provider credential kinds: what an app stores with PUT .../credentials/{kind}. Each app may
// hold one credential of each kind per jurisdiction; its sends of that kind use it instead of
// the region's own provider account.
const (
	CredentialAPNs   = "apns"
	CredentialFCM    = "fcm"
	CredentialSMTP   = "smtp"
	CredentialTwilio = "twilio"
)

// CredentialKinds lists the kinds, in the order the API lists credentials.
var CredentialKinds = []string{CredentialAPNs, CredentialFCM, CredentialSMTP, CredentialTwilio}

// Limits of a credential's fields.
const (
	maxCredentialText = 256
	maxCredentialURL  = 512
	maxPEMBytes       = 8 << 10
)

var (
	appleIDRE      = regexp.MustCompile(`^[A-Z0-9]{10}$`)
	bundleIDRE     = regexp.MustCompile(`^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$`)
	gcpProjectRE   = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	privateKeyIDRE = regexp.MustCompile(`^[A-Za-z0-9]{1,128}$`)
	twilioSIDRE    = regexp.MustCompile(`^AC[0-9a-f]{32}$`)
	twilioTokenRE  = regexp.MustCompile(`^[0-9a-f]{32}$`)
	e164RE         = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	dnsLabelRE     = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// APNsCredential is an app's APNs token-authentication key: the .p8 file Apple's developer
// portal issues (PKCS#8, P-256), its key id, the team id and the app's bundle id (apns-topic).
type APNsCredential struct {
	TeamID     string `json:"team_id"`
	KeyID      string `json:"key_id"`
	Topic      string `json:"topic"`
	PrivateKey string `json:"private_key"`
}

// FCMCredential is an app's Firebase project, by its service account.
type FCMCredential struct {
	ServiceAccount FCMServiceAccount `json:"service_account"`
}

// FCMServiceAccount is the service-account JSON Google issues, as it is downloaded.
type FCMServiceAccount struct {
	Type                    string `json:"type"`
	ProjectID               string `json:"project_id"`
	PrivateKeyID            string `json:"private_key_id"`
	PrivateKey              string `json:"private_key"`
	ClientEmail             string `json:"client_email"`
	ClientID                string `json:"client_id,omitzero"`
	AuthURI                 string `json:"auth_uri,omitzero"`
	TokenURI                string `json:"token_uri"`
	AuthProviderX509CertURL string `json:"auth_provider_x509_cert_url,omitzero"`
	ClientX509CertURL       string `json:"client_x509_cert_url,omitzero"`
	UniverseDomain          string `json:"universe_domain,omitzero"`
}

// SMTPCredential is an app's login at the region's SMTP relay and its sender address, with
// the DKIM key of its own domain when it signs its mail.
type SMTPCredential struct {
	From     string   `json:"from"`
	Username string   `json:"username"`
	Password string   `json:"password"`
	DKIM     *DKIMKey `json:"dkim,omitzero"`
}

// DKIMKey is a DKIM signing key (RFC 6376): d=Domain, s=Selector, PEM private key (RSA of at
// least 1024 bits, or Ed25519).
type DKIMKey struct {
	Domain     string `json:"domain"`
	Selector   string `json:"selector"`
	PrivateKey string `json:"private_key"`
}

// TwilioCredential is an app's Twilio account and sender number.
type TwilioCredential struct {
	AccountSID string `json:"account_sid"`
	AuthToken  string `json:"auth_token"`
	From       string `json:"from"`
}

// Credential is one stored credential: its kind and the body of that kind.
type Credential struct {
	Kind   string
	APNs   *APNsCredential
	FCM    *FCMCredential
	SMTP   *SMTPCredential
	Twilio *TwilioCredential
}

// ValidCredentialKind reports whether kind names a credential kind.
func ValidCredentialKind(kind string) bool { return slices.Contains(CredentialKinds, kind) }

// DecodeCredential reads the body of PUT .../credentials/{kind} under the one reading
// (Decode) and checks it (Validate).
func DecodeCredential(kind string, raw []byte) (Credential, *Error) {
	c := Credential{Kind: kind}
	var dst any
	switch kind {
	case CredentialAPNs:
		c.APNs = &APNsCredential{}
		dst = c.APNs
	case CredentialFCM:
		c.FCM = &FCMCredential{}
		dst = c.FCM
	case CredentialSMTP:
		c.SMTP = &SMTPCredential{}
		dst = c.SMTP
	case CredentialTwilio:
		c.Twilio = &TwilioCredential{}
		dst = c.Twilio
	default:
		return Credential{}, refuse(CodeInvalidField, "kind", "kind must be one of "+strings.Join(CredentialKinds, ", "))
	}
	if e := Decode(raw, dst); e != nil {
		return Credential{}, e
	}
	if e := c.Validate(); e != nil {
		return Credential{}, e
	}
	return c, nil
}

// Body is the credential's body, as PUT takes it (for Encode).
func (c Credential) Body() any {
	switch c.Kind {
	case CredentialAPNs:
		return c.APNs
	case CredentialFCM:
		return c.FCM
	case CredentialSMTP:
		return c.SMTP
	}
	return c.Twilio
}

// Validate checks every field of the credential: identifiers by their provider's format, keys
// parsed (a key that does not load is refused here, not at the first send).
func (c Credential) Validate() *Error {
	switch {
	case c.Kind == CredentialAPNs && c.APNs != nil:
		return c.APNs.validate()
	case c.Kind == CredentialFCM && c.FCM != nil:
		return c.FCM.ServiceAccount.validate("service_account.")
	case c.Kind == CredentialSMTP && c.SMTP != nil:
		return c.SMTP.validate()
	case c.Kind == CredentialTwilio && c.Twilio != nil:
		return c.Twilio.validate()
	}
	return refuse(CodeInvalidField, "kind", "kind must be one of "+strings.Join(CredentialKinds, ", "))
}

// Settings are the credential's fields that are not secret, as the API shows them.
func (c Credential) Settings() map[string]string {
	switch c.Kind {
	case CredentialAPNs:
		return map[string]string{"team_id": c.APNs.TeamID, "key_id": c.APNs.KeyID, "topic": c.APNs.Topic}
	case CredentialFCM:
		sa := c.FCM.ServiceAccount
		return map[string]string{"project_id": sa.ProjectID, "client_email": sa.ClientEmail, "private_key_id": sa.PrivateKeyID}
	case CredentialSMTP:
		m := map[string]string{"from": c.SMTP.From, "username": c.SMTP.Username}
		if d := c.SMTP.DKIM; d != nil {
			m["dkim_domain"], m["dkim_selector"] = d.Domain, d.Selector
		}
		return m
	}
	return map[string]string{"account_sid": c.Twilio.AccountSID, "from": c.Twilio.From}
}

// Fingerprint identifies the credential's secret without showing it: "sha256:" and the first
// 16 hex digits of the SHA-256 of the secret parts (keys by their DER, passwords and tokens as
// they are), so an app can tell which of its keys a region holds.
func (c Credential) Fingerprint() string {
	h := sha256.New()
	switch c.Kind {
	case CredentialAPNs:
		h.Write(pemDER(c.APNs.PrivateKey))
	case CredentialFCM:
		h.Write(pemDER(c.FCM.ServiceAccount.PrivateKey))
	case CredentialSMTP:
		h.Write([]byte(c.SMTP.Password))
		if c.SMTP.DKIM != nil {
			h.Write([]byte{0})
			h.Write(pemDER(c.SMTP.DKIM.PrivateKey))
		}
	case CredentialTwilio:
		h.Write([]byte(c.Twilio.AuthToken))
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
}

func pemDER(s string) []byte {
	if b, _ := pem.Decode([]byte(s)); b != nil {
		return b.Bytes
	}
	return []byte(s)
}

// text checks a required plain-text field: 1 to maxCredentialText bytes of UTF-8, no control
// characters.
func text(field, s string) *Error {
	if s == "" {
		return refuse(CodeMissingField, field, field+" is required")
	}
	if len(s) > maxCredentialText || !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return refuse(CodeInvalidField, field, fmt.Sprintf("%s must be at most %d bytes of text without control characters", field, maxCredentialText))
	}
	return nil
}

// onePEM decodes s as exactly one PEM block of one of types, nothing but white space around it.
func onePEM(field, s string, types ...string) (*pem.Block, *Error) {
	if s == "" {
		return nil, refuse(CodeMissingField, field, field+" is required")
	}
	if len(s) > maxPEMBytes {
		return nil, refuse(CodeInvalidField, field, fmt.Sprintf("%s must be at most %d bytes", field, maxPEMBytes))
	}
	b, rest := pem.Decode([]byte(s))
	if b == nil || strings.TrimSpace(string(rest)) != "" || !slices.Contains(types, b.Type) || len(b.Headers) > 0 {
		return nil, refuse(CodeInvalidField, field, fmt.Sprintf("%s must be one PEM block (%s)", field, strings.Join(types, " or ")))
	}
	return b, nil
}

func (a *APNsCredential) validate() *Error {
	if !appleIDRE.MatchString(a.TeamID) {
		return refuse(CodeInvalidField, "team_id", "team_id must be the 10 upper-case letters or digits of an Apple team id")
	}
	if !appleIDRE.MatchString(a.KeyID) {
		return refuse(CodeInvalidField, "key_id", "key_id must be the 10 upper-case letters or digits of an APNs key id")
	}
	if len(a.Topic) > 255 || !bundleIDRE.MatchString(a.Topic) {
		return refuse(CodeInvalidField, "topic", "topic must be the app's bundle id (letters, digits, hyphens and dots, like com.example.app)")
	}
	b, e := onePEM("private_key", a.PrivateKey, "PRIVATE KEY")
	if e != nil {
		return e
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if ec, ok := k.(*ecdsa.PrivateKey); err != nil || !ok || ec.Curve != elliptic.P256() {
		return refuse(CodeInvalidField, "private_key", "private_key must be the APNs .p8 key: a PKCS#8 P-256 private key")
	}
	return nil
}

func (sa *FCMServiceAccount) validate(prefix string) *Error {
	if sa.Type != "service_account" {
		return refuse(CodeInvalidField, prefix+"type", `type must be "service_account"`)
	}
	if !gcpProjectRE.MatchString(sa.ProjectID) {
		return refuse(CodeInvalidField, prefix+"project_id", "project_id must be a Google Cloud project id (6-30 lower-case letters, digits or hyphens, starting with a letter)")
	}
	if !privateKeyIDRE.MatchString(sa.PrivateKeyID) {
		return refuse(CodeInvalidField, prefix+"private_key_id", "private_key_id must be 1-128 letters or digits")
	}
	if a, err := mail.ParseAddress(sa.ClientEmail); err != nil || a.Name != "" || a.Address != sa.ClientEmail || len(sa.ClientEmail) > 254 {
		return refuse(CodeInvalidField, prefix+"client_email", "client_email must be the service account's address")
	}
	b, e := onePEM(prefix+"private_key", sa.PrivateKey, "PRIVATE KEY", "RSA PRIVATE KEY")
	if e != nil {
		return e
	}
	if k, err := parseRSA(b); err != nil || k.N.BitLen() < 2048 {
		return refuse(CodeInvalidField, prefix+"private_key", "private_key must be an RSA private key of at least 2048 bits (PKCS#8 or PKCS#1)")
	}
	if sa.TokenURI == "" {
		return refuse(CodeMissingField, prefix+"token_uri", "token_uri is required")
	}
	for _, f := range []struct{ name, v string }{{"token_uri", sa.TokenURI}, {"auth_uri", sa.AuthURI},
		{"auth_provider_x509_cert_url", sa.AuthProviderX509CertURL}, {"client_x509_cert_url", sa.ClientX509CertURL}} {
		if f.v == "" {
			continue
		}
		if e := checkAbsURL(prefix+f.name, f.v); e != nil {
			return e
		}
	}
	if sa.ClientID != "" && (len(sa.ClientID) > 64 || !privateKeyIDRE.MatchString(sa.ClientID)) {
		return refuse(CodeInvalidField, prefix+"client_id", "client_id must be up to 64 letters or digits")
	}
	if sa.UniverseDomain != "" && sa.UniverseDomain != "googleapis.com" {
		return refuse(CodeInvalidField, prefix+"universe_domain", `universe_domain must be "googleapis.com" (the only one FCM serves)`)
	}
	return nil
}

// checkAbsURL checks an absolute http(s) URL without credentials, fragment or control
// characters; which hosts a region calls is its own rule.
func checkAbsURL(field, raw string) *Error {
	bad := refuse(CodeInvalidField, field, field+" must be an absolute https URL")
	if len(raw) > maxCredentialURL || strings.ContainsFunc(raw, func(r rune) bool { return r <= 0x20 || r == 0x7f }) {
		return bad
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Opaque != "" || u.Host == "" || u.User != nil || u.Fragment != "" || (u.Scheme != "https" && u.Scheme != "http") {
		return bad
	}
	return nil
}

func parseRSA(b *pem.Block) (*rsa.PrivateKey, error) {
	if b.Type == "RSA PRIVATE KEY" {
		return x509.ParsePKCS1PrivateKey(b.Bytes)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	r, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T key", k)
	}
	return r, nil
}

// bareAddress reads an address that may carry a display name ("Acme <no-reply@acme.com>")
// and returns its address part.
func bareAddress(s string) (string, bool) {
	a, err := mail.ParseAddress(s)
	if err != nil || len(s) > 320 {
		return "", false
	}
	return a.Address, true
}

func (s *SMTPCredential) validate() *Error {
	addr, ok := bareAddress(s.From)
	if !ok {
		return refuse(CodeInvalidField, "from", `from must be an address ("no-reply@example.com" or "Example <no-reply@example.com>")`)
	}
	if e := text("username", s.Username); e != nil {
		return e
	}
	if e := text("password", s.Password); e != nil {
		return e
	}
	if d := s.DKIM; d != nil {
		if e := d.validate(addr); e != nil {
			return e
		}
	}
	return nil
}

// validDomain reports whether s is a DNS name of at least two labels.
func validDomain(s string) bool {
	if len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if !dnsLabelRE.MatchString(l) {
			return false
		}
	}
	return true
}

func (d *DKIMKey) validate(from string) *Error {
	if !validDomain(d.Domain) {
		return refuse(CodeInvalidField, "dkim.domain", "dkim.domain must be a domain name")
	}
	if !dnsLabelRE.MatchString(d.Selector) {
		return refuse(CodeInvalidField, "dkim.selector", "dkim.selector must be a DNS label")
	}
	_, host, _ := strings.Cut(from, "@")
	host, dom := strings.ToLower(host), strings.ToLower(d.Domain)
	if host != dom && !strings.HasSuffix(host, "."+dom) {
		return refuse(CodeInvalidField, "dkim.domain", "dkim.domain must be the domain of from, or a parent of it (DMARC alignment)")
	}
	b, e := onePEM("dkim.private_key", d.PrivateKey, "PRIVATE KEY", "RSA PRIVATE KEY")
	if e != nil {
		return e
	}
	if k, err := parseRSA(b); err == nil {
		if k.N.BitLen() < 1024 {
			return refuse(CodeInvalidField, "dkim.private_key", "dkim.private_key: receivers ignore RSA keys under 1024 bits")
		}
		return nil
	}
	if b.Type == "PRIVATE KEY" {
		if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
			if _, ok := k.(ed25519.PrivateKey); ok {
				return nil
			}
		}
	}
	return refuse(CodeInvalidField, "dkim.private_key", "dkim.private_key must be an RSA (PKCS#8 or PKCS#1) or Ed25519 (PKCS#8) private key")
}

func (t *TwilioCredential) validate() *Error {
	if !twilioSIDRE.MatchString(t.AccountSID) {
		return refuse(CodeInvalidField, "account_sid", "account_sid must be AC and 32 lower-case hex digits")
	}
	if !twilioTokenRE.MatchString(t.AuthToken) {
		return refuse(CodeInvalidField, "auth_token", "auth_token must be 32 lower-case hex digits")
	}
	if !e164RE.MatchString(t.From) {
		return refuse(CodeInvalidField, "from", "from must be a number in E.164 form (+ and 7-15 digits)")
	}
	return nil
}
