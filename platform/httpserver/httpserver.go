// Package httpserver runs an http.Server with the timeouts a public endpoint needs and a
// graceful shutdown that lets in-flight requests finish.
package httpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server is one HTTP listener.
type Server struct {
	Name    string
	Addr    string
	Handler http.Handler
	Log     *slog.Logger
	// Drain is how long Shutdown waits for in-flight requests.
	Drain time.Duration
	// Listener, when set, is used instead of listening on Addr (tests pass ":0" listeners).
	Listener net.Listener
	// BeforeShutdown runs when ctx ends, before the listener closes: leave discovery and fail
	// readiness there, then ReadyDelay passes so load balancers stop sending first.
	BeforeShutdown func()
	ReadyDelay     time.Duration
	// TLS, when set, serves HTTPS on the listener with it.
	TLS *tls.Config
}

// Run serves until ctx ends, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	srv := &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// No WriteTimeout: long-lived streams (SSE) set their own deadlines per write through
		// http.ResponseController; ordinary handlers are bounded by their contexts.
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: serverHeaderBytes,
		BaseContext:    func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	ln := s.Listener
	if ln == nil {
		var err error
		ln, err = net.Listen("tcp", s.Addr)
		if err != nil {
			return fmt.Errorf("%s: listening on %s: %w", s.Name, s.Addr, err)
		}
	}
	if s.TLS != nil {
		ln = tls.NewListener(ln, s.TLS)
		srv.TLSConfig = s.TLS
		// A refused handshake (no or a bad client certificate) is logged by the server
		// itself; route it through slog instead of the standard logger.
		if s.Log != nil {
			srv.ErrorLog = slog.NewLogLogger(s.Log.Handler(), slog.LevelWarn)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if s.Log != nil {
		s.Log.Info("http server listening", "server", s.Name, "addr", ln.Addr().String())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("%s: %w", s.Name, err)
	case <-ctx.Done():
	}
	if s.BeforeShutdown != nil {
		s.BeforeShutdown()
	}
	time.Sleep(s.ReadyDelay)
	drain := s.Drain
	if drain == 0 {
		drain = 20 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("%s: shutdown: %w", s.Name, err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s: %w", s.Name, err)
	}
	return nil
}
