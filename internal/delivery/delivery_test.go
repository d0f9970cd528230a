package delivery_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"quietmx/internal/delivery"
	"quietmx/internal/dump"
	"quietmx/internal/rules"
)

const msg = "From: a@example.org\nSubject: test\n\nbody \xe3\x81\x82 \x00 \r\nend\n"

type env struct {
	t    *testing.T
	dir  string
	path string
}

// newEnv writes a rule file in which DIR stands for a temp directory.
func newEnv(t *testing.T, rulesSrc string) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, path: filepath.Join(dir, "rules.yaml")}
	e.write(rulesSrc)
	return e
}

func (e *env) write(src string) {
	e.t.Helper()
	if err := os.WriteFile(e.path, []byte(strings.ReplaceAll(src, "DIR", e.dir)), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) run(sender string, rcpts ...string) delivery.Result {
	e.t.Helper()
	return e.runMsg([]byte(msg), sender, rcpts...)
}

func (e *env) runMsg(m []byte, sender string, rcpts ...string) delivery.Result {
	e.t.Helper()
	cfg := delivery.Config{RulesPath: e.path, Sendmail: "/nonexistent/sendmail", Deadline: 30 * time.Second}
	return delivery.Run(context.Background(), cfg, delivery.Request{Sender: sender, Recipients: rcpts, Message: m})
}

// files lists the regular files under DIR/sub (recursively), not the rule file.
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

func (e *env) only(sub string) []byte {
	e.t.Helper()
	fs := e.files(sub)
	if len(fs) != 1 {
		e.t.Fatalf("%s holds %d files, want 1: %v", sub, len(fs), fs)
	}
	data, err := os.ReadFile(fs[0])
	if err != nil {
		e.t.Fatal(err)
	}
	return data
}

func (e *env) script(name, body string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func expectOutcome(t *testing.T, res delivery.Result, want delivery.Outcome) {
	t.Helper()
	if res.Outcome != want {
		t.Fatalf("outcome = %v (err %v, records %+v), want %v", res.Outcome, res.Err, res.Records, want)
	}
}

func TestDeliverWritesTraceHeadersAndBody(t *testing.T) {
	e := newEnv(t, "default: {type: maildir, value: DIR/box}\n")
	res := e.run("sender@example.org", "rcpt@example.com")
	expectOutcome(t, res, delivery.Delivered)
	got := e.only("box/new")
	want := "Return-Path: <sender@example.org>\nDelivered-To: rcpt@example.com\n" + msg
	if string(got) != want {
		t.Errorf("delivered file = %q, want %q", got, want)
	}
	if n := len(e.files("box/tmp")); n != 0 {
		t.Errorf("tmp/ holds %d files after delivery", n)
	}
}

func TestNullSender(t *testing.T) {
	e := newEnv(t, "default: {type: maildir, value: DIR/box}\n")
	expectOutcome(t, e.run("", "r@example.com"), delivery.Delivered)
	if got := e.only("box/new"); !bytes.HasPrefix(got, []byte("Return-Path: <>\n")) {
		t.Errorf("null sender: %q", got[:40])
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name  string
		rules string
		setup func(e *env)
		want  delivery.Outcome
	}{
		{"delivered", "default: {type: maildir, value: DIR/box}", nil, delivery.Delivered},
		{"discard", "default: {type: discard}", nil, delivery.Dropped},
		{"nothing", "default: {type: nothing}", nil, delivery.Dropped},
		{"empty list", "default: []", nil, delivery.Dropped},
		{"no route, rescue", "rescue: DIR/rescue\naliases: {x: {type: discard}}", mkdir("rescue"), delivery.Rescued},
		{"no route, no rescue", "aliases: {x: {type: discard}}", nil, delivery.Deferred},
		{"no route, die_quietly", "die_quietly: yes\naliases: {x: {type: discard}}", nil, delivery.Lost},
		{"rescue dir missing", "rescue: DIR/missing\naliases: {x: {type: discard}}", nil, delivery.Deferred},
		{"rescue dir missing, die_quietly", "die_quietly: true\nrescue: DIR/missing\ndefault: {type: pipe, cmd: /bin/false}", nil, delivery.Lost},
		{"failing pipe, die_quietly, no rescue", "die_quietly: true\ndefault: {type: pipe, cmd: /bin/false}", nil, delivery.Lost},
		{"failing pipe, rescue", "rescue: DIR/rescue\ndefault: {type: pipe, cmd: /bin/false}", mkdir("rescue"), delivery.Rescued},
		{"failing pipe, no rescue", "default: {type: pipe, cmd: /bin/false}", nil, delivery.Deferred},
		{"missing command", "rescue: DIR/rescue\ndefault: {type: pipe, cmd: /no/such/cmd}", mkdir("rescue"), delivery.Rescued},
		{"unwritable maildir", "rescue: DIR/rescue\ndefault: {type: maildir, value: DIR/file/box}", func(e *env) {
			mkdir("rescue")(e)
			os.WriteFile(filepath.Join(e.dir, "file"), nil, 0o644)
		}, delivery.Rescued},
		{"invalid YAML, no snapshot", "aliases: [", nil, delivery.Deferred},
		{"missing rule file", "", func(e *env) { os.Remove(e.path) }, delivery.Deferred},
		{"empty-match extension", "extension: \"x*\"\ndefault: {type: discard}", nil, delivery.Deferred},
		{"alias loop, rescue", "rescue: DIR/rescue\naliases: {a: {type: alias, value: b@x}, b: {type: alias, value: a@x}}\ndefault: {type: alias, value: a@x}", mkdir("rescue"), delivery.Rescued},
		{"forward, sendmail missing", "rescue: DIR/rescue\ndefault: {type: forward, value: x@y}", mkdir("rescue"), delivery.Rescued},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.rules+"\n")
			if tt.setup != nil {
				tt.setup(e)
			}
			res := e.run("s@example.org", "r@example.com")
			expectOutcome(t, res, tt.want)
			if code := delivery.ExitCode(res.Outcome); code != 0 && code != 75 {
				t.Fatalf("exit code %d", code)
			}
			if tt.want == delivery.Rescued {
				got := e.only("rescue")
				if !bytes.HasSuffix(got, []byte(msg)) {
					t.Errorf("rescue copy does not end with the message: %q", got)
				}
			}
		})
	}
}

func mkdir(sub string) func(e *env) {
	return func(e *env) {
		if err := os.MkdirAll(filepath.Join(e.dir, sub), 0o700); err != nil {
			panic(err)
		}
	}
}

func TestExitCodeMapping(t *testing.T) {
	for o, want := range map[delivery.Outcome]int{delivery.Delivered: 0, delivery.Dropped: 0, delivery.Rescued: 0, delivery.Lost: 0, delivery.Deferred: 75} {
		if got := delivery.ExitCode(o); got != want {
			t.Errorf("ExitCode(%v) = %d, want %d", o, got, want)
		}
	}
}

func TestRescueJSONRoundTrip(t *testing.T) {
	e := newEnv(t, "rescue: DIR/rescue\nrescue_json: yes\ndefault: {type: pipe, cmd: /bin/false}\n")
	mkdir("rescue")(e)
	sjis := []byte("Subject: \x82\xa0\n\n\x93\xfa\x96\x7b\x8c\xea\n") // Shift_JIS, not UTF-8
	expectOutcome(t, e.runMsg(sjis, "s@x", "r@example.com"), delivery.Rescued)
	d, err := dump.Decode(e.only("rescue"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.Mail, sjis) || d.Sender != "s@x" || d.Recipient != "r@example.com" {
		t.Errorf("dump = %+v", d)
	}
}

func TestActionErrorStopsTheList(t *testing.T) {
	e := newEnv(t, `
rescue: DIR/rescue
default:
  - {type: maildir, value: DIR/a}
  - {type: pipe, cmd: /bin/false}
  - {type: maildir, value: DIR/b}
`)
	mkdir("rescue")(e)
	res := e.run("s@x", "r@example.com")
	expectOutcome(t, res, delivery.Rescued)
	if len(e.files("a")) != 1 || len(e.files("b")) != 0 || len(e.files("rescue")) != 1 {
		t.Errorf("a=%d b=%d rescue=%d; want 1 0 1", len(e.files("a")), len(e.files("b")), len(e.files("rescue")))
	}
	if acts := res.Records[0].Actions; len(acts) != 3 || acts[2].Result != "skipped" {
		t.Errorf("actions log = %+v", acts)
	}
}

func TestOnErrorThenContinue(t *testing.T) {
	e := newEnv(t, `
default:
  - {type: pipe, cmd: /bin/false, onerror: {type: maildir, value: DIR/safezone}}
  - {type: maildir, value: DIR/b}
`)
	expectOutcome(t, e.run("s@x", "r@example.com"), delivery.Delivered)
	if len(e.files("safezone")) != 1 || len(e.files("b")) != 1 {
		t.Errorf("safezone=%d b=%d; want 1 1", len(e.files("safezone")), len(e.files("b")))
	}
}

func TestOnErrorChainFailsToRescue(t *testing.T) {
	e := newEnv(t, `
rescue: DIR/rescue
default:
  type: pipe
  cmd: /bin/false
  onerror: {type: pipe, cmd: /bin/false, onerror: {type: pipe, cmd: /no/such}}
`)
	mkdir("rescue")(e)
	expectOutcome(t, e.run("s@x", "r@example.com"), delivery.Rescued)
}

func TestPipeGetsSenderAndRecipient(t *testing.T) {
	e := newEnv(t, "")
	filter := e.script("filter", `printf '%s|' "$@" > "$0.args"; cat > "$0.in"`)
	e.write(`
rematch: {"^info-": info@example.com}
default: {type: pipe, cmd: ` + filter + `, args: ["${sender}", "${recipient}", "x${sender}", 3]}
`)
	expectOutcome(t, e.run("s@example.org", "info-x@example.com"), delivery.Delivered)
	args, _ := os.ReadFile(filter + ".args")
	if string(args) != "s@example.org|info@example.com|x${sender}|3|" {
		t.Errorf("args = %q", args)
	}
	in, _ := os.ReadFile(filter + ".in")
	if want := "Return-Path: <s@example.org>\nDelivered-To: info@example.com\n" + msg; string(in) != want {
		t.Errorf("stdin = %q, want %q", in, want)
	}
}

func TestRecipientAfterAliasIsStillTheOriginal(t *testing.T) {
	e := newEnv(t, "")
	filter := e.script("filter", `printf '%s' "$1" > "$0.args"`)
	e.write(`
aliases:
  a: {type: alias, value: b@example.com}
  b: {type: pipe, cmd: ` + filter + `, args: ["${recipient}"]}
`)
	expectOutcome(t, e.run("s@x", "a@example.com"), delivery.Delivered)
	if args, _ := os.ReadFile(filter + ".args"); string(args) != "a@example.com" {
		t.Errorf("${recipient} after alias = %q, want a@example.com", args)
	}
}

func TestHangingPipeIsKilledAndRescued(t *testing.T) {
	e := newEnv(t, "")
	filter := e.script("hang", `sleep 1000 & echo $! > "$0.child"; sleep 1000`)
	e.write("rescue: DIR/rescue\ndefault: {type: pipe, cmd: " + filter + ", timeout: 1}\n")
	mkdir("rescue")(e)
	start := time.Now()
	expectOutcome(t, e.run("s@x", "r@example.com"), delivery.Rescued)
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("took %v", took)
	}
	child, _ := os.ReadFile(filter + ".child")
	pid := strings.TrimSpace(string(child))
	if pid == "" {
		t.Fatal("no child pid recorded")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil || strings.Contains(string(st), ") Z ") {
			break // gone (or a zombie awaiting its reaper)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the filter's child %s outlived the timeout", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRunDeadlineDefers(t *testing.T) {
	e := newEnv(t, "")
	filter := e.script("slow", "sleep 1000")
	e.write("rescue: DIR/rescue\ndefault: {type: pipe, cmd: " + filter + "}\n")
	mkdir("rescue")(e)
	cfg := delivery.Config{RulesPath: e.path, Deadline: time.Second}
	res := delivery.Run(context.Background(), cfg, delivery.Request{Sender: "s@x", Recipients: []string{"r@example.com"}, Message: []byte(msg)})
	expectOutcome(t, res, delivery.Deferred)
	if len(e.files("rescue")) != 0 {
		t.Errorf("past the deadline the agent must defer, not rescue")
	}
}

func TestLoopIsRescuedNotDelivered(t *testing.T) {
	e := newEnv(t, "rescue: DIR/rescue\ndefault: {type: maildir, value: DIR/box}\n")
	mkdir("rescue")(e)
	looped := "Delivered-To: R@Example.com\n" + msg
	res := e.runMsg([]byte(looped), "s@x", "r@example.com")
	expectOutcome(t, res, delivery.Rescued)
	if len(e.files("box")) != 0 {
		t.Errorf("a looping message was delivered")
	}
	// Delivered-To in the body is not a loop.
	inBody := msg + "Delivered-To: r@example.com\n"
	expectOutcome(t, e.runMsg([]byte(inBody), "s@x", "r@example.com"), delivery.Delivered)
}

func TestErrorStopsLaterRecipients(t *testing.T) {
	e := newEnv(t, `
rescue: DIR/rescue
aliases:
  a: {type: maildir, value: DIR/a}
  b: {type: pipe, cmd: /bin/false}
  c: {type: maildir, value: DIR/c}
`)
	mkdir("rescue")(e)
	res := e.run("s@x", "a@x", "b@x", "c@x")
	expectOutcome(t, res, delivery.Rescued)
	if len(e.files("a")) != 1 || len(e.files("c")) != 0 || len(e.files("rescue")) != 1 {
		t.Errorf("a=%d c=%d rescue=%d; want 1 0 1", len(e.files("a")), len(e.files("c")), len(e.files("rescue")))
	}
	if len(res.Records) != 3 {
		t.Errorf("want one record per recipient, got %d", len(res.Records))
	}
}

func TestLastValidRulesAreUsed(t *testing.T) {
	e := newEnv(t, "")
	good := []byte(strings.ReplaceAll("default: {type: maildir, value: DIR/good}\n", "DIR", e.dir))
	if err := rules.Install(e.path, good); err != nil {
		t.Fatal(err)
	}
	e.write("default: {type: maildir, value: DIR/new\n") // saved half-way
	res := e.run("s@x", "r@example.com")
	expectOutcome(t, res, delivery.Delivered)
	if res.RulesStale == "" || len(e.files("good")) != 1 {
		t.Errorf("stale=%q good=%d", res.RulesStale, len(e.files("good")))
	}
}

func TestHugeAndEmptyMessages(t *testing.T) {
	e := newEnv(t, "default: {type: maildir, value: DIR/box}\n")
	big := bytes.Repeat([]byte("0123456789abcdef\xff\r\n"), 50<<20/19)
	expectOutcome(t, e.runMsg(big, "s@x", "r@x"), delivery.Delivered)
	if got := e.only("box/new"); !bytes.HasSuffix(got, big) || !bytes.HasPrefix(got, []byte("Return-Path: <s@x>\r\nDelivered-To: r@x\r\n0")) { // CRLF message: CRLF trace headers
		t.Errorf("50 MiB message not intact (%d bytes)", len(got))
	}
	e2 := newEnv(t, "default: {type: maildir, value: DIR/box}\n")
	expectOutcome(t, e2.runMsg(nil, "s@x", "r@x"), delivery.Delivered)
	if got := e2.only("box/new"); string(got) != "Return-Path: <s@x>\nDelivered-To: r@x\n" {
		t.Errorf("empty message: %q", got)
	}
}

func TestJunk(t *testing.T) {
	e := newEnv(t, "default: {type: maildir, value: DIR/box, junk: yes}\n")
	expectOutcome(t, e.run("s@x", "r@x"), delivery.Delivered)
	if len(e.files("box/.Junk/new")) != 1 || len(e.files("box/new")) != 0 {
		t.Errorf("junk not in .Junk/new")
	}
	if _, err := os.Stat(filepath.Join(e.dir, "box/.Junk/maildirfolder")); err != nil {
		t.Errorf("maildirfolder: %v", err)
	}
}

func TestDumpAction(t *testing.T) {
	e := newEnv(t, "default: [{type: dump, value: DIR/dumps}]\n")
	expectOutcome(t, e.run("s@x", "r@x"), delivery.Delivered)
	d, err := dump.Decode(e.only("dumps"))
	if err != nil || string(d.Mail) != msg {
		t.Errorf("dump: %+v %v", d, err)
	}
}

func TestForward(t *testing.T) {
	e := newEnv(t, "")
	sendmail := e.script("sendmail", `printf '%s|' "$@" > "$0.args"; cat > "$0.in"`)
	e.write("default: {type: forward, value: [a@far.example, b@far.example]}\n")
	cfg := delivery.Config{RulesPath: e.path, Sendmail: sendmail, Deadline: 10 * time.Second}
	res := delivery.Run(context.Background(), cfg, delivery.Request{Sender: "orig@sender.example", Recipients: []string{"me@example.com"}, Message: []byte(msg)})
	expectOutcome(t, res, delivery.Delivered)
	args, _ := os.ReadFile(sendmail + ".args")
	if string(args) != "-i|-f|postmaster@example.com|--|a@far.example|b@far.example|" {
		t.Errorf("sendmail argv = %q (the envelope sender must be local, never the original sender)", args)
	}
	in, _ := os.ReadFile(sendmail + ".in")
	if !bytes.Contains(in, []byte("Delivered-To: me@example.com\n")) || !bytes.HasSuffix(in, []byte(msg)) {
		t.Errorf("forwarded message = %q", in)
	}
}

func TestForwardSenderFromRules(t *testing.T) {
	e := newEnv(t, "")
	sendmail := e.script("sendmail", `printf '%s|' "$@" > "$0.args"; cat >/dev/null`)
	e.write("forward_sender: bounces@example.com\ndefault: {type: forward, value: a@far.example}\n")
	cfg := delivery.Config{RulesPath: e.path, Sendmail: sendmail, ForwardSender: "flag@example.com"}
	expectOutcome(t, delivery.Run(context.Background(), cfg, delivery.Request{Recipients: []string{"me@example.com"}, Message: []byte(msg)}), delivery.Delivered)
	if args, _ := os.ReadFile(sendmail + ".args"); !strings.HasPrefix(string(args), "-i|-f|bounces@example.com|") {
		t.Errorf("argv = %q", args)
	}
}
