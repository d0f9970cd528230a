package policy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"quietmx/internal/rules"
)

// DefaultSocket is where the resident agent (altpostlocal serve) answers
// smtpd's check_policy_service, beside its LMTP socket: the directory
// decides who may connect.
const DefaultSocket = "/run/altpostlocal/policy"

// Default timeouts. Postfix closes an idle policy connection after
// smtpd_policy_service_max_idle (300s): waiting longer means the service
// never closes a connection Postfix still counts on.
const (
	DefaultIdleTimeout  = 10 * time.Minute
	DefaultWriteTimeout = 10 * time.Second
)

// Server serves the policy protocol on listeners (a unix socket in the
// appliance). Its zero value is not usable: set Rules.
type Server struct {
	// Rules returns the rules in force for each request, so that a
	// resident daemon can swap them; nil means none are usable (every
	// answer is DUNNO). It must be safe for concurrent use.
	Rules        func() *rules.Set
	Log          *slog.Logger  // nil: slog.Default()
	IdleTimeout  time.Duration // wait for the next request; 0: DefaultIdleTimeout
	WriteTimeout time.Duration // to send a reply; 0: DefaultWriteTimeout

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("policy: server closed")

// Serve accepts connections on ln and answers their requests until Close.
// It always returns a non-nil error: ErrServerClosed after Close.
func (s *Server) Serve(ln net.Listener) error {
	if !s.track(ln) {
		ln.Close()
		return ErrServerClosed
	}
	defer s.untrack(ln)
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && !errors.Is(err, net.ErrClosed) {
				// Out of descriptors and the like: wait, as net/http does,
				// rather than stop answering Postfix.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log().Warn("policy: accept failed; retrying", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("policy: accept: %w", err)
		}
		backoff = 0
		if !s.add(c) {
			c.Close()
			return ErrServerClosed
		}
		go s.serveConn(c)
	}
}

// Close stops every listener and connection and waits for their handlers.
// Postfix reconnects to the next server on the same socket path.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) track(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
	}
	s.listeners[ln] = struct{}{}
	return true
}

func (s *Server) untrack(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
}

func (s *Server) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) remove(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// serveConn answers requests on one connection until the client closes it,
// it idles out, or a request is malformed.
func (s *Server) serveConn(c net.Conn) {
	defer s.remove(c)
	idle := s.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	wt := s.WriteTimeout
	if wt <= 0 {
		wt = DefaultWriteTimeout
	}
	r := bufio.NewReaderSize(c, MaxLine)
	for {
		c.SetReadDeadline(time.Now().Add(idle))
		req, err := ReadRequest(r)
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
			case errors.As(err, &ne) && ne.Timeout():
				s.log().Debug("policy: idle connection closed", "idle", idle)
			default:
				// The protocol's rule: no reply, a warning, disconnect.
				// Postfix then applies default_action (DUNNO).
				s.log().Warn("policy: bad request; disconnecting", "err", err)
			}
			return
		}
		d := s.decide(req)
		c.SetWriteDeadline(time.Now().Add(wt))
		if _, err := c.Write(reply(d.Action)); err != nil {
			s.log().Warn("policy: cannot reply", "err", err, "recipient", d.Recipient)
			return
		}
	}
}

// decide answers one request and logs it. A panic (a bug) is answered
// DUNNO: Postfix accepts and delivery, which has its own safety net,
// decides.
func (s *Server) decide(req Request) (d Decision) {
	defer func() {
		if p := recover(); p != nil {
			s.log().Error("policy: panic while deciding; answering DUNNO", "panic", fmt.Sprint(p), "recipient", req["recipient"])
			d = Decision{Action: Dunno, Recipient: req["recipient"], Why: "panic"}
		}
	}()
	var set *rules.Set
	if s.Rules != nil {
		set = s.Rules()
	}
	d = Decide(set, req)
	s.logDecision(req, d)
	return d
}

// logDecision writes one line per decision: envelope data only.
func (s *Server) logDecision(req Request, d Decision) {
	level, what := slog.LevelDebug, "dunno"
	switch {
	case d.Trial():
		level, what = slog.LevelInfo, "would reject"
	case d.Refusal != "":
		level, what = slog.LevelInfo, "reject"
	}
	log := s.log()
	if !log.Enabled(context.Background(), level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("decision", what),
		slog.String("recipient", d.Recipient),
		slog.String("sender", req["sender"]),
		slog.String("client", req["client_address"]),
		slog.String("key", d.Key),
		slog.String("action", d.Action),
	}
	if q := req["queue_id"]; q != "" {
		attrs = append(attrs, slog.String("queue_id", q))
	}
	if d.Trial() {
		attrs = append(attrs, slog.String("refusal", d.Refusal), slog.String("reject_mode", rules.RejectLog))
	}
	if d.Why != "" {
		attrs = append(attrs, slog.String("why", d.Why))
	}
	log.LogAttrs(context.Background(), level, "policy", attrs...)
}
