package pki

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Dir is the layout of a directory of internal certificates, as `herald-dev pki init` writes it:
// ca.pem and ca-key.pem, then <name>.pem and <name>-key.pem per certificate.
type Dir string

// CAFile is the CA's certificate.
func (d Dir) CAFile() string { return filepath.Join(string(d), "ca.pem") }

// CAKeyFile is the CA's private key.
func (d Dir) CAKeyFile() string { return filepath.Join(string(d), "ca-key.pem") }

// CertFile is the certificate named name.
func (d Dir) CertFile(name string) string { return filepath.Join(string(d), name+".pem") }

// KeyFile is the private key of the certificate named name.
func (d Dir) KeyFile(name string) string { return filepath.Join(string(d), name+"-key.pem") }

// Server is the server side of the certificate named name.
func (d Dir) Server(name string) ServerConfig {
	return ServerConfig{CertFile: d.CertFile(name), KeyFile: d.KeyFile(name), ClientCAFile: d.CAFile()}
}

// Client is the client side of the certificate named name.
func (d Dir) Client(name string) ClientConfig {
	return ClientConfig{CAFile: d.CAFile(), CertFile: d.CertFile(name), KeyFile: d.KeyFile(name)}
}

// Plan is what Ensure keeps in a Dir.
type Plan struct {
	// Servers are the names of server certificates, each for Hosts.
	Servers []string
	Hosts   []string
	// Clients are the names of client certificates.
	Clients []string
	// CAValidity and LeafValidity are the lifetimes of a new CA and a new certificate.
	CAValidity, LeafValidity time.Duration
	// RenewBefore reissues a certificate that expires within it.
	RenewBefore time.Duration
}

// Ensure creates the CA when it is missing and issues every certificate of p that is missing,
// expires within p.RenewBefore, was not signed by the CA or (a server's) lacks one of p.Hosts.
// It returns the names it issued; run again, it issues nothing.
func (d Dir) Ensure(p Plan, now time.Time) ([]string, error) {
	ca, err := LoadCA(d.CAFile(), d.CAKeyFile())
	var issued []string
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if ca, err = NewCA("Herald internal CA", p.CAValidity); err != nil {
			return nil, err
		}
		if err := ca.WriteFiles(d.CAFile(), d.CAKeyFile()); err != nil {
			return nil, err
		}
		issued = append(issued, "ca")
	case err != nil:
		return nil, fmt.Errorf("loading the CA (delete %s to start over): %w", d, err)
	}
	type want struct {
		name  string
		usage Usage
	}
	var all []want
	for _, n := range p.Servers {
		all = append(all, want{n, Server})
	}
	for _, n := range p.Clients {
		all = append(all, want{n, Client})
	}
	for _, w := range all {
		if d.current(ca, w.name, w.usage, p, now) {
			continue
		}
		leaf, err := ca.Issue(w.name, w.usage, p.Hosts, now.Add(-time.Minute), now.Add(p.LeafValidity))
		if err != nil {
			return nil, err
		}
		if err := leaf.WriteFiles(d.CertFile(w.name), d.KeyFile(w.name)); err != nil {
			return nil, err
		}
		issued = append(issued, w.name)
	}
	return issued, nil
}

// current reports whether the certificate named name can stay.
func (d Dir) current(ca *CA, name string, usage Usage, p Plan, now time.Time) bool {
	raw, err := os.ReadFile(d.CertFile(name))
	if err != nil {
		return false
	}
	if _, err := os.Stat(d.KeyFile(name)); err != nil {
		return false
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		return false
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil || cert.CheckSignatureFrom(ca.Cert) != nil || now.Add(p.RenewBefore).After(cert.NotAfter) {
		return false
	}
	if usage == Server {
		for _, h := range p.Hosts {
			if cert.VerifyHostname(h) != nil {
				return false
			}
		}
	}
	return true
}

// LocalPlan is what `herald-dev pki init` keeps for the local stack: a server certificate per
// region ("region-<name>") and one for central analytics' ingest listener ("analytics"), all
// for hosts; the gateway's client certificate ("gateway", for the regions) and a client
// certificate per region's exporter ("exporter-<name>", for analytics, whose default
// ingest.client_name it matches). Leaves last 90 days and are renewed 30 days before expiry.
func LocalPlan(regions, hosts []string) Plan {
	p := Plan{
		Hosts: hosts, Servers: make([]string, 0, len(regions)+1), Clients: []string{"gateway"},
		CAValidity: 10 * 365 * 24 * time.Hour, LeafValidity: 90 * 24 * time.Hour, RenewBefore: 30 * 24 * time.Hour,
	}
	for _, r := range regions {
		p.Servers = append(p.Servers, "region-"+r)
	}
	p.Servers = append(p.Servers, "analytics")
	for _, r := range regions {
		p.Clients = append(p.Clients, "exporter-"+r)
	}
	return p
}
