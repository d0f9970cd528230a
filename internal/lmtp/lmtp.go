// Package lmtp is `altpostlocal serve`: the delivery agent as a resident
// LMTP server (RFC 2033) on a unix socket, which Postfix's lmtp(8) client
// reaches. Each recipient of each message goes through delivery.Run, the
// very per-recipient path of the pipe agent, with the rules kept loaded
// (rules.Live), and is logged with delivery.Log: the same routing, the same
// actions, the same Maildir writes and the same line.
//
// Never a bounce: every per-recipient reply is 250 or a 4xx deferral
// (Postfix keeps the message and retries), whatever happens: an error, a
// panic, a deadline, a message larger than the cap, no rules at all. LHLO
// offers no SIZE (Postfix bounces a message above an advertised SIZE), and
// each message has a deadline well under Postfix's lmtp_data_done_timeout,
// after which the recipients not yet answered get 451 even if an action
// is stuck. A crash of the daemon leaves Postfix without an answer: it
// defers too.
//
// DIAGNOSTICS
// One delivery line per recipient (delivery.Log); daemon events (reloads,
// refused rule files, panics) through Config.Logf.
package lmtp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"runtime/debug"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"quietmx/internal/delivery"
	"quietmx/internal/message"
)

// Defaults.
const (
	// DefaultDeadline is the whole message's limit: with Grace it stays
	// far under Postfix's lmtp_data_done_timeout (600s), past which Postfix
	// would give up on the answers.
	DefaultDeadline = delivery.DefaultDeadline
	// DefaultGrace is how long a recipient still running past the deadline
	// is waited for before it is answered 451 anyway.
	DefaultGrace = 15 * time.Second
	// idleTimeout closes a connection Postfix left idle (its connection
	// cache holds them a few seconds only).
	idleTimeout = 5 * time.Minute
	// maxRecipients is advertised as LIMITS RCPTMAX, above the transport's
	// recipient limit in main.cf; more get 452 (Postfix retries them).
	maxRecipients = 1000
)

// Config configures a Server.
type Config struct {
	// Delivery is the pipe agent's configuration, Rules set: the rules
	// stay loaded between messages.
	Delivery delivery.Config
	Log      *slog.Logger // the delivery lines
	Logf     func(format string, args ...any)
	Hostname string        // in the greeting
	MaxSize  int64         // largest message accepted (bytes); 0: message.MaxSize
	Deadline time.Duration // per message; 0: DefaultDeadline
	Grace    time.Duration // 0: DefaultGrace

	// deliver is delivery.Run; tests replace it to panic or hang.
	deliver func(context.Context, delivery.Config, delivery.Request) delivery.Result
}

// Server is the LMTP server.
type Server struct {
	cfg  Config
	smtp *smtp.Server

	mu      sync.Mutex
	closing bool
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = message.MaxSize
	}
	if cfg.Deadline <= 0 {
		cfg.Deadline = DefaultDeadline
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if cfg.deliver == nil {
		cfg.deliver = delivery.Run
	}
	s := &Server{cfg: cfg}
	srv := smtp.NewServer(s)
	srv.LMTP = true
	srv.Domain = cfg.Hostname
	// 0: go-smtp enforces no size (it would answer 552); the cap is ours,
	// and answers 4xx.
	srv.MaxMessageBytes = 0
	srv.MaxRecipients = maxRecipients
	// Postfix sends SMTPUTF8 mail only to a server that offers it, and
	// bounces it otherwise.
	srv.EnableSMTPUTF8 = true
	srv.ReadTimeout = idleTimeout
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = logfLogger(cfg.Logf)
	s.smtp = srv
	return s
}

// Serve answers LMTP on l until Shutdown. The connections pass through a
// filter that removes SIZE from the LHLO reply.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		l.Close()
		return nil
	}
	err := s.smtp.Serve(noSizeListener{l})
	s.mu.Lock()
	closing = s.closing
	s.mu.Unlock()
	if closing || errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting and waits until every connection has ended
// (Postfix closes them once its deliveries are answered), then, once ctx
// ends, closes the rest: Postfix defers whatever was not answered.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	err := s.smtp.Shutdown(ctx)
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil // already shut down
	}
	if err != nil {
		s.smtp.Close()
		return fmt.Errorf("lmtp: connections still open at shutdown (Postfix retries what they had): %w", err)
	}
	return nil
}

// NewSession implements smtp.Backend. Without any usable rules every
// message would defer: say so at LHLO, once per connection.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	if s.cfg.Delivery.Rules != nil {
		if _, err := s.cfg.Delivery.Rules.Current(); err != nil {
			return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "no usable rules, try again later"}
		}
	}
	return &session{s: s}, nil
}

// tempFail is the reply for every failure: 451, Postfix retries.
func tempFail(why string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: why}
}

type session struct {
	s      *Server
	sender string
	rcpts  []string
}

func (ss *session) Reset()        { ss.sender, ss.rcpts = "", nil }
func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.sender, ss.rcpts = from, nil
	return nil
}

// Rcpt accepts every recipient: refusals belong at SMTP time (the
// policy service), never after Postfix has taken the message.
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

// Data is only used outside LMTP mode, which this server never runs in.
func (ss *session) Data(io.Reader) error { return tempFail("LMTP only") }

// LMTPData delivers the message to each recipient in turn and answers
// each: 250 when the message was delivered, rescued or dropped on
// purpose, 451 when it is deferred. Every path out answers 4xx for the
// recipients not answered yet.
func (ss *session) LMTPData(r io.Reader, status smtp.StatusCollector) (err error) {
	s := ss.s
	start := time.Now()
	answered := 0
	defer func() {
		if p := recover(); p != nil {
			s.cfg.Logf("panic delivering a message from <%s>: %v\n%s", ss.sender, p, debug.Stack())
			rest := ss.rcpts[min(answered, len(ss.rcpts)):]
			delivery.Log(s.cfg.Log, deferAll(ss.sender, "", rest, fmt.Errorf("panic: %v", p)), time.Since(start))
			err = tempFail("internal error, try again later") // fills the rest
		}
	}()
	msg, err := readMessage(r, s.cfg.MaxSize)
	if err != nil {
		delivery.Log(s.cfg.Log, deferAll(ss.sender, "", ss.rcpts, err), time.Since(start))
		return tempFail(err.Error())
	}
	queueID := message.QueueID(msg)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Deadline)
	defer cancel()
	// Past the deadline plus the grace time no recipient is waited for:
	// every answer is in well before Postfix's own timeout.
	late, stop := context.WithTimeout(context.Background(), s.cfg.Deadline+s.cfg.Grace)
	defer stop()
	cfg := s.cfg.Delivery
	cfg.Deadline = 0 // ctx carries the message's deadline
	for _, rcpt := range ss.rcpts {
		req := delivery.Request{Sender: ss.sender, Recipients: []string{rcpt}, QueueID: queueID, Message: msg}
		status.SetStatus(rcpt, s.recipient(ctx, late.Done(), cfg, req))
		answered++
	}
	return nil
}

// recipient delivers to one recipient and returns its reply (nil: 250).
// It waits for delivery.Run until late fires (the message's deadline plus
// the grace time), no longer: a stuck action then gets 451 while it goes
// on in the background (should it still deliver, the retry makes a whole
// duplicate, never a loss), and its line is logged when it ends.
func (s *Server) recipient(ctx context.Context, late <-chan struct{}, cfg delivery.Config, req delivery.Request) error {
	start := time.Now()
	select {
	case <-late:
		err := errors.New("not tried: the message's deadline and grace time passed while earlier recipients ran")
		delivery.Log(s.cfg.Log, deferAll(req.Sender, req.QueueID, req.Recipients, err), 0)
		return tempFail("delivery timed out, try again later")
	default:
	}
	done := make(chan delivery.Result, 1)
	go func() {
		var res delivery.Result
		delivered := false
		defer func() {
			// delivery.Run recovers its own panics; this covers the rest
			// (logging, a replaced deliver function): a panic here must
			// not end the daemon.
			if p := recover(); p != nil {
				s.cfg.Logf("panic delivering to <%s>: %v\n%s", req.Recipients[0], p, debug.Stack())
				if !delivered {
					res = deferAll(req.Sender, req.QueueID, req.Recipients, fmt.Errorf("panic: %v", p))
					delivery.Log(s.cfg.Log, res, time.Since(start))
				}
			}
			done <- res
		}()
		res = s.cfg.deliver(ctx, cfg, req)
		delivered = true
		delivery.Log(s.cfg.Log, res, time.Since(start))
	}()
	select {
	case res := <-done:
		return reply(res)
	case <-late:
		select {
		case res := <-done: // finished just in time
			return reply(res)
		default:
		}
		err := fmt.Errorf("still running %v after the message deadline: answered 451, the retry may duplicate it", s.cfg.Grace)
		delivery.Log(s.cfg.Log, deferAll(req.Sender, req.QueueID, req.Recipients, err), time.Since(start))
		return tempFail("delivery timed out, try again later")
	}
}

// deferAll is the Result of recipients deferred before or outside
// delivery.Run: the same records the pipe agent logs for a failed call.
func deferAll(sender, queueID string, rcpts []string, err error) delivery.Result {
	return delivery.Call{Sender: sender, QueueID: queueID, Args: rcpts}.Failed(err)
}

// reply maps an Outcome to the LMTP reply: the only place one is chosen.
func reply(res delivery.Result) error {
	switch res.Outcome {
	case delivery.Delivered, delivery.Rescued, delivery.Dropped, delivery.Lost:
		return nil
	}
	why := "deferred, try again later"
	if res.Err != nil {
		why = "deferred: " + firstLine(res.Err.Error())
	}
	return tempFail(why)
}

func firstLine(s string) string {
	if i := bytes.IndexByte([]byte(s), '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// readMessage reads the DATA (already dot-unstuffed) up to max bytes and
// gives it the line endings pipe(8) gives the agent: LMTP carries CRLF,
// pipe(8) LF, and the Maildir files must be the same either way.
func readMessage(r io.Reader, max int64) ([]byte, error) {
	var b bytes.Buffer
	n, err := b.ReadFrom(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("read message: %w", err)
	}
	if n > max {
		return nil, fmt.Errorf("message larger than %d bytes", max)
	}
	return message.FromWire(b.Bytes()), nil
}

// noSizeListener wraps each connection so that the LHLO reply loses its
// SIZE line: go-smtp always offers SIZE, and Postfix bounces a message
// larger than an advertised SIZE. go-smtp writes each reply line with one
// Write, and with MaxRecipients set the SIZE line is never the last one.
type noSizeListener struct{ net.Listener }

func (l noSizeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return noSizeConn{c}, nil
}

type noSizeConn struct{ net.Conn }

var sizeLine = regexp.MustCompile(`^250-SIZE( [0-9]+)?\r\n$`)

func (c noSizeConn) Write(p []byte) (int, error) {
	if len(p) < 32 && sizeLine.Match(p) {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// logfLogger adapts Logf to go-smtp's Logger.
type logfLogger func(format string, args ...any)

func (l logfLogger) Printf(format string, v ...any) { l(format, v...) }
func (l logfLogger) Println(v ...any)               { l("%s", fmt.Sprintln(v...)) }

// Listen makes the unix socket at path, replacing a stale one left by a
// killed daemon, readable and writable by all: the directory it is in
// decides who may reach it (the appliance makes it vmail:postfix 0750).
// Closing the listener leaves the socket file: a restarted daemon may
// already have made a new one there.
func Listen(path string) (net.Listener, error) {
	if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("lmtp: remove stale socket: %w", err)
		}
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("lmtp: %w", err)
	}
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, fmt.Errorf("lmtp: %w", err)
	}
	return l, nil
}
