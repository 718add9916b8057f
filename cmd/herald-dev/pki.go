package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/herald-notify/herald/platform/cli"
	"github.com/herald-notify/herald/platform/pki"
)

// pkiDir is where the local stack keeps its internal CA and certificates: $HERALD_HOME/pki, or
// .herald/pki.
func pkiDir() pki.Dir {
	if h := os.Getenv("HERALD_HOME"); h != "" {
		return pki.Dir(filepath.Join(h, "pki"))
	}
	return pki.Dir(filepath.Join(".herald", "pki"))
}

// runPKI is herald-dev pki init: a development tool that keeps the local stack's internal CA and
// certificates current (make up runs it): pki.LocalPlan, for the gateway-region and the
// region-analytics hops. A directory from before a certificate was planned gets it; the
// others stay as they are. Production certificates come from the operator's own
// CA (docs/runbook.md); nothing here is needed there.
func runPKI(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "init" {
		return cli.UsageError("usage: herald-dev pki init [--dir DIR] [--regions a,b,c] [--hosts h1,h2]")
	}
	fs := cli.NewFlags("pki init", stderr)
	dir := fs.String("dir", string(pkiDir()), "directory of the CA and certificates")
	regions := fs.String("regions", "eu-west-1,eu-central-1,us-east-1", "regions to issue a server certificate (region-<name>) and an exporter's client certificate (exporter-<name>) for")
	hosts := fs.String("hosts", "127.0.0.1,localhost", "the addresses the regions' and analytics' server certificates are valid for")
	if err := cli.Parse(fs, args[1:]); err != nil {
		return err
	}
	if len(split(*regions)) == 0 || len(split(*hosts)) == 0 {
		return cli.UsageError("--regions and --hosts must name at least one each")
	}
	plan := pki.LocalPlan(split(*regions), split(*hosts))
	issued, err := pki.Dir(*dir).Ensure(plan, time.Now())
	if err != nil {
		return err
	}
	if len(issued) == 0 {
		fmt.Fprintf(stdout, "herald-dev pki: every certificate in %s is current\n", *dir)
		return nil
	}
	fmt.Fprintf(stdout, "herald-dev pki: issued %s in %s\n", strings.Join(issued, ", "), *dir)
	return nil
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
