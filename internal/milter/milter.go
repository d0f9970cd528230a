// Package milter is the appliance's mail filter for Postfix (the milter
// protocol): it sees the SMTP connection and the whole message in every
// delivery mode, runs the sender checks of package authres at the end of
// DATA, removes forged Authentication-Results fields that carry our host
// name, and adds the one Authentication-Results field of its own.
//
// THE FIRST LAW
// The filter never delays a message and never refuses one because of its
// own trouble: a DNS failure is written down as temperror; a panic in any
// callback is logged and the message is accepted unchanged. The only
// refusal is the owner's: 550 at the end of DATA when every recipient's
// policy asks for it (authres.Decision), which is a refusal before
// acceptance, never a bounce. Postfix must run it with
// milter_default_action = accept, so that an unreachable filter does not
// delay mail either.
package milter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"time"

	gomilter "github.com/d--j/go-milter"

	"quietmx/internal/authres"
)

// Config is the filter's settings.
type Config struct {
	// Hostname is the authserv-id written into the header and the name
	// whose incoming Authentication-Results fields are forgeries.
	Hostname string
	// Checker runs the checks (its Resolver and Timeout).
	Checker authres.Checker
	// Policy gives one recipient's settings (the owner's spec and rule
	// file decide); nil means SPF only and deliver, for everyone.
	Policy func(rcpt string) authres.Policy
	// MaxMessageBytes caps what is held in memory per message for DKIM;
	// a larger message gets SPF only (logged). 0: DefaultMaxMessageBytes.
	MaxMessageBytes int
	// IdleTimeout is how long Postfix may stay silent on a connection
	// (it keeps one per SMTP session). 0: DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// Defaults for Config.
const (
	DefaultMaxMessageBytes = 64 << 20
	DefaultIdleTimeout     = 10 * time.Minute
	shutdownGrace          = 5 * time.Second
)

// The protocol steps the filter asks Postfix for, and its answers: it
// decides only at the end of the message, so every earlier step is sent
// without waiting for a reply.
const (
	wantProtocol = gomilter.OptNoUnknown | gomilter.OptNoData | gomilter.OptHeaderLeadingSpace |
		gomilter.OptNoConnReply | gomilter.OptNoHeloReply | gomilter.OptNoMailReply | gomilter.OptNoRcptReply |
		gomilter.OptNoHeaderReply | gomilter.OptNoEOHReply | gomilter.OptNoBodyReply | gomilter.OptNoUnknownReply | gomilter.OptNoDataReply
	needActions = gomilter.OptAddHeader | gomilter.OptChangeHeader
)

// Serve answers milter connections on ln until ctx ends (then it waits up
// to a few seconds for messages under way) or ln fails.
func Serve(ctx context.Context, ln net.Listener, cfg Config, log *slog.Logger) error {
	if cfg.Hostname == "" {
		return errors.New("milter: no host name for Authentication-Results")
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := gomilter.NewServer(
		gomilter.WithDynamicMilter(func(version uint32, action gomilter.OptAction, protocol gomilter.OptProtocol, maxData gomilter.DataSize) gomilter.Milter {
			return &session{cfg: &cfg, log: log, leadingSpace: protocol&gomilter.OptHeaderLeadingSpace != 0}
		}),
		gomilter.WithNegotiationCallback(negotiate),
		gomilter.WithReadTimeout(cfg.IdleTimeout),
		gomilter.WithWriteTimeout(30*time.Second),
	)
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				_ = srv.Close()
			}
		case <-done:
		}
	}()
	err := srv.Serve(ln)
	close(done)
	if errors.Is(err, gomilter.ErrServerClosed) || ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("milter: %w", err)
}

// ListenAndServe is Serve on a Postfix-style address: "unix:/path" or
// "inet:host:port" (a bare "host:port" is inet).
func ListenAndServe(ctx context.Context, address string, cfg Config, log *slog.Logger) error {
	network, addr := "tcp", strings.TrimPrefix(address, "inet:")
	if p, ok := strings.CutPrefix(address, "unix:"); ok {
		network, addr = "unix", p
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return fmt.Errorf("milter: listen on %s: %w", address, err)
	}
	return Serve(ctx, ln, cfg, log)
}

// negotiate takes what the MTA offers of what the filter wants, instead of
// go-milter's default all-or-nothing: without a no-reply option the filter
// simply replies, and without the leading-space option it restores the
// space itself (session.Header). Only the two header actions are needed.
func negotiate(mtaVersion, milterVersion uint32, mtaActions, _ gomilter.OptAction, mtaProtocol, _ gomilter.OptProtocol, offered gomilter.DataSize) (uint32, gomilter.OptAction, gomilter.OptProtocol, gomilter.DataSize, error) {
	if mtaActions&needActions != needActions {
		return 0, 0, 0, 0, fmt.Errorf("milter: the MTA does not allow adding and changing headers (offers %v)", mtaActions)
	}
	return min(mtaVersion, milterVersion), needActions, wantProtocol & mtaProtocol, offered, nil
}

// session is one MTA connection: one SMTP session, possibly several
// messages.
type session struct {
	gomilter.NoOpMilter
	cfg          *Config
	log          *slog.Logger
	leadingSpace bool

	env      authres.Envelope
	policies []authres.Policy // one per recipient, looked up at RCPT TO
	msg      bytes.Buffer
	// arCount counts the Authentication-Results fields seen; forged holds
	// the 1-based indexes (per field name, as ChangeHeader counts) of
	// those that carry our host name.
	arCount int
	forged  []int
	tooBig  bool
	broken  error // a panic earlier in this message: accept it unchanged
}

// guard turns a panic in a callback into a logged error: the message
// then goes through unchanged. Never a tempfail or a refusal for our bug.
func (s *session) guard(step string, resp **gomilter.Response) {
	if r := recover(); r != nil {
		*resp = gomilter.RespContinue
		s.broken = fmt.Errorf("panic in %s: %v", step, r)
		s.log.Error("milter: panic; the message is accepted unchanged", "step", step, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	}
}

func (s *session) reset() {
	s.env.MailFrom, s.policies, s.arCount, s.forged, s.tooBig, s.broken = "", nil, 0, nil, false, nil
	s.msg.Reset()
}

func (s *session) NewConnection(gomilter.Modifier) error {
	s.env = authres.Envelope{}
	s.reset()
	return nil
}

func (s *session) Connect(host, family string, port uint16, addr string, m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("connect", &resp)
	s.env.ClientIP = nil
	if family == "tcp4" || family == "tcp6" {
		s.env.ClientIP = net.ParseIP(addr)
	}
	return gomilter.RespContinue, nil
}

func (s *session) Helo(name string, m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("helo", &resp)
	s.env.Helo = name
	return gomilter.RespContinue, nil
}

func (s *session) MailFrom(from, esmtpArgs string, m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("mail", &resp)
	s.reset()
	s.env.MailFrom = gomilter.RemoveAngle(from)
	return gomilter.RespContinue, nil
}

func (s *session) RcptTo(rcpt, esmtpArgs string, m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("rcpt", &resp)
	p := authres.Policy{}
	if s.cfg.Policy != nil {
		p = s.cfg.Policy(gomilter.RemoveAngle(rcpt))
	}
	s.policies = append(s.policies, p)
	return gomilter.RespContinue, nil
}

// Header rebuilds the raw field ("Name: value" with its folding, CRLF line
// ends), which DKIM's simple canonicalization needs byte for byte.
func (s *session) Header(name, value string, m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("header", &resp)
	if strings.EqualFold(name, authres.Header) {
		s.arCount++
		if authres.Ours(value, s.cfg.Hostname) {
			s.forged = append(s.forged, s.arCount)
		}
	}
	if !s.leadingSpace && (value == "" || value[0] != '\t') {
		// The MTA ate the one space after the colon; put it back.
		value = " " + value
	}
	value = strings.ReplaceAll(strings.ReplaceAll(value, "\r\n", "\n"), "\n", "\r\n")
	s.add(name + ":" + value + "\r\n")
	return gomilter.RespContinue, nil
}

func (s *session) Headers(m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("end of header", &resp)
	s.add("\r\n")
	return gomilter.RespContinue, nil
}

func (s *session) BodyChunk(chunk []byte, m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("body", &resp)
	s.add(string(chunk))
	return gomilter.RespContinue, nil
}

func (s *session) add(p string) {
	if s.tooBig {
		return
	}
	if s.msg.Len()+len(p) > s.cfg.MaxMessageBytes {
		s.tooBig = true
		s.msg.Reset()
		return
	}
	s.msg.WriteString(p)
}

func (s *session) Abort(gomilter.Modifier) error {
	s.reset()
	return nil
}

// EndOfMessage decides. The checks and the refusal decision come first;
// the header changes are sent only when all is known, so a panic leaves
// the message untouched.
func (s *session) EndOfMessage(m gomilter.Modifier) (resp *gomilter.Response, err error) {
	start := time.Now()
	queueID := m.Get(gomilter.MacroQueueId)
	defer s.reset()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("milter: panic; the message is accepted unchanged", "queue_id", queueID, "step", "end of message", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			resp, err = gomilter.RespAccept, nil
		}
	}()
	if s.broken != nil {
		s.log.Error("milter: accepted unchanged after an earlier failure", "queue_id", queueID, "error", s.broken.Error())
		return gomilter.RespAccept, nil
	}
	d := s.decide(context.Background())
	attrs := []any{"queue_id", queueID, "client", ipString(s.env.ClientIP), "sender", s.env.MailFrom,
		"spf", d.verdict.SPF, "dkim", d.verdict.DKIM, "dmarc", d.verdict.DMARC, "policy", d.verdict.Policy,
		"forged_removed", len(s.forged), "took", time.Since(start).Round(time.Microsecond).String()}
	if s.tooBig {
		attrs = append(attrs, "note", fmt.Sprintf("larger than %d bytes: SPF only", s.cfg.MaxMessageBytes))
	}
	if d.refuse {
		s.log.Info("milter: refused (DMARC fail, the domain asks to reject, every recipient asked to refuse)", attrs...)
		return gomilter.RejectWithCodeAndReason(550, fmt.Sprintf("5.7.1 DMARC: %s does not authorize this message and asks receivers to reject it", d.verdict.From))
	}
	// Delete from the last to the first: Postfix renumbers the fields
	// after a deleted one, Sendmail does not; this order suits both.
	for i := len(s.forged) - 1; i >= 0; i-- {
		if err := m.ChangeHeader(s.forged[i], authres.Header, ""); err != nil {
			return nil, fmt.Errorf("milter: remove a forged %s: %w", authres.Header, err)
		}
	}
	value := fold(d.header)
	if s.leadingSpace {
		value = " " + value
	}
	if err := m.InsertHeader(0, authres.Header, value); err != nil {
		return nil, fmt.Errorf("milter: add %s: %w", authres.Header, err)
	}
	s.log.Info("milter: accepted", attrs...)
	return gomilter.RespAccept, nil
}

type decision struct {
	verdict authres.Verdict
	header  string
	refuse  bool
}

// decide runs the checks the recipients' policies ask for.
func (s *session) decide(ctx context.Context) decision {
	methods, _ := authres.Decision(s.policies, nil)
	msg := s.msg.Bytes()
	if s.tooBig {
		methods, msg = authres.Methods{}, nil
	}
	rep := s.cfg.Checker.Check(ctx, s.env, msg, methods)
	_, refuse := authres.Decision(s.policies, &rep.Verdict)
	return decision{verdict: rep.Verdict, header: rep.Header(s.cfg.Hostname), refuse: refuse}
}

// fold breaks the field after each "; " so that no line grows past what
// mail software accepts (RFC 5322: 998).
func fold(v string) string {
	return strings.ReplaceAll(v, "; ", ";\n\t")
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}
