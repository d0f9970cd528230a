package lmtp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"quietmx/internal/maillog/maillogtest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"quietmx/internal/atomicfile"
	"quietmx/internal/delivery"
	"quietmx/internal/rules"
)

// The message as Postfix's lmtp(8) sends it: CRLF, with its Received line.
const wireMsg = "Received: from c.example (c.example [192.0.2.1])\r\n\tby mx.example.com (Postfix) with ESMTP id 4XyZ12AbC\r\n\tfor <a@x>; Mon, 30 Nov 2026 06:00:00 +0000 (UTC)\r\nFrom: s@example.org\r\nSubject: hi\r\n\r\nbody \xe3\x81\x82 bare\rCR\r\n.leading dot\r\nend\r\n"

// The same message as pipe(8) hands it to the agent.
const pipeMsg = "Received: from c.example (c.example [192.0.2.1])\n\tby mx.example.com (Postfix) with ESMTP id 4XyZ12AbC\n\tfor <a@x>; Mon, 30 Nov 2026 06:00:00 +0000 (UTC)\nFrom: s@example.org\nSubject: hi\n\nbody \xe3\x81\x82 bare\rCR\n.leading dot\nend\n"

type env struct {
	t      testing.TB
	dir    string
	rules  string
	socket string
	srv    *Server
	log    *maillogtest.Buffer // delivery lines
	events *maillogtest.Buffer // daemon events
	served chan error
}

// start writes the rule file (DIR stands for the test's directory), then
// serves on a unix socket with cfg (its Delivery is filled in).
func start(t testing.TB, rulesSrc string, cfg Config) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, rules: filepath.Join(dir, "rules.yaml"), socket: filepath.Join(dir, "lmtp"),
		log: &maillogtest.Buffer{}, events: &maillogtest.Buffer{}, served: make(chan error, 1)}
	if rulesSrc != "" {
		e.install(rulesSrc)
	}
	live := rules.NewLive(e.rules, func(f string, a ...any) { e.events.Write([]byte(sprintf(f, a...) + "\n")) })
	cfg.Delivery = delivery.Config{RulesPath: e.rules, Sendmail: "/nonexistent/sendmail", Rules: live}
	cfg.Log = slog.New(slog.NewTextHandler(e.log, nil))
	cfg.Logf = func(f string, a ...any) { e.events.Write([]byte(sprintf(f, a...) + "\n")) }
	cfg.Hostname = "mx.test"
	e.srv = New(cfg)
	l, err := Listen(e.socket)
	if err != nil {
		t.Fatal(err)
	}
	go func() { e.served <- e.srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-e.served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return e
}

// install writes the rule file the way check --install does (the file
// and its last-valid snapshot).
func (e *env) install(src string) {
	e.t.Helper()
	if err := rules.Install(e.rules, []byte(strings.ReplaceAll(src, "DIR", e.dir))); err != nil {
		e.t.Fatal(err)
	}
}

// overwrite replaces only the live file, valid or not (an operator's edit).
func (e *env) overwrite(src string) {
	e.t.Helper()
	if err := atomicfile.Write(e.rules, []byte(strings.ReplaceAll(src, "DIR", e.dir)), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) dial() *smtp.Client {
	e.t.Helper()
	conn, err := net.Dial("unix", e.socket)
	if err != nil {
		e.t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	e.t.Cleanup(func() { c.Close() })
	return c
}

// send delivers msg to rcpts over one LMTP transaction and returns each
// recipient's reply code.
func (e *env) send(msg string, rcpts ...string) map[string]int {
	e.t.Helper()
	c := e.dial()
	if err := c.Hello("postfix.test"); err != nil {
		e.t.Fatalf("LHLO: %v", err)
	}
	codes := e.sendOn(c, msg, rcpts...)
	c.Quit() // as Postfix does, unless it caches the connection
	return codes
}

func (e *env) sendOn(c *smtp.Client, msg string, rcpts ...string) map[string]int {
	e.t.Helper()
	if err := c.Mail("s@example.org", nil); err != nil {
		e.t.Fatalf("MAIL: %v", err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			e.t.Fatalf("RCPT %s: %v", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		e.t.Fatalf("DATA: %v", err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		e.t.Fatal(err)
	}
	_, err = w.CloseWithLMTPResponse()
	codes := map[string]int{}
	for _, r := range rcpts {
		codes[r] = 250
	}
	var per smtp.LMTPDataError
	if errors.As(err, &per) {
		for r, se := range per {
			codes[r] = se.Code
		}
	} else if err != nil {
		e.t.Fatalf("end of DATA: %v", err)
	}
	return codes
}

func (e *env) files(sub string) []string {
	e.t.Helper()
	var out []string
	_ = filepath.WalkDir(filepath.Join(e.dir, sub), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && d.Name() != "maildirfolder" {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func (e *env) waitFile(p string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(p); err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s never appeared", p)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const threeWay = `aliases:
  a@x: {type: maildir, value: DIR/a}
  b@x: {type: pipe, cmd: /bin/false}
  c@x: {type: discard}
`

func TestPerRecipientReplies(t *testing.T) {
	e := start(t, threeWay, Config{})
	got := e.send(wireMsg, "a@x", "b@x", "c@x")
	want := map[string]int{"a@x": 250, "b@x": 451, "c@x": 250}
	for r, code := range want {
		if got[r] != code {
			t.Errorf("%s: reply %d, want %d", r, got[r], code)
		}
	}
	fs := e.files("a")
	if len(fs) != 1 {
		t.Fatalf("maildir a holds %v, want one file", fs)
	}
	data, _ := os.ReadFile(fs[0])
	// The very bytes the pipe agent writes for the same message.
	if want := "Return-Path: <s@example.org>\nDelivered-To: a@x\n" + pipeMsg; string(data) != want {
		t.Errorf("maildir file:\n%q\nwant\n%q", data, want)
	}
	log := e.log.String()
	for _, want := range []string{
		"queue_id=4XyZ12AbC sender=s@example.org recipient=a@x orig_recipient=a@x key=a@x",
		"recipient=b@x", "outcome=deferred", "recipient=c@x", "outcome=dropped",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("delivery lines lack %q:\n%s", want, log)
		}
	}
	if n := strings.Count(log, "msg=delivery"); n != 3 {
		t.Errorf("%d delivery lines, want 3:\n%s", n, log)
	}
}

// LHLO must not offer SIZE: Postfix bounces a message above it.
func TestNoSizeInLHLO(t *testing.T) {
	e := start(t, threeWay, Config{MaxSize: 1000})
	conn, err := net.Dial("unix", e.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "220 ") || !strings.Contains(line, "LMTP") {
		t.Fatalf("greeting %q", line)
	}
	conn.Write([]byte("LHLO postfix.test\r\n"))
	var reply []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		reply = append(reply, line)
		if len(line) > 3 && line[3] == ' ' {
			break
		}
	}
	all := strings.Join(reply, "")
	if strings.Contains(strings.ToUpper(all), "SIZE") {
		t.Errorf("LHLO reply offers SIZE:\n%s", all)
	}
	for _, want := range []string{"250-PIPELINING", "8BITMIME", "SMTPUTF8"} {
		if !strings.Contains(all, want) {
			t.Errorf("LHLO reply lacks %s:\n%s", want, all)
		}
	}
}

func TestTooBigDefers(t *testing.T) {
	e := start(t, threeWay, Config{MaxSize: 100})
	got := e.send(wireMsg+strings.Repeat("x", 200)+"\r\n", "a@x", "c@x")
	if got["a@x"] != 451 || got["c@x"] != 451 {
		t.Errorf("replies %v, want 451 each", got)
	}
	if len(e.files("a")) != 0 {
		t.Error("a message over the cap was stored")
	}
	if !strings.Contains(e.log.String(), "larger than 100 bytes") {
		t.Errorf("no delivery line says why:\n%s", e.log.String())
	}
}

// A panic anywhere in a delivery answers 4xx for the recipients not yet
// answered, and the daemon goes on serving.
func TestPanicDefers(t *testing.T) {
	e := start(t, threeWay, Config{deliver: func(ctx context.Context, cfg delivery.Config, req delivery.Request) delivery.Result {
		if req.Recipients[0] == "boom@x" {
			panic("boom")
		}
		return delivery.Run(ctx, cfg, req)
	}})
	got := e.send(wireMsg, "a@x", "boom@x", "c@x")
	if got["a@x"] != 250 || got["boom@x"]/100 != 4 || got["c@x"] != 250 {
		t.Errorf("replies %v, want 250, 4xx, 250", got)
	}
	if got := e.send(wireMsg, "a@x"); got["a@x"] != 250 {
		t.Errorf("after the panic: %v", got)
	}
	if !strings.Contains(e.events.String(), "panic delivering to <boom@x>: boom") {
		t.Errorf("the panic is not logged:\n%s", e.events.String())
	}
	if !strings.Contains(e.log.String(), "recipient=boom@x orig_recipient=boom@x key=\"\" actions=\"\" outcome=deferred") {
		t.Errorf("no deferred line for boom@x:\n%s", e.log.String())
	}
}

// A recipient whose delivery ignores the deadline is answered 451 after
// the grace time, and the next recipients are still answered.
func TestStuckRecipientDefers(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	e := start(t, threeWay, Config{Deadline: 100 * time.Millisecond, Grace: 2 * time.Second,
		deliver: func(ctx context.Context, cfg delivery.Config, req delivery.Request) delivery.Result {
			if req.Recipients[0] == "stuck@x" {
				<-release // ignores ctx
			}
			return delivery.Run(ctx, cfg, req)
		}})
	t0 := time.Now()
	got := e.send(wireMsg, "stuck@x", "stuck@x", "c@x")
	if got["stuck@x"] != 451 || got["c@x"] != 451 {
		t.Errorf("replies %v, want 451 (stuck) and 451 (past the deadline)", got)
	}
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("answered after %v", took)
	}
	// The first is waited for until the grace time is spent; the others
	// are not even tried.
	log := e.log.String()
	if strings.Count(log, "after the message deadline") != 1 || strings.Count(log, "not tried") != 2 || strings.Count(log, "msg=delivery") != 3 {
		t.Errorf("want one line for the stuck recipient and two not tried:\n%s", log)
	}
	if !strings.Contains(e.log.String(), "after the message deadline") {
		t.Errorf("no line for the stuck recipient:\n%s", e.log.String())
	}
}

// The deadline reaches delivery.Run: an action past it defers.
func TestDeadlineDefers(t *testing.T) {
	e := start(t, "default: {type: pipe, cmd: /bin/sleep, args: ['30']}\n", Config{Deadline: 200 * time.Millisecond})
	t0 := time.Now()
	got := e.send(wireMsg, "a@x")
	if got["a@x"] != 451 {
		t.Errorf("reply %v, want 451", got)
	}
	if took := time.Since(t0); took > 10*time.Second {
		t.Errorf("answered after %v", took)
	}
}

func TestReload(t *testing.T) {
	e := start(t, "default: {type: maildir, value: DIR/one}\n", Config{})
	if got := e.send(wireMsg, "a@x"); got["a@x"] != 250 {
		t.Fatalf("first: %v", got)
	}
	// An edit in place, valid: used from the next message on.
	e.overwrite("default: {type: maildir, value: DIR/two}\n")
	if got := e.send(wireMsg, "a@x"); got["a@x"] != 250 {
		t.Fatalf("second: %v", got)
	}
	// An invalid edit: the rules loaded last stay (two, not the older
	// snapshot's one), and the lines say so.
	e.overwrite("default: {type: maildir, value: DIR/three\n")
	if got := e.send(wireMsg, "a@x"); got["a@x"] != 250 {
		t.Fatalf("third: %v", got)
	}
	if n1, n2 := len(e.files("one")), len(e.files("two")); n1 != 1 || n2 != 2 {
		t.Errorf("one holds %d, two holds %d; want 1 and 2", n1, n2)
	}
	log := e.log.String()
	if strings.Count(log, "rules_stale=") != 1 || !strings.Contains(log, "invalid rule file") {
		t.Errorf("want exactly the third line stale:\n%s", log)
	}
	ev := e.events.String()
	if strings.Count(ev, "refused") != 1 || strings.Count(ev, "rules reloaded") != 1 {
		t.Errorf("want one reload and one refusal logged:\n%s", ev)
	}
	// Fixed: fresh rules again, no stale mark.
	e.overwrite("default: {type: maildir, value: DIR/four}\n")
	e.send(wireMsg, "a@x")
	if len(e.files("four")) != 1 || strings.Count(e.log.String(), "rules_stale=") != 1 {
		t.Errorf("after the fix: four holds %v; lines:\n%s", e.files("four"), e.log.String())
	}
}

// A reload while a message is being delivered leaves it on the rules it
// started with; the next message uses the new ones.
func TestReloadDuringDelivery(t *testing.T) {
	e := start(t, `default:
  - {type: pipe, cmd: /bin/sh, args: ['-c', 'cat >/dev/null; touch DIR/started; while [ ! -e DIR/go ]; do sleep 0.01; done']}
  - {type: maildir, value: DIR/old}
`, Config{})
	first := make(chan map[string]int, 1)
	go func() { first <- e.send(wireMsg, "a@x") }()
	e.waitFile(filepath.Join(e.dir, "started"))
	e.install("default: {type: maildir, value: DIR/new}\n")
	if got := e.send(wireMsg, "b@x"); got["b@x"] != 250 {
		t.Fatalf("second: %v", got)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := <-first; got["a@x"] != 250 {
		t.Fatalf("first: %v", got)
	}
	if len(e.files("old")) != 1 || len(e.files("new")) != 1 {
		t.Errorf("old holds %v, new holds %v; want one each", e.files("old"), e.files("new"))
	}
}

// With no usable rules at all, LHLO gets 421: Postfix defers.
func TestNoRulesRefusesAtLHLO(t *testing.T) {
	e := start(t, "", Config{})
	e.overwrite("aliases: [")
	c := e.dial()
	err := c.Hello("postfix.test")
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 421 {
		t.Fatalf("LHLO: %v, want 421", err)
	}
	if !strings.Contains(e.events.String(), "no usable rules") {
		t.Errorf("not logged:\n%s", e.events.String())
	}
	// Fixed: served again without a restart.
	e.install("default: {type: discard}\n")
	if got := e.send(wireMsg, "a@x"); got["a@x"] != 250 {
		t.Errorf("after the fix: %v", got)
	}
}

// Shutdown waits for a message in progress, and refuses new connections.
func TestShutdownDrains(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	e := start(t, threeWay, Config{deliver: func(ctx context.Context, cfg delivery.Config, req delivery.Request) delivery.Result {
		close(entered)
		<-release
		return delivery.Run(ctx, cfg, req)
	}})
	done := make(chan map[string]int, 1)
	go func() { done <- e.send(wireMsg, "a@x") }()
	<-entered
	stopped := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { stopped <- e.srv.Shutdown(ctx) }()
	// The listener closes at once: a new connection is refused.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("unix", e.socket)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting after Shutdown")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	if got := <-done; got["a@x"] != 250 {
		t.Errorf("in-flight message: %v, want 250", got)
	}
	if err := <-stopped; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if len(e.files("a")) != 1 {
		t.Error("the in-flight message was not delivered")
	}
}

func TestReply(t *testing.T) {
	for o := delivery.Delivered; o <= delivery.Deferred; o++ {
		err := reply(delivery.Result{Outcome: o, Err: errors.New("why\nmore")})
		var se *smtp.SMTPError
		switch {
		case o == delivery.Deferred && (!errors.As(err, &se) || se.Code != 451 || se.Message != "deferred: why"):
			t.Errorf("%v: %v", o, err)
		case o != delivery.Deferred && err != nil:
			t.Errorf("%v: %v, want 250", o, err)
		}
	}
}

func sprintf(f string, a ...any) string { return strings.TrimSpace(fmt.Sprintf(f, a...)) }

// Concurrent connections share one rule set (compiled form, aliases
// decoded on demand): every message is delivered once (run with -race).
func TestConcurrentDeliveries(t *testing.T) {
	var src strings.Builder
	src.WriteString("aliases:\n")
	for i := range 8 {
		fmt.Fprintf(&src, "  u%d@x: {type: maildir, value: DIR/u%d}\n", i, i)
	}
	e := start(t, src.String(), Config{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				rcpt := fmt.Sprintf("u%d@x", (g+i)%8)
				if got := e.send(wireMsg, rcpt); got[rcpt] != 250 {
					t.Errorf("%s: %v", rcpt, got)
				}
			}
		}()
	}
	wg.Wait()
	n := 0
	for i := range 8 {
		n += len(e.files(fmt.Sprintf("u%d", i)))
	}
	if n != 40 {
		t.Errorf("%d messages stored, want 40", n)
	}
}
