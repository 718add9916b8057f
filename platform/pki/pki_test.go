package pki

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/config"
)

// issue writes a CA's certificate and one leaf under dir and returns the leaf's files.
func issue(t *testing.T, ca *CA, dir, name string, usage Usage, from, to time.Time) (cert, key string) {
	t.Helper()
	leaf, err := ca.Issue(name, usage, []string{"127.0.0.1", "localhost"}, from, to)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := leaf.WriteFiles(cert, key); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// server runs an HTTPS server with ServerConfig from ca that answers whether the caller's
// certificate verified.
func server(t *testing.T, ca *CA, dir string) *httptest.Server {
	t.Helper()
	now := time.Now()
	cert, key := issue(t, ca, dir, "region", Server, now.Add(-time.Hour), now.Add(time.Hour))
	caFile := filepath.Join(dir, "ca.pem")
	if err := WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	sc := ServerConfig{CertFile: cert, KeyFile: key, ClientCAFile: caFile}
	if err := sc.Validate(); err != nil {
		t.Fatal(err)
	}
	tc, err := sc.TLS()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if Verified(r.TLS) {
			_, _ = io.WriteString(w, "verified")
			return
		}
		_, _ = io.WriteString(w, "anonymous")
	}))
	srv.TLS = tc
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func newCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestRegionServerAcceptsOnlyCallersWithAValidCertificateFromItsCA(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	other, err := NewCA("another CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv := server(t, ca, dir)
	now := time.Now()
	caFile := filepath.Join(dir, "ca.pem")
	client := func(cert, key string) ClientConfig { return ClientConfig{CAFile: caFile, CertFile: cert, KeyFile: key} }

	goodCert, goodKey := issue(t, ca, dir, "gateway", Client, now.Add(-time.Hour), now.Add(time.Hour))
	otherCert, otherKey := issue(t, other, dir, "intruder", Client, now.Add(-time.Hour), now.Add(time.Hour))
	expCert, expKey := issue(t, ca, dir, "expired", Client, now.Add(-2*time.Hour), now.Add(-time.Hour))
	futCert, futKey := issue(t, ca, dir, "future", Client, now.Add(time.Hour), now.Add(2*time.Hour))
	srvCert, srvKey := issue(t, ca, dir, "server-as-client", Server, now.Add(-time.Hour), now.Add(time.Hour))

	cases := []struct {
		name      string
		tls       func() *tls.Config
		want      string // the body, or "" for a failed handshake
		wantError string
	}{
		{"a certificate from the CA", func() *tls.Config { return mustTLS(t, client(goodCert, goodKey)) }, "verified", ""},
		{"no certificate (the handler must refuse)", func() *tls.Config {
			c := mustTLS(t, client(goodCert, goodKey))
			c.GetClientCertificate = nil
			return c
		}, "anonymous", ""},
		{"a certificate from another CA", func() *tls.Config { return mustTLS(t, client(otherCert, otherKey)) }, "", "certificate"},
		{"an expired certificate", func() *tls.Config { return mustTLS(t, client(expCert, expKey)) }, "", "certificate"},
		{"a certificate not valid yet", func() *tls.Config { return mustTLS(t, client(futCert, futKey)) }, "", "certificate"},
		{"a server certificate used as a client's", func() *tls.Config { return mustTLS(t, client(srvCert, srvKey)) }, "", "certificate"},
		{"TLS 1.2", func() *tls.Config {
			c := mustTLS(t, client(goodCert, goodKey))
			c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			return c
		}, "", "version"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: c.tls()}}
			defer hc.CloseIdleConnections()
			resp, err := hc.Get(srv.URL)
			if c.want == "" {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("the call succeeded (%d); want a failed handshake", resp.StatusCode)
				}
				if !strings.Contains(err.Error(), c.wantError) {
					t.Fatalf("error %v does not mention %q", err, c.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if string(b) != c.want {
				t.Fatalf("got %q, want %q", b, c.want)
			}
			if resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 {
				t.Fatalf("not TLS 1.3: %+v", resp.TLS)
			}
		})
	}
}

func TestClientRefusesARegionCertifiedByAnotherCA(t *testing.T) {
	dir := t.TempDir()
	srv := server(t, newCA(t), dir)
	other := newCA(t)
	now := time.Now()
	cert, key := issue(t, other, dir, "gateway", Client, now.Add(-time.Hour), now.Add(time.Hour))
	otherCA := filepath.Join(dir, "other-ca.pem")
	if err := WriteFile(otherCA, other.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: mustTLS(t, ClientConfig{CAFile: otherCA, CertFile: cert, KeyFile: key})}}
	if resp, err := hc.Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Fatal("the client trusted a server its CA did not certify")
	}
}

func mustTLS(t *testing.T, c ClientConfig) *tls.Config {
	t.Helper()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	tc, err := c.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

func TestValidateNamesTheMissingFile(t *testing.T) {
	dir := t.TempDir()
	present := filepath.Join(dir, "present.pem")
	if err := os.WriteFile(present, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	cases := []struct {
		name string
		err  error
		key  string
	}{
		{"server cert empty", ServerConfig{KeyFile: present, ClientCAFile: present}.Validate(), "cert_file"},
		{"server key missing", ServerConfig{CertFile: present, KeyFile: missing, ClientCAFile: present}.Validate(), "key_file"},
		{"server client CA missing", ServerConfig{CertFile: present, KeyFile: present, ClientCAFile: missing}.Validate(), "client_ca_file"},
		{"client cert missing", ClientConfig{CertFile: missing, KeyFile: present}.Validate(), "cert_file"},
		{"client key empty", ClientConfig{CertFile: present}.Validate(), "key_file"},
		{"client CA missing", ClientConfig{CAFile: missing, CertFile: present, KeyFile: present}.Validate(), "ca_file"},
	}
	for _, c := range cases {
		var ke *config.KeyError
		if !errors.As(c.err, &ke) || ke.Key != c.key {
			t.Errorf("%s: got %v, want an error naming %s", c.name, c.err, c.key)
		}
	}
	if err := (ClientConfig{CertFile: present, KeyFile: present}).Validate(); err != nil {
		t.Errorf("a client without a CA file (system roots) is valid: %v", err)
	}
}

func TestTLSRefusesFilesThatAreNotCertificates(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (ServerConfig{CertFile: junk, KeyFile: junk, ClientCAFile: junk}).TLS(); err == nil {
		t.Error("a server config of junk loaded")
	}
	ca := newCA(t)
	now := time.Now()
	cert, key := issue(t, ca, dir, "region", Server, now, now.Add(time.Hour))
	if _, err := (ServerConfig{CertFile: cert, KeyFile: key, ClientCAFile: junk}).TLS(); err == nil || !strings.Contains(err.Error(), "client_ca_file") {
		t.Errorf("a client CA file without a certificate: got %v", err)
	}
}

func TestEnsureIssuesOnceAndRenewsWhatExpiresOrLostItsCA(t *testing.T) {
	d := Dir(t.TempDir())
	p := Plan{Servers: []string{"region-eu-west-1"}, Hosts: []string{"127.0.0.1", "localhost"}, Clients: []string{"gateway"},
		CAValidity: 24 * time.Hour, LeafValidity: time.Hour, RenewBefore: 10 * time.Minute}
	now := time.Now()
	issued, err := d.Ensure(p, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ca", "region-eu-west-1", "gateway"}; !slices.Equal(issued, want) {
		t.Fatalf("first run issued %v, want %v", issued, want)
	}
	if issued, err = d.Ensure(p, now); err != nil || len(issued) != 0 {
		t.Fatalf("second run issued %v (%v), want nothing", issued, err)
	}
	if issued, err = d.Ensure(p, now.Add(55*time.Minute)); err != nil || !slices.Equal(issued, []string{"region-eu-west-1", "gateway"}) {
		t.Fatalf("near expiry issued %v (%v), want both leaves", issued, err)
	}
	p.Hosts = append(p.Hosts, "region.internal")
	if issued, err = d.Ensure(p, now); err != nil || !slices.Equal(issued, []string{"region-eu-west-1"}) {
		t.Fatalf("a new host issued %v (%v), want the server certificate", issued, err)
	}
	// A new CA (the old one deleted) invalidates every leaf.
	for _, f := range []string{d.CAFile(), d.CAKeyFile()} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	if issued, err = d.Ensure(p, now); err != nil || !slices.Equal(issued, []string{"ca", "region-eu-west-1", "gateway"}) {
		t.Fatalf("after a new CA issued %v (%v), want everything", issued, err)
	}
	if fi, err := os.Stat(d.KeyFile("gateway")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi, err)
	}
	if _, err := d.Server("region-eu-west-1").TLS(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Client("gateway").TLS(); err != nil {
		t.Fatal(err)
	}
}

func TestIsDNSNameTakesCertificateNamesOnly(t *testing.T) {
	for name, want := range map[string]bool{
		"region.eu-west-1.herald.internal": true,
		"localhost":                        true,
		"a":                                true,
		"":                                 false,
		"Region.herald":                    false, // upper case: configs write server names in lower case
		"-region.herald":                   false,
		"region-.herald":                   false,
		"region..herald":                   false,
		"region.herald.":                   false,
		"*.herald":                         false,
		"region_1.herald":                  false,
		"région.herald":                    false,
		"region.herald\x00":                false,
		"127.0.0.1:8101":                   false,
		strings.Repeat("a", 64):            false,
		strings.Repeat("a.", 127) + "a":    false, // 255 bytes
		strings.Repeat("a.", 126) + "a":    true,  // 253 bytes
	} {
		if got := IsDNSName(name); got != want {
			t.Errorf("IsDNSName(%q) = %v, want %v", name, got, want)
		}
	}
}
