package main

import (
	"bytes"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/cli"
	"github.com/herald-notify/herald/platform/pki"
)

// run runs herald-dev's command args.
func run(args []string, stdout, stderr io.Writer) int {
	return cli.Main("herald-dev", commands, args, stdout, stderr)
}

func TestEveryWorkbenchCommandWithSubcommandsAnswersHelpWithItsUsage(t *testing.T) {
	for name, cmd := range commands {
		if !cmd.Subcommands {
			continue
		}
		for _, h := range []string{"-h", "--help", "help"} {
			t.Run(name+" "+h, func(t *testing.T) {
				var out, errb bytes.Buffer
				if code := run([]string{name, h}, &out, &errb); code != 0 {
					t.Fatalf("exit code %d, want 0; stderr: %s", code, errb.String())
				}
				if !strings.HasPrefix(out.String(), "usage:") || !strings.Contains(out.String(), name) {
					t.Fatalf("stdout is not %s's usage: %q", name, out.String())
				}
			})
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"gateway"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Fatalf("herald-dev gateway: exit %d (the product's commands are herald's)", code)
	}
}

func TestWorkbenchHelpFlagPrintsFlagsAndRunsNothing(t *testing.T) {
	for _, args := range [][]string{{"bench", "pipeline", "-h"}, {"bench", "dispatch", "--help"}, {"sim", "-h"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(args, &out, &errb); code != 0 {
				t.Fatalf("exit code %d, want 0; stderr: %s", code, errb.String())
			}
			if out.Len() != 0 || !strings.Contains(errb.String(), "Usage of herald-dev") {
				t.Fatalf("stdout %q stderr %q", out.String(), errb.String())
			}
		})
	}
}

func TestPKIInitIssuesOnceThenKeepsTheCertificates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	var out, errb bytes.Buffer
	want := "issued ca, region-eu-west-1, region-eu-central-1, region-us-east-1, analytics, gateway, exporter-eu-west-1, exporter-eu-central-1, exporter-us-east-1"
	if code := run([]string{"pki", "init", "--dir", dir}, &out, &errb); code != 0 || !strings.Contains(out.String(), want) {
		t.Fatalf("first run: exit %d: %s%s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"pki", "init", "--dir", dir}, &out, &errb); code != 0 || !strings.Contains(out.String(), "is current") {
		t.Fatalf("second run: exit %d: %s%s", code, out.String(), errb.String())
	}
	if code := run([]string{"pki", "renew"}, &out, &errb); code != 2 {
		t.Fatalf("an unknown pki subcommand: exit %d", code)
	}
}

// A .herald/pki from before the analytics hop (the CA, the regions' server certificates and
// the gateway's) gets analytics' server certificate and the exporters' client certificates;
// nothing it had is issued again.
func TestPKIInitAddsTheAnalyticsCertificatesToAnOlderDirectory(t *testing.T) {
	d := pki.Dir(filepath.Join(t.TempDir(), "pki"))
	regions := []string{"eu-west-1", "eu-central-1", "us-east-1"}
	old := pki.Plan{Hosts: []string{"127.0.0.1", "localhost"}, Clients: []string{"gateway"},
		CAValidity: 10 * 365 * 24 * time.Hour, LeafValidity: 90 * 24 * time.Hour, RenewBefore: 30 * 24 * time.Hour}
	for _, r := range regions {
		old.Servers = append(old.Servers, "region-"+r)
	}
	if _, err := d.Ensure(old, time.Now()); err != nil {
		t.Fatal(err)
	}
	kept := map[string][]byte{}
	for _, f := range []string{d.CAFile(), d.CAKeyFile(), d.CertFile("gateway"), d.KeyFile("gateway"), d.CertFile("region-eu-west-1"), d.KeyFile("region-us-east-1")} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		kept[f] = b
	}
	var out, errb bytes.Buffer
	want := "issued analytics, exporter-eu-west-1, exporter-eu-central-1, exporter-us-east-1 in"
	if code := run([]string{"pki", "init", "--dir", string(d)}, &out, &errb); code != 0 || !strings.Contains(out.String(), want) {
		t.Fatalf("exit %d: %q%s, want %q", code, out.String(), errb.String(), want)
	}
	for f, b := range kept {
		if now, err := os.ReadFile(f); err != nil || !bytes.Equal(now, b) {
			t.Errorf("%s changed (%v)", f, err)
		}
	}
	// The new certificates do what the stack uses them for.
	srv, err := d.Server("analytics").TLS()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(srv.Certificates[0].Certificate[0])
	if err != nil || leaf.VerifyHostname("127.0.0.1") != nil || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Errorf("analytics' certificate: %v, SANs %v %v, usage %v", err, leaf.IPAddresses, leaf.DNSNames, leaf.ExtKeyUsage)
	}
	for _, r := range regions {
		cc, err := d.Client("exporter-" + r).TLS()
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := cc.GetClientCertificate(nil)
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil || leaf.Subject.CommonName != "exporter-"+r || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
			t.Errorf("exporter-%s: %v, CN %q, usage %v", r, err, leaf.Subject.CommonName, leaf.ExtKeyUsage)
		}
	}
}

func TestFaultsRefusesAnUnknownLatencyModeBeforeTouchingTheStack(t *testing.T) {
	for _, v := range []string{"", "Judge", "measured", "judge\x00"} {
		var out, errb bytes.Buffer
		if code := run([]string{"faults", "gateway-kill", "--latency", v}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--latency must be judge or measure") {
			t.Errorf("--latency %q: exit %d, stderr %q", v, code, errb.String())
		}
	}
}
