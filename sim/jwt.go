package sim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
)

// jwt is a parsed, not yet verified, compact JWS. The simulators verify provider tokens with the
// standard library only: APNs provider tokens are ES256, Google service-account assertions are
// RS256, and nothing else is accepted.
type jwt struct {
	Header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}
	Claims struct {
		Iss   string  `json:"iss"`
		Sub   string  `json:"sub"`
		Aud   string  `json:"aud"`
		Scope string  `json:"scope"`
		Iat   float64 `json:"iat"`
		Exp   float64 `json:"exp"`
	}
	signingInput string
	sig          []byte
}

var errMalformedJWT = errors.New("malformed JWT")

func parseJWT(tok string) (*jwt, error) {
	h, rest, ok1 := strings.Cut(tok, ".")
	c, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(s, ".") {
		return nil, errMalformedJWT
	}
	var j jwt
	for _, part := range []struct {
		b64 string
		dst any
	}{{h, &j.Header}, {c, &j.Claims}} {
		raw, err := base64.RawURLEncoding.DecodeString(part.b64)
		if err != nil {
			return nil, errMalformedJWT
		}
		if err := json.Unmarshal(raw, part.dst); err != nil {
			// aud may legally be a list; the simulators only ever expect a single audience.
			return nil, errMalformedJWT
		}
	}
	sig, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errMalformedJWT
	}
	j.signingInput, j.sig = tok[:len(h)+1+len(c)], sig
	return &j, nil
}

// verifyES256 checks a JWS ES256 signature: r and s, 32 bytes each, over SHA-256.
func (j *jwt) verifyES256(pub *ecdsa.PublicKey) bool {
	if j.Header.Alg != "ES256" || len(j.sig) != 64 || pub == nil {
		return false
	}
	sum := sha256.Sum256([]byte(j.signingInput))
	r, s := new(big.Int).SetBytes(j.sig[:32]), new(big.Int).SetBytes(j.sig[32:])
	return ecdsa.Verify(pub, sum[:], r, s)
}

// verifyRS256 checks a JWS RS256 signature (RSASSA-PKCS1-v1_5 with SHA-256).
func (j *jwt) verifyRS256(pub *rsa.PublicKey) bool {
	if j.Header.Alg != "RS256" || pub == nil {
		return false
	}
	sum := sha256.Sum256([]byte(j.signingInput))
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], j.sig) == nil
}
