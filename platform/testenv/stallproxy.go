package testenv

import (
	"net"
	"sync"
	"testing"
)

// StallProxy forwards TCP connections to a server and can stall them: while stalled, no byte
// moves either way (new connections are accepted and wait too), so the server looks connected
// but never answers, as a paused process, a long GC or a node busy starting does. Point a
// client at Addr instead of the server.
type StallProxy struct {
	// Addr is the proxy's host:port on loopback.
	Addr string

	target string
	ln     net.Listener

	mu      sync.Mutex
	cond    *sync.Cond
	stalled bool
	closed  bool
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

// StartStallProxy starts a proxy to target (host:port), closed with the test.
func StartStallProxy(t testing.TB, target string) *StallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("stall proxy: %v", err)
	}
	p := &StallProxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Stall holds every byte in flight, both ways, until Resume.
func (p *StallProxy) Stall() { p.set(true) }

// Resume lets bytes move again.
func (p *StallProxy) Resume() { p.set(false) }

func (p *StallProxy) set(stalled bool) {
	p.mu.Lock()
	p.stalled = stalled
	p.mu.Unlock()
	p.cond.Broadcast()
}

// wait blocks while the proxy is stalled; it reports false once the proxy is closed.
func (p *StallProxy) wait() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.stalled && !p.closed {
		p.cond.Wait()
	}
	return !p.closed
}

func (p *StallProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *StallProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(in) {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if !p.wait() {
				return
			}
			out, err := net.Dial("tcp", p.target)
			if err != nil {
				in.Close()
				return
			}
			if !p.track(out) {
				in.Close()
				return
			}
			p.wg.Add(2)
			go p.pipe(out, in)
			go p.pipe(in, out)
		}()
	}
}

// pipe copies from src to dst, holding each chunk while the proxy is stalled; either side
// closing closes both.
func (p *StallProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.wait() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a closed connection: done either way
		}
	}
}

func (p *StallProxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.cond.Broadcast()
	p.ln.Close()
	p.wg.Wait()
}
