// Package pki is the TLS of Herald's internal hops: the server side of a region's API, which
// verifies its callers' client certificates against an internal CA, the client side the gateway
// and Herald's tools dial regions with, and a small certificate authority that issues both
// (for `herald-dev pki`, the local stack and tests; production certificates come from the
// operator's own CA). Every config here is TLS 1.3 only.
package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"regexp"

	"github.com/herald-notify/herald/platform/config"
)

// dnsName is a DNS name a certificate can carry: labels of lower-case letters, digits and
// hyphens, none starting or ending with a hyphen, each at most 63 bytes.
var dnsName = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// IsDNSName reports whether name is a DNS name a certificate can carry (a TLS server name to
// verify against, in lower case), at most 253 bytes.
func IsDNSName(name string) bool { return len(name) <= 253 && dnsName.MatchString(name) }

// MinVersion is the lowest TLS version an internal hop accepts.
const MinVersion = tls.VersionTLS13

// ServerConfig is a TLS server that asks its callers for a certificate signed by ClientCAFile.
type ServerConfig struct {
	// CertFile and KeyFile are the server's certificate chain and private key (PEM).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile holds the CA certificates (PEM) whose client certificates are accepted.
	ClientCAFile string `yaml:"client_ca_file"`
}

// Validate checks that every file is named and readable; errors name the key.
func (c ServerConfig) Validate() error {
	for _, f := range []struct{ key, path string }{{"cert_file", c.CertFile}, {"key_file", c.KeyFile}, {"client_ca_file", c.ClientCAFile}} {
		if err := readable(f.key, f.path); err != nil {
			return err
		}
	}
	return nil
}

// TLS loads the files into a server config. A caller that offers a certificate must offer one
// the client CA signed and that is valid now, or the handshake fails; a caller that offers none
// completes the handshake (so health checks need no certificate) and Verified reports false for
// its requests: the handler refuses them.
func (c ServerConfig) TLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("cert_file/key_file: %w", err)
	}
	pool, err := loadPool("client_ca_file", c.ClientCAFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   MinVersion,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
		NextProtos:   []string{"h2", "http/1.1"},
	}, nil
}

// Verified reports whether a connection's peer presented a client certificate that verified
// against the server's client CA.
func Verified(cs *tls.ConnectionState) bool {
	return cs != nil && cs.HandshakeComplete && len(cs.VerifiedChains) > 0
}

// ClientConfig is the TLS a caller dials an internal API with.
type ClientConfig struct {
	// CAFile holds the CA certificates (PEM) the server's certificate must chain to; empty
	// trusts the system's roots (a region behind a publicly certified endpoint).
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the caller's client certificate and key (PEM).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Validate checks that the certificate and key are named and readable, and the CA file when set.
func (c ClientConfig) Validate() error {
	if err := readable("cert_file", c.CertFile); err != nil {
		return err
	}
	if err := readable("key_file", c.KeyFile); err != nil {
		return err
	}
	if c.CAFile != "" {
		return readable("ca_file", c.CAFile)
	}
	return nil
}

// TLS loads the files into a client config.
func (c ClientConfig) TLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("cert_file/key_file: %w", err)
	}
	// Always offer the certificate, whatever CAs the server names (Go would otherwise send
	// none when its issuer is not among them): a CA mismatch then fails the handshake, the
	// gateway's probe included, instead of every call answering 401.
	cfg := &tls.Config{MinVersion: MinVersion, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }}
	if c.CAFile != "" {
		if cfg.RootCAs, err = loadPool("ca_file", c.CAFile); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

func readable(key, path string) error {
	if path == "" {
		return config.Errorf(key, "", "is required")
	}
	f, err := os.Open(path)
	if err != nil {
		return config.Errorf(key, path, "cannot be read: %v", unwrapPath(err))
	}
	return f.Close()
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func loadPool(key, path string) (*x509.CertPool, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", key, path)
	}
	return pool, nil
}
