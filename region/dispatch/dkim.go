package dispatch

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/emersion/go-msgauth/dkim"
)

// dkimSignedHeaders are the header fields every signature covers: those that say who sent
// what to whom, and the one-click unsubscribe fields, which RFC 8058 requires be signed. Each
// is listed once more than a message has it (oversigning, RFC 6376 section 8.15): a field a
// message lacks is signed as absent, and a second instance of one it has cannot be added in
// transit either (a verifier reads the bottom-most instance first).
var dkimSignedHeaders = []string{"From", "From", "To", "To", "Subject", "Subject", "Date", "Date", "Message-ID", "Message-ID",
	"MIME-Version", "Content-Type", "Content-Type", "Content-Transfer-Encoding", "List-Unsubscribe", "List-Unsubscribe",
	"List-Unsubscribe-Post", "List-Unsubscribe-Post", "X-Herald-Notification-Id"}

// loadDKIMSigner reads a PEM private key: PKCS#8 (RSA or Ed25519) or PKCS#1 RSA.
func loadDKIMSigner(path string) (crypto.Signer, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseDKIMKey(raw)
}

// parseDKIMKey reads a PEM private key as loadDKIMSigner does.
func parseDKIMKey(raw []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, checkRSA(k)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not a PKCS#8 or PKCS#1 private key: %w", err)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return k, checkRSA(k)
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("a %T key: DKIM signs with RSA or Ed25519", k)
}

func checkRSA(k *rsa.PrivateKey) error {
	if k.N.BitLen() < 1024 {
		return fmt.Errorf("an RSA key of %d bits: receivers ignore DKIM keys under 1024 bits", k.N.BitLen())
	}
	return nil
}

// dkimSigner signs outgoing mail.
type dkimSigner struct {
	opts dkim.SignOptions
}

func newDKIMSigner(c DKIMConfig) (*dkimSigner, error) {
	if c == (DKIMConfig{}) {
		return nil, nil
	}
	key, err := loadDKIMSigner(c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("dkim.key_file %s: %w", c.KeyFile, err)
	}
	return dkimSignerOf(c.Domain, c.Selector, key), nil
}

func dkimSignerOf(domain, selector string, key crypto.Signer) *dkimSigner {
	return &dkimSigner{opts: dkim.SignOptions{Domain: domain, Selector: selector, Signer: key, Hash: crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: dkimSignedHeaders}}
}

// sign returns msg with its DKIM-Signature header first.
func (s *dkimSigner) sign(msg []byte) ([]byte, error) {
	var out bytes.Buffer
	opts := s.opts
	if err := dkim.Sign(&out, bytes.NewReader(msg), &opts); err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	return out.Bytes(), nil
}
