package policy_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"quietmx/internal/maillog/maillogtest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"quietmx/internal/policy"
	"quietmx/internal/rules"
)

const refusing = `
extension: "\\+"
aliases:
  old@example.com: {type: reject, text: "This address is no longer in use"}
  spam@example.com: {type: reject}
  me: {type: maildir, value: /m/me}
  to-old: {type: alias, value: old@example.com}
  mixed: [{type: maildir, value: /m/me}, {type: alias, value: old@example.com}]
  "@example.com": {type: maildir, value: /m/catchall}
default: {type: reject, text: "No such user here"}
`

func mustParse(t testing.TB, src string) *rules.Set {
	t.Helper()
	set, fs := rules.Parse("r.yaml", []byte(src))
	if set == nil || fs.HasErrors() {
		t.Fatalf("parse: %v", fs)
	}
	return set
}

type fixture struct {
	srv  *policy.Server
	path string
	log  *maillogtest.Buffer
	done chan error
}

// start serves srv on a unix socket in a short temporary directory (a
// socket path must fit in 108 bytes).
func start(t testing.TB, srv *policy.Server) *fixture {
	t.Helper()
	dir, err := os.MkdirTemp("", "policy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "policy.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{srv: srv, path: path, log: &maillogtest.Buffer{}, done: make(chan error, 1)}
	if srv.Log == nil {
		srv.Log = slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	go func() { f.done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-f.done; !errors.Is(err, policy.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return f
}

func (f *fixture) dial(t testing.TB) *client {
	t.Helper()
	c, err := net.Dial("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{c: c, r: bufio.NewReader(c)}
}

type client struct {
	c net.Conn
	r *bufio.Reader
}

// rcpt is a request as Postfix sends it at RCPT TO.
func rcpt(recipient string) policy.Request {
	return policy.Request{
		"request": "smtpd_access_policy", "protocol_state": "RCPT", "protocol_name": "ESMTP",
		"helo_name": "mx.sender.example", "queue_id": "", "sender": "a@sender.example",
		"recipient": recipient, "recipient_count": "0", "client_address": "192.0.2.1",
		"client_name": "mx.sender.example", "reverse_client_name": "mx.sender.example",
		"instance": "123.456.7", "size": "0", "stress": "",
	}
}

// ask sends one request and reads the action of its reply.
func (c *client) ask(t testing.TB, req policy.Request) string {
	t.Helper()
	if _, err := req.WriteTo(c.c); err != nil {
		t.Fatal(err)
	}
	return c.read(t)
}

func (c *client) read(t testing.TB) string {
	t.Helper()
	line, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the reply: %v", err)
	}
	if empty, err := c.r.ReadString('\n'); err != nil || empty != "\n" {
		t.Fatalf("reply not ended by an empty line: %q %v", empty, err)
	}
	action, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "action=")
	if !ok {
		t.Fatalf("reply %q is not action=...", line)
	}
	return action
}

// closedByServer waits for the server to close the connection, and fails
// if it replies anything first.
func (c *client) closedByServer(t testing.TB) {
	t.Helper()
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c.r)
	if errors.Is(err, syscall.ECONNRESET) {
		err = nil // closed with our request unread
	}
	if err != nil || len(b) != 0 {
		t.Fatalf("want the connection closed without a reply, got %q, %v", b, err)
	}
}

func TestDecisions(t *testing.T) {
	set := mustParse(t, refusing)
	f := start(t, &policy.Server{Rules: func() *rules.Set { return set }})
	c := f.dial(t) // one connection for every request, as Postfix reuses it
	state := func(st string, r policy.Request) policy.Request { r["protocol_state"] = st; return r }
	tests := []struct {
		name string
		req  policy.Request
		want string
	}{
		{"reject with text", rcpt("old@example.com"), "550 5.1.1 This address is no longer in use"},
		{"case and extension", rcpt("Old+x@Example.COM"), "550 5.1.1 This address is no longer in use"},
		{"default text", rcpt("spam@example.com"), "550 5.1.1 User unknown"},
		{"through an alias", rcpt("to-old@example.org"), "550 5.1.1 This address is no longer in use"},
		{"reject default", rcpt("nobody@elsewhere.example"), "550 5.1.1 No such user here"},
		{"mailbox", rcpt("me@example.org"), "DUNNO"},
		{"catch-all", rcpt("nobody@example.com"), "DUNNO"},
		{"reject among other actions", rcpt("mixed@example.org"), "DUNNO"},
		{"DATA stage", state("DATA", rcpt("old@example.com")), "DUNNO"},
		{"END-OF-MESSAGE stage", state("END-OF-MESSAGE", rcpt("old@example.com")), "DUNNO"},
		{"MAIL stage", state("MAIL", rcpt("")), "DUNNO"},
		{"no recipient", rcpt(""), "DUNNO"},
		{"other request type", policy.Request{"request": "junk", "protocol_state": "RCPT", "recipient": "old@example.com"}, "DUNNO"},
		{"no request attribute", policy.Request{"recipient": "old@example.com"}, "DUNNO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.ask(t, tt.req); got != tt.want {
				t.Errorf("action %q, want %q", got, tt.want)
			}
		})
	}
	logs := f.log.String()
	for _, want := range []string{
		`msg=policy decision=reject recipient=old@example.com sender=a@sender.example client=192.0.2.1 key=old@example.com action="550 5.1.1 This address is no longer in use"`,
		`decision=reject recipient=to-old@example.org sender=a@sender.example client=192.0.2.1 key=old@example.com`,
		`decision=dunno recipient=me@example.org sender=a@sender.example client=192.0.2.1 key=me action=DUNNO`,
		`why="not at RCPT"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

// reject_mode: log answers DUNNO and logs "would reject".
func TestTrialMode(t *testing.T) {
	set := mustParse(t, "reject_mode: log\n"+refusing)
	f := start(t, &policy.Server{Rules: func() *rules.Set { return set }})
	c := f.dial(t)
	if got := c.ask(t, rcpt("old@example.com")); got != "DUNNO" {
		t.Errorf("action %q, want DUNNO in trial mode", got)
	}
	want := `level=INFO msg=policy decision="would reject" recipient=old@example.com sender=a@sender.example client=192.0.2.1 key=old@example.com action=DUNNO refusal="550 5.1.1 This address is no longer in use" reject_mode=log`
	if logs := f.log.String(); !strings.Contains(logs, want) {
		t.Errorf("log lacks %q:\n%s", want, logs)
	}
}

// The daemon swaps rules between requests on a live connection; no rules
// at all means nothing is refused.
func TestRulesSwap(t *testing.T) {
	var cur atomic.Pointer[rules.Set]
	f := start(t, &policy.Server{Rules: cur.Load})
	c := f.dial(t)
	if got := c.ask(t, rcpt("old@example.com")); got != "DUNNO" {
		t.Errorf("no rules: %q, want DUNNO", got)
	}
	cur.Store(mustParse(t, refusing))
	if got := c.ask(t, rcpt("old@example.com")); !strings.HasPrefix(got, "550 5.1.1 ") {
		t.Errorf("after the swap: %q, want a refusal", got)
	}
	cur.Store(mustParse(t, "default: []\n"))
	if got := c.ask(t, rcpt("old@example.com")); got != "DUNNO" {
		t.Errorf("after the second swap: %q, want DUNNO", got)
	}
}

// Postfix may send the next request before reading the reply; replies
// come back in order.
func TestPipelinedRequests(t *testing.T) {
	set := mustParse(t, refusing)
	f := start(t, &policy.Server{Rules: func() *rules.Set { return set }})
	c := f.dial(t)
	var b bytes.Buffer
	rcpts := []string{"me@x.example", "old@example.com", "nobody@example.com", "spam@example.com"}
	for _, r := range rcpts {
		rcpt(r).WriteTo(&b)
	}
	if _, err := c.c.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	want := []string{"DUNNO", "550 5.1.1 This address is no longer in use", "DUNNO", "550 5.1.1 User unknown"}
	for i := range rcpts {
		if got := c.read(t); got != want[i] {
			t.Errorf("reply %d: %q, want %q", i, got, want[i])
		}
	}
}

// A malformed request gets no reply: a warning and a disconnect (the
// protocol's rule; Postfix then applies default_action DUNNO). The server
// keeps serving other connections.
func TestMalformedRequests(t *testing.T) {
	set := mustParse(t, refusing)
	f := start(t, &policy.Server{Rules: func() *rules.Set { return set }})
	tests := []struct {
		name, send, log string
	}{
		{"not name=value", "request=smtpd_access_policy\nhello\n\n", "line 2 is not name=value"},
		{"empty name", "=x\n\n", "line 1 is not name=value"},
		{"CRLF line ends", "request=smtpd_access_policy\r\n\r\n", "line 2 is not name=value"},
		{"NUL byte", "request=smtpd_access_policy\nrecipient=a\x00b\n\n", "NUL byte"},
		{"line too long", "recipient=" + strings.Repeat("x", policy.MaxLine) + "\n\n", "longer than 8192 bytes"},
		{"too many attributes", strings.Repeat("a=b\n", policy.MaxAttrs+1) + "\n", "more than 128 attributes"},
		{"closed inside a request", "request=smtpd_access_policy\nrecipient=old@example.com\n", "closed inside a request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := f.dial(t)
			if _, err := io.WriteString(c.c, tt.send); err != nil {
				t.Fatal(err)
			}
			if tt.name == "closed inside a request" {
				c.c.(*net.UnixConn).CloseWrite()
			}
			c.closedByServer(t)
			if logs := f.log.String(); !strings.Contains(logs, tt.log) || !strings.Contains(logs, "level=WARN msg=\"policy: bad request; disconnecting\"") {
				t.Errorf("log lacks a warning with %q:\n%s", tt.log, logs)
			}
			// A good request on a new connection is still answered.
			if got := f.dial(t).ask(t, rcpt("old@example.com")); !strings.HasPrefix(got, "550") {
				t.Errorf("after a malformed request: %q", got)
			}
		})
	}
}

// A panic while deciding is answered DUNNO, and the connection goes on.
func TestPanicAnsweredDunno(t *testing.T) {
	set := mustParse(t, refusing)
	var boom atomic.Bool
	boom.Store(true)
	f := start(t, &policy.Server{Rules: func() *rules.Set {
		if boom.Load() {
			panic("rules exploded")
		}
		return set
	}})
	c := f.dial(t)
	if got := c.ask(t, rcpt("old@example.com")); got != "DUNNO" {
		t.Errorf("after a panic: %q, want DUNNO", got)
	}
	if logs := f.log.String(); !strings.Contains(logs, `panic="rules exploded"`) {
		t.Errorf("panic not logged:\n%s", logs)
	}
	boom.Store(false)
	if got := c.ask(t, rcpt("old@example.com")); !strings.HasPrefix(got, "550") {
		t.Errorf("the connection does not go on after a panic: %q", got)
	}
}

// An idle connection is closed by the server after IdleTimeout.
func TestIdleTimeout(t *testing.T) {
	set := mustParse(t, refusing)
	f := start(t, &policy.Server{Rules: func() *rules.Set { return set }, IdleTimeout: 50 * time.Millisecond})
	c := f.dial(t)
	if got := c.ask(t, rcpt("me@x.example")); got != "DUNNO" {
		t.Fatalf("%q", got)
	}
	c.closedByServer(t)
	if logs := f.log.String(); !strings.Contains(logs, "idle connection closed") {
		t.Errorf("log:\n%s", logs)
	}
}

// Close ends Serve and every open connection.
func TestClose(t *testing.T) {
	set := mustParse(t, refusing)
	srv := &policy.Server{Rules: func() *rules.Set { return set }}
	f := start(t, srv)
	c := f.dial(t)
	if got := c.ask(t, rcpt("me@x.example")); got != "DUNNO" {
		t.Fatalf("%q", got)
	}
	srv.Close()
	if err := <-f.done; !errors.Is(err, policy.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	f.done <- policy.ErrServerClosed // for the cleanup
	c.closedByServer(t)
	if _, err := net.Dial("unix", f.path); err == nil {
		t.Errorf("still accepting after Close")
	}
}

// Many SMTP sessions at once, each on its own connection (run with -race).
func TestConcurrentConnections(t *testing.T) {
	set := mustParse(t, refusing)
	f := start(t, &policy.Server{Rules: func() *rules.Set { return set }})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := f.dial(t)
			for range 50 {
				if got := c.ask(t, rcpt("spam@example.com")); got != "550 5.1.1 User unknown" {
					t.Errorf("%q", got)
					return
				}
			}
		}()
	}
	wg.Wait()
}
