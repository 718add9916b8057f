package dispatch

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/region/notify"
)

// A crash between the server's 250 and the sent mark repeats the send (a SIGKILLed region's
// restarted consumer finds no mark), so Send returns on the 250: the QUIT's round trip is not
// in that window. The server here takes the message, then answers QUIT only when told.
func TestSMTPSendReturnsOnTheMessagesAcceptanceNotOnTheQuitsAnswer(t *testing.T) {
	srv := newQuietQuitSMTP(t)
	p, err := newSMTP(SMTPConfig{Addr: srv.addr, From: "noreply@herald.example", CAFile: srv.caFile}, "smtp", "zz-test-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type result struct {
		r   Receipt
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := p.Send(ctx, sampleTask(notify.Email), "user@example.com")
		done <- result{r, err}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			t.Fatalf("send: %v", res.err)
		}
		if res.r.MessageID != "Q1D" || res.r.Status != "250" {
			t.Fatalf("receipt %+v, want the server's queue id Q1D and 250", res.r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Send did not return while the server held its answer to QUIT: the QUIT is in the window before the sent mark")
	}
	close(srv.answerQuit)
	select {
	case <-srv.quitAnswered: // the QUIT still went out, in the background
	case <-time.After(20 * time.Second):
		t.Fatal("the server never got the QUIT")
	}
}

type quietQuitSMTP struct {
	addr, caFile string
	answerQuit   chan struct{}
	quitAnswered chan struct{}
}

// newQuietQuitSMTP starts an SMTP server with STARTTLS (its CA in caFile) that accepts one
// message and answers QUIT once answerQuit is closed.
func newQuietQuitSMTP(t *testing.T) *quietQuitSMTP {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smtp test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	s := &quietQuitSMTP{caFile: filepath.Join(t.TempDir(), "ca.pem"), answerQuit: make(chan struct{}), quitAnswered: make(chan struct{})}
	if err := os.WriteFile(s.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s.addr = ln.Addr().String()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(2 * time.Minute))
		var c net.Conn = conn
		r := bufio.NewReader(c)
		say := func(line string) { _, _ = c.Write([]byte(line + "\r\n")) }
		say("220 test ESMTP")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			cmd := strings.ToUpper(strings.TrimSpace(line))
			switch {
			case strings.HasPrefix(cmd, "EHLO"):
				if _, ok := c.(*tls.Conn); ok {
					say("250 test")
				} else {
					say("250-test")
					say("250 STARTTLS")
				}
			case cmd == "STARTTLS":
				say("220 go ahead")
				tc := tls.Server(conn, cfg)
				if tc.Handshake() != nil {
					return
				}
				c, r = tc, bufio.NewReader(tc)
			case strings.HasPrefix(cmd, "MAIL"), strings.HasPrefix(cmd, "RCPT"):
				say("250 ok")
			case cmd == "DATA":
				say("354 end with .")
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if l == ".\r\n" {
						break
					}
				}
				say("250 2.0.0 Ok: queued as Q1D")
			case cmd == "QUIT":
				<-s.answerQuit
				say("221 bye")
				close(s.quitAnswered)
				return
			default:
				say("502 not here")
			}
		}
	}()
	return s
}
