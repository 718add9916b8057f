package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/pki"
)

// regionPlaceholder is what region_tls.server_name names the region with.
const regionPlaceholder = "{region}"

func (r RegionTLSConfig) validateServerName() error {
	if r.ServerName == "" {
		return nil
	}
	if strings.Count(r.ServerName, regionPlaceholder) != 1 {
		return config.Errorf("server_name", r.ServerName, "must hold %s exactly once (each region is verified by its own name)", regionPlaceholder)
	}
	if !pki.IsDNSName(r.regionServerName("eu-west-1")) {
		return config.Errorf("server_name", r.ServerName, "is not a lower-case DNS name once %s is replaced", regionPlaceholder)
	}
	return nil
}

// regionServerName is the name the certificate of region must carry.
func (r RegionTLSConfig) regionServerName(region string) string {
	return strings.Replace(r.ServerName, regionPlaceholder, region, 1)
}

// regionDialer opens the TLS connections to region endpoints when region_tls.server_name is
// set: each connection verifies the region's certificate against the name of the region that
// discovery lists the address under. An address discovery does not list is refused before
// anything is sent.
type regionDialer struct {
	tls              *tls.Config
	names            RegionTLSConfig
	regionOf         func(addr string) (string, bool)
	dialer           *net.Dialer
	handshakeTimeout time.Duration
}

func (d *regionDialer) DialTLSContext(ctx context.Context, network, addr string) (net.Conn, error) {
	region, ok := d.regionOf(addr)
	if !ok {
		return nil, fmt.Errorf("dialling %s: no region in discovery has this endpoint", addr)
	}
	cfg := d.tls.Clone()
	cfg.ServerName = d.names.regionServerName(region)
	ctx, cancel := context.WithTimeout(ctx, d.dialer.Timeout+d.handshakeTimeout)
	defer cancel()
	conn, err := (&tls.Dialer{NetDialer: d.dialer, Config: cfg}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("region %s at %s (verified as %s): %w", region, addr, cfg.ServerName, err)
	}
	return conn, nil
}
