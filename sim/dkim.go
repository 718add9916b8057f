package sim

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// dkimReceiver checks the DKIM signatures of arriving mail the way a receiving MTA does,
// resolving <selector>._domainkey.<domain> in its own stand-in for DNS: the one record of the
// key pair the simulator made for senders (RSA 2048, the private half at the key file).
type dkimReceiver struct {
	domain, selector string
	record           string // the TXT record: v=DKIM1; k=rsa; p=<base64 DER public key>
}

// loadOrCreateDKIM loads the sender's private key at path, or creates it, and returns the
// receiver that knows its public record.
func loadOrCreateDKIM(path, domain, selector string) (*dkimReceiver, error) {
	key, err := loadRSAKey(path)
	if errors.Is(err, os.ErrNotExist) {
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("writing the DKIM key: %w", err)
		}
	} else if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	return &dkimReceiver{domain: domain, selector: selector, record: "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)}, nil
}

func loadRSAKey(path string) (*rsa.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an RSA key", path)
	}
	return rk, nil
}

// name is the DNS name of the record.
func (d *dkimReceiver) name() string { return d.selector + "._domainkey." + d.domain }

// verify checks raw's signatures: "pass", "fail: <why>" or "none", and the header fields the
// first passing (or first) signature covers.
func (d *dkimReceiver) verify(raw []byte) (result, signed string) {
	lookup := func(name string) ([]string, error) {
		if strings.EqualFold(strings.TrimSuffix(name, "."), d.name()) {
			return []string{d.record}, nil
		}
		return nil, fmt.Errorf("no TXT record for %s", name)
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{LookupTXT: lookup, MaxVerifications: 5})
	if err != nil {
		return "fail: " + err.Error(), ""
	}
	if len(vs) == 0 {
		return "none", ""
	}
	for _, v := range vs {
		if v.Err == nil {
			return "pass d=" + v.Domain, strings.ToLower(strings.Join(v.HeaderKeys, ":"))
		}
	}
	return "fail: " + vs[0].Err.Error(), strings.ToLower(strings.Join(vs[0].HeaderKeys, ":"))
}
