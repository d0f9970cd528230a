// Package loginguard is the appliance's IMAP login protection: an HTTP
// server speaking Dovecot 2.3's auth policy protocol
// (auth_policy_server_url), hosted by the supervisor on loopback. It counts
// failed logins per client address and refuses an address once it had the
// spec's limit of failures within the last minute, however many
// connections it spreads them over. Other addresses are never affected,
// so the owner logs in from anywhere else while an attack goes on.
//
// Dovecot asks before checking a password (POST URL?command=allow) and
// reports the outcome after (command=report, with "success" and
// "policy_reject"). An allowed attempt is charged to its address at once,
// before the password is checked, and given back when the report says it
// succeeded: so 20 parallel connections cannot all slip past the limit
// while their first passwords are being checked. The answer to allow is
// {"status":0} (go on) or {"status":-1,"msg":...} (refuse).
//
// Addresses are grouped as Dovecot's peers are: an IPv4 address alone, an
// IPv6 address by its /64 (one host usually owns a whole /64). Memory is
// bounded: at most MaxClients addresses are tracked, each with at most
// limit timestamps; past that the longest-idle address is forgotten.
//
// DIAGNOSTICS
// The guard logs one line when an address goes over the limit, naming it
// and the limit. A request it cannot read gets HTTP 400, which Dovecot
// treats as "no answer" (the login goes on: auth_policy_reject_on_fail is
// off), and is logged.
//
// SECURITY
// The server listens on 127.0.0.1 only. The request carries the login name
// and client address, never the password (the rendered request attributes
// leave pwhash out).
package loginguard

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"quietmx/internal/atomicfile"
	"quietmx/internal/spec"
)

// Where Dovecot finds the guard, and the nonce its configuration reads.
const (
	Addr      = "127.0.0.1:10993"
	URL       = "http://" + Addr + "/"
	NonceFile = spec.StateDir + "/secrets/auth-policy.nonce"
	// Window is the span failures are counted over.
	Window = time.Minute
	// MaxClients bounds the addresses tracked at once.
	MaxClients = 10000
	// maxBody bounds a request: Dovecot's are a few hundred bytes.
	maxBody = 16 << 10
)

// refusal is what a refused client is told (Dovecot logs it with
// auth_verbose; the client sees Dovecot's usual failure).
const refusal = "too many failed logins from this address; try again later"

// Guard counts failures per address. The zero value is not usable; use New.
type Guard struct {
	limit atomic.Int64 // failures per Window; 0 = off
	now   func() time.Time
	logf  func(format string, args ...any)
	max   int

	mu      sync.Mutex
	clients map[netip.Prefix]*client
}

// client is one address group: the times of its charged attempts, oldest
// first, at most limit of them (older ones cannot matter).
type client struct {
	times   []time.Time
	last    time.Time // last activity, for eviction
	blocked bool      // logged as over the limit, until it falls back under
}

// New returns a guard allowing limit failures per Window per address (0 =
// no limit); logf receives its one-line notices.
func New(limit int, logf func(format string, args ...any)) *Guard {
	g := &Guard{now: time.Now, logf: logf, max: MaxClients, clients: map[netip.Prefix]*client{}}
	g.SetLimit(limit)
	return g
}

// SetLimit changes the limit (a new spec); counts already made stay.
func (g *Guard) SetLimit(limit int) { g.limit.Store(int64(limit)) }

// key groups an address: IPv4 alone, IPv6 by /64. ok is false for
// anything that is not an IP address (no address: nothing to count).
func key(remote string) (netip.Prefix, bool) {
	a, err := netip.ParseAddr(remote)
	if err != nil {
		return netip.Prefix{}, false
	}
	a = a.Unmap().WithZone("")
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, err := a.Prefix(bits)
	return p, err == nil
}

// Allow decides one login attempt from remote, and charges it when
// allowed: false means refuse.
func (g *Guard) Allow(remote string) bool {
	limit := int(g.limit.Load())
	k, ok := key(remote)
	if limit <= 0 || !ok {
		return true
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.clients[k]
	if c == nil {
		g.makeRoom(now)
		c = &client{}
		g.clients[k] = c
	}
	c.last = now
	c.expire(now, limit)
	if len(c.times) >= limit {
		if !c.blocked {
			c.blocked = true
			g.logf("loginguard: %s: %d failed logins within %v: refusing its logins until they age out", show(k), limit, Window)
		}
		return false
	}
	c.blocked = false
	c.times = append(c.times, now)
	return true
}

// Report records the outcome of an attempt Allow let through: a success
// gives its charge back; a failure keeps it. An attempt the guard refused
// (policyReject) was never charged.
func (g *Guard) Report(remote string, success, policyReject bool) {
	k, ok := key(remote)
	if !ok || !success || policyReject {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.clients[k]; c != nil && len(c.times) > 0 {
		c.times = c.times[:len(c.times)-1]
	}
}

// expire drops the times that left the window, and any beyond the limit.
func (c *client) expire(now time.Time, limit int) {
	i := 0
	for i < len(c.times) && now.Sub(c.times[i]) >= Window {
		i++
	}
	if n := len(c.times) - i; n > limit {
		i += n - limit
	}
	if i > 0 {
		c.times = append(c.times[:0], c.times[i:]...)
	}
}

// makeRoom keeps the table under g.max before an address is added: first
// every address with nothing left in the window goes, then, if the table
// is still full, the longest idle one.
func (g *Guard) makeRoom(now time.Time) {
	if len(g.clients) < g.max {
		return
	}
	var oldest netip.Prefix
	var oldestAt time.Time
	for k, c := range g.clients {
		if len(c.times) == 0 || now.Sub(c.times[len(c.times)-1]) >= Window {
			delete(g.clients, k)
			continue
		}
		if oldestAt.IsZero() || c.last.Before(oldestAt) {
			oldest, oldestAt = k, c.last
		}
	}
	if len(g.clients) >= g.max {
		delete(g.clients, oldest)
	}
}

// Tracked is how many address groups the guard holds now.
func (g *Guard) Tracked() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.clients)
}

func show(k netip.Prefix) string {
	if k.Addr().Is4() {
		return k.Addr().String()
	}
	return k.String()
}

// request is the JSON Dovecot posts, as rendered by
// auth_policy_request_attributes (plus success and policy_reject on
// reports). Unknown fields are ignored.
type request struct {
	Login        string `json:"login"`
	Remote       string `json:"remote"`
	Protocol     string `json:"protocol"`
	Success      bool   `json:"success"`
	PolicyReject bool   `json:"policy_reject"`
}

type response struct {
	Status int    `json:"status"`
	Msg    string `json:"msg,omitempty"`
}

// ServeHTTP answers Dovecot's policy requests.
func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	var req request
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	if err := dec.Decode(&req); err != nil {
		g.logf("loginguard: unreadable %s request: %v", r.URL.Query().Get("command"), err)
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var resp response
	switch cmd := r.URL.Query().Get("command"); cmd {
	case "allow":
		if !g.Allow(req.Remote) {
			resp = response{Status: -1, Msg: refusal}
		}
	case "report":
		g.Report(req.Remote, req.Success, req.PolicyReject)
	default:
		g.logf("loginguard: unknown command %q", cmd)
		http.Error(w, "unknown command", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// Serve runs the guard's HTTP server on addr until Close. It returns once
// the listener is open, or its error.
func (g *Guard) Serve(addr string) (*Server, error) {
	srv := &http.Server{
		Addr:              addr,
		Handler:           g,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("loginguard: %w", err)
	}
	s := &Server{srv: srv, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// Server is a running guard.
type Server struct {
	srv  *http.Server
	addr string
	done chan error
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.addr }

// Done delivers the server's end: nil after Close, an error if it failed.
func (s *Server) Done() <-chan error { return s.done }

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }

// EnsureNonce makes the nonce file Dovecot's configuration reads
// (auth_policy_hash_nonce = <file) exist: 32 random bytes in hex, mode
// 0600, made once and kept. An existing file is left alone.
func EnsureNonce(path string, random io.Reader) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("loginguard: nonce: %w", err)
	}
	var b [32]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		return fmt.Errorf("loginguard: nonce: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("loginguard: nonce: %w", err)
	}
	if err := atomicfile.Write(path, []byte(fmt.Sprintf("%x", b)), 0o600); err != nil {
		return fmt.Errorf("loginguard: nonce: %w", err)
	}
	return nil
}
