package action

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"quietmx/internal/dump"
	"quietmx/internal/rules"
)

// A message with what delivery must keep: CR, 8-bit, NUL.
var testMsg = []byte("Subject: test \xe3\x81\x82\nX-Raw: \xff\x00\r\n\nbody \x82\xa0\x00\r\nlast line\n")

func newDelivery() *Delivery {
	return &Delivery{
		Sender:     "sender@example.org",
		Recipient:  "rcpt+tag@example.com",
		Recipients: []string{"rcpt+tag@example.com", "other@example.com"},
		Message:    bytes.Clone(testMsg),
	}
}

func traceFor(d *Delivery) string {
	return "Return-Path: <" + d.Sender + ">\nDelivered-To: " + d.Recipient + "\n"
}

// writeScript writes an executable #!/bin/sh script. Call it only while no
// other goroutine of the test binary may fork (before t.Parallel): a script
// still open for writing in a forked child cannot be executed (ETXTBSY).
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		t.Fatalf("pid file %s holds %q", path, b)
	}
	return pid
}

// gone reports whether pid has died (or is a zombie: PID 1 of a container
// may never reap it), waiting up to 3s since SIGKILL takes effect
// asynchronously.
func gone(pid int) bool {
	deadline := time.Now().Add(3 * time.Second)
	for {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		if stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
			if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func killIfAlive(pid int) { _ = syscall.Kill(pid, syscall.SIGKILL) }

func TestRunLocalActions(t *testing.T) {
	t.Run("maildir", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "Maildir")
		d := newDelivery()
		res, err := Run(context.Background(), &rules.Action{Type: rules.TypeMaildir, Value: dir}, d)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if filepath.Dir(res.File) != filepath.Join(dir, "new") {
			t.Errorf("File = %q, want the file in %s/new", res.File, dir)
		}
		got, err := os.ReadFile(res.File)
		if err != nil {
			t.Fatal(err)
		}
		if want := traceFor(d) + string(testMsg); string(got) != want {
			t.Errorf("delivered %q, want %q", got, want)
		}
		if !bytes.Equal(d.Message, testMsg) {
			t.Errorf("Run changed d.Message")
		}
	})
	t.Run("maildir junk", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "Maildir")
		res, err := Run(context.Background(), &rules.Action{Type: rules.TypeMaildir, Value: dir, Junk: true}, newDelivery())
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if filepath.Dir(res.File) != filepath.Join(dir, ".Junk", "new") {
			t.Errorf("File = %q, want the file in .Junk/new", res.File)
		}
	})
	t.Run("maildir CRLF message gets CRLF trace", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "Maildir")
		d := newDelivery()
		d.Message = []byte("Subject: s\r\n\r\nbody\r\n")
		res, err := Run(context.Background(), &rules.Action{Type: rules.TypeMaildir, Value: dir}, d)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		got, _ := os.ReadFile(res.File)
		want := "Return-Path: <sender@example.org>\r\nDelivered-To: rcpt+tag@example.com\r\nSubject: s\r\n\r\nbody\r\n"
		if string(got) != want {
			t.Errorf("delivered %q, want %q", got, want)
		}
	})
	t.Run("dump", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "dumps")
		d := newDelivery()
		res, err := Run(context.Background(), &rules.Action{Type: rules.TypeDump, Value: dir}, d)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if filepath.Dir(res.File) != dir || !strings.HasSuffix(res.File, ".json") {
			t.Errorf("File = %q, want a .json file in %s", res.File, dir)
		}
		data, err := os.ReadFile(res.File)
		if err != nil {
			t.Fatal(err)
		}
		got, err := dump.Decode(data)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		// The dump holds the message as received (no trace headers), so
		// that -j redelivers it exactly.
		want := dump.Dump{Sender: d.Sender, Recipients: d.Recipients, Recipient: d.Recipient, Mail: testMsg}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("dump = %+q, want %+q", got, want)
		}
	})
	for _, typ := range []string{rules.TypeNothing, rules.TypeDiscard} {
		t.Run(typ, func(t *testing.T) {
			dir := t.TempDir()
			res, err := Run(context.Background(), &rules.Action{Type: typ, Value: dir}, newDelivery())
			if err != nil || res != (Result{}) {
				t.Errorf("Run(%s) = %+v, %v; want nothing written, nil", typ, res, err)
			}
			if es, _ := os.ReadDir(dir); len(es) != 0 {
				t.Errorf("Run(%s) wrote %v", typ, es)
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	tmp := t.TempDir()
	marker := filepath.Join(tmp, "ran")
	script := writeScript(t, tmp, "touch.sh", "cat >/dev/null; : > "+marker+"\n")
	tests := []struct {
		name string
		a    rules.Action
		want string // substring of the error
	}{
		{"problem: maildir", rules.Action{Type: rules.TypeMaildir, Value: filepath.Join(tmp, "Maildir"), Problem: `unknown key "jnuk"`}, `unknown key "jnuk"`},
		{"problem: pipe", rules.Action{Type: rules.TypePipe, Cmd: script, Problem: "timeout must be a number"}, "timeout must be a number"},
		{"problem: forward", rules.Action{Type: rules.TypeForward, Addresses: []string{"a@x"}, Problem: "forward needs a value"}, "forward needs a value"},
		{"problem: unknown type", rules.Action{Type: "frobnicate", Problem: `unknown action type "frobnicate"`}, "frobnicate"},
		{"problem: nothing", rules.Action{Type: rules.TypeNothing, Problem: "stray key"}, "stray key"},
		{"unknown type", rules.Action{Type: "frobnicate"}, `"frobnicate"`},
		{"empty type", rules.Action{}, "unknown action type"},
		{"alias unexpanded", rules.Action{Type: rules.TypeAlias, Value: "x@y"}, "alias"},
		{"maildir relative path", rules.Action{Type: rules.TypeMaildir, Value: "Maildir"}, "not an absolute path"},
		{"dump relative path", rules.Action{Type: rules.TypeDump, Value: "dumps"}, "not an absolute path"},
		{"maildir under a regular file", rules.Action{Type: rules.TypeMaildir, Value: filepath.Join(script, "Maildir")}, "maildir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDelivery()
			d.Sendmail = script // a forward with a Problem must not run it
			_, err := Run(context.Background(), &tt.a, d)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run(%+v) error = %v, want one containing %q", tt.a, err, tt.want)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Errorf("the command ran although the action failed first")
			}
			if _, err := os.Stat(filepath.Join(tmp, "Maildir")); err == nil {
				t.Errorf("a Maildir was created for an action with a Problem")
			}
		})
	}
}

func TestExpandArg(t *testing.T) {
	d := &Delivery{Sender: "s@x", Recipient: "r@y"}
	tests := []struct{ arg, want string }{
		{"${sender}", "s@x"},
		{"${recipient}", "r@y"},
		{"x${sender}", "x${sender}"},
		{"${sender}y", "${sender}y"},
		{"${recipient}${sender}", "${recipient}${sender}"},
		{"--to=${recipient}", "--to=${recipient}"},
		{"${SENDER}", "${SENDER}"},
		{"$sender", "$sender"},
		{"${ sender }", "${ sender }"},
		{" ${sender}", " ${sender}"},
		{"${unknown}", "${unknown}"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := expand(tt.arg, d); got != tt.want {
			t.Errorf("expand(%q) = %q, want %q", tt.arg, got, tt.want)
		}
	}
	if got := expand("${sender}", &Delivery{}); got != "" {
		t.Errorf("expand(${sender}) with the null sender = %q, want \"\"", got)
	}
}

func TestCommandLines(t *testing.T) {
	d := &Delivery{Sender: "s@x", Recipient: "r@y", Sendmail: "/usr/sbin/sendmail", ForwardSender: "postmaster@y"}
	tests := []struct {
		name string
		a    *rules.Action
		got  func(*rules.Action, *Delivery) []string
		want []string
	}{
		{"pipe", &rules.Action{Type: rules.TypePipe, Cmd: "/bin/f", Args: []string{"${sender}", "${recipient}", "x${sender}", "3"}}, PipeCommand, []string{"/bin/f", "s@x", "r@y", "x${sender}", "3"}},
		{"pipe without args", &rules.Action{Type: rules.TypePipe, Cmd: "/bin/f"}, PipeCommand, []string{"/bin/f"}},
		{"forward", &rules.Action{Type: rules.TypeForward, Addresses: []string{"a@far", "-b@far"}}, ForwardCommand, []string{"/usr/sbin/sendmail", "-i", "-f", "postmaster@y", "--", "a@far", "-b@far"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.got(tt.a, d); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("argv = %q, want %q", got, tt.want)
			}
			if tt.a.Args != nil && tt.a.Args[0] != "${sender}" {
				t.Errorf("the action was changed: %q", tt.a.Args)
			}
		})
	}
}

// recorder is a filter that writes its argv (NUL-terminated) to $1.argv and
// its stdin to $1.stdin, and says how many arguments it got.
const recorder = `out=$1; shift
: > "$out.argv"
for a in "$@"; do printf '%s\0' "$a" >> "$out.argv"; done
cat > "$out.stdin"
echo "ok $#"
`

func splitArgv(b []byte) []string {
	args := []string{}
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		args = append(args, string(b[:i]))
		b = b[i+1:]
	}
	return args
}

func TestPipeArgsAndStdin(t *testing.T) {
	tmp := t.TempDir()
	script := writeScript(t, tmp, "recorder.sh", recorder)
	pwned := filepath.Join(tmp, "pwned")
	tests := []struct {
		name              string
		sender, recipient string
		msg               string
		args, want        []string
	}{
		{"exact placeholders", "s@x", "r@y", "S: s\n\nb\n",
			[]string{"${sender}", "${recipient}", "-f", "${sender}"},
			[]string{"s@x", "r@y", "-f", "s@x"}},
		{"substrings stay literal", "s@x", "r@y", "S: s\n\nb\n",
			[]string{"x${sender}", "${sender}y", "--to=${recipient}", "${recipient}${sender}"},
			[]string{"x${sender}", "${sender}y", "--to=${recipient}", "${recipient}${sender}"},
		},
		{"other spellings stay literal", "s@x", "r@y", "S: s\n\nb\n",
			[]string{"${SENDER}", "$sender", "${ sender }", "{recipient}", "${recipient", "${unknown}"},
			[]string{"${SENDER}", "$sender", "${ sender }", "{recipient}", "${recipient", "${unknown}"},
		},
		{"null sender is an empty argument", "", "r@y", "S: s\n\nb\n",
			[]string{"${sender}", "${recipient}"},
			[]string{"", "r@y"}},
		{"no shell: metacharacters are plain bytes", "s@x", "r@y", "S: s\n\nb\n",
			[]string{"$(touch " + pwned + ")", "`touch " + pwned + "`", "a b", "*", ";", "|", "> " + pwned, ""},
			[]string{"$(touch " + pwned + ")", "`touch " + pwned + "`", "a b", "*", ";", "|", "> " + pwned, ""}},
		{"no args", "s@x", "r@y", "S: s\n\nb\n", nil, []string{}},
		{"CRLF, 8-bit and NUL message", "s@x", "r@y", "S: \xff\r\n\r\n\x00\x82\xa0\r\n", []string{"${recipient}"}, []string{"r@y"}},
		{"empty message", "s@x", "r@y", "", nil, []string{}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(tmp, strconv.Itoa(i))
			d := &Delivery{Sender: tt.sender, Recipient: tt.recipient, Recipients: []string{tt.recipient}, Message: []byte(tt.msg)}
			a := &rules.Action{Type: rules.TypePipe, Cmd: script, Args: append([]string{out}, tt.args...)}
			res, err := Run(context.Background(), a, d)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if want := "ok " + strconv.Itoa(len(tt.want)); res.Output != want {
				t.Errorf("Output = %q, want %q (the command's output)", res.Output, want)
			}
			argv, err := os.ReadFile(out + ".argv")
			if err != nil {
				t.Fatal(err)
			}
			if got := splitArgv(argv); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("argv = %q, want %q", got, tt.want)
			}
			stdin, err := os.ReadFile(out + ".stdin")
			if err != nil {
				t.Fatal(err)
			}
			eol := "\n"
			if strings.HasPrefix(tt.msg, "S: \xff\r\n") {
				eol = "\r\n"
			}
			want := "Return-Path: <" + tt.sender + ">" + eol + "Delivered-To: " + tt.recipient + eol + tt.msg
			if string(stdin) != want {
				t.Errorf("stdin = %q, want %q", stdin, want)
			}
			if _, err := os.Stat(pwned); err == nil {
				t.Errorf("an argument was run by a shell")
			}
		})
	}
}

// TestPipeIsolation: the command has its own pipes (never the agent's
// stdout/stderr, which Postfix reads as the delivery status) and its own
// process group (so a timeout can kill its children).
func TestPipeIsolation(t *testing.T) {
	tmp := t.TempDir()
	out := filepath.Join(tmp, "out")
	script := writeScript(t, tmp, "fds.sh", `cat >/dev/null
fd0=$(readlink /proc/$$/fd/0) fd1=$(readlink /proc/$$/fd/1) fd2=$(readlink /proc/$$/fd/2)
printf '%s\n' "$fd0" "$fd1" "$fd2" "$$ $(cut -d' ' -f5 /proc/$$/stat)" > "$1"
`)
	if _, err := Run(context.Background(), &rules.Action{Type: rules.TypePipe, Cmd: script, Args: []string{out}}, newDelivery()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 4 {
		t.Fatalf("script output %q", b)
	}
	for fd, link := range lines[:3] {
		if !strings.HasPrefix(link, "pipe:") {
			t.Errorf("child fd %d is %s, want a pipe of its own", fd, link)
		}
		if own, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd)); fd > 0 && own == link {
			t.Errorf("child fd %d is the agent's own %s", fd, own)
		}
	}
	var pid, pgid int
	if f := strings.Fields(lines[3]); len(f) == 2 {
		pid, _ = strconv.Atoi(f[0])
		pgid, _ = strconv.Atoi(f[1])
	}
	if pid == 0 || pgid != pid || pgid == syscall.Getpgrp() {
		t.Errorf("child pid %d runs in process group %d (ours %d), want a group of its own", pid, pgid, syscall.Getpgrp())
	}
}

func TestPipeFailures(t *testing.T) {
	tmp := t.TempDir()
	notExec := filepath.Join(tmp, "not-exec.sh")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		script string // body; "" means use cmd as is
		cmd    string
		want   []string // substrings of the error
		reject []string // must not appear in the error
	}{
		{"exit 3 with output", "cat >/dev/null\necho 'first line of trouble'\necho 'second line'\nexit 3\n", "",
			[]string{"exit status 3", "first line of trouble"}, []string{"second line"}},
		{"exit 4, stderr only", "cat >/dev/null\necho 'oops on stderr' >&2\nexit 4\n", "",
			[]string{"exit status 4", "oops on stderr"}, nil},
		{"exit 1, no output", "cat >/dev/null\nexit 1\n", "",
			[]string{"exit status 1"}, []string{"exit status 1:"}},
		{"exit 75 (a filter's tempfail is still an error)", "cat >/dev/null\necho '4.3.0 try later'\nexit 75\n", "",
			[]string{"exit status 75", "4.3.0 try later"}, nil},
		{"leading blank output lines", "cat >/dev/null\necho\necho '  real first line'\nexit 2\n", "",
			[]string{"exit status 2", "real first line"}, nil},
		{"exit 1 without reading stdin", "exit 1\n", "",
			[]string{"exit status 1"}, []string{"broken pipe"}},
		{"killed by a signal", "cat >/dev/null\nkill -TERM $$\n", "",
			[]string{"signal: terminated"}, nil},
		{"missing command (absolute)", "", filepath.Join(tmp, "no-such-filter"),
			[]string{"no-such-filter"}, nil},
		{"missing command (PATH)", "", "quietmx-no-such-filter",
			[]string{"quietmx-no-such-filter", "not found"}, nil},
		{"not executable", "", notExec,
			[]string{"not-exec.sh", "permission denied"}, nil},
		{"a directory", "", tmp,
			[]string{tmp}, nil},
		{"empty cmd", "", "",
			[]string{"exec"}, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := tt.cmd
			if tt.script != "" {
				cmd = writeScript(t, tmp, "s"+strconv.Itoa(i)+".sh", tt.script)
			}
			start := time.Now()
			_, err := Run(context.Background(), &rules.Action{Type: rules.TypePipe, Cmd: cmd}, newDelivery())
			if err == nil {
				t.Fatalf("Run(%s) = nil, want an error", cmd)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			for _, r := range tt.reject {
				if strings.Contains(err.Error(), r) {
					t.Errorf("error %q contains %q", err, r)
				}
			}
			if strings.Contains(err.Error(), "killed after timeout") {
				t.Errorf("error %q blames a timeout that was never set", err)
			}
			if time.Since(start) > 3*time.Second {
				t.Errorf("Run took %v", time.Since(start))
			}
		})
	}
}

func TestPipeSuccessWithoutReadingStdin(t *testing.T) {
	tmp := t.TempDir()
	big := bytes.Repeat([]byte("0123456789abcde\n"), 10<<20/16) // 10 MiB
	tests := []struct{ name, script string }{
		{"exits at once", "exit 0\n"},
		{"reads one line", "read line\necho \"$line\"\nexit 0\n"},
		{"closes stdin then works", "exec 0<&-\nsleep 0.1\necho done\n"},
		{"reads 100 KiB", "head -c 102400 >/dev/null\n"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			script := writeScript(t, tmp, "s"+strconv.Itoa(i)+".sh", tt.script)
			d := newDelivery()
			d.Message = big
			start := time.Now()
			if _, err := Run(context.Background(), &rules.Action{Type: rules.TypePipe, Cmd: script}, d); err != nil {
				t.Errorf("Run = %v, want success (EPIPE on the unread stdin is not a failure)", err)
			}
			if el := time.Since(start); el > 3*time.Second {
				t.Errorf("Run took %v", el)
			}
		})
	}
}

func TestPipeOutputCapped(t *testing.T) {
	tmp := t.TempDir()
	script := writeScript(t, tmp, "chatty.sh", "cat >/dev/null\nhead -c 1000000 /dev/zero | tr '\\0' x\necho\nexit 0\n")
	res, err := Run(context.Background(), &rules.Action{Type: rules.TypePipe, Cmd: script}, newDelivery())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(res.Output) != outputLimit || strings.Trim(res.Output, "x") != "" {
		t.Errorf("Output has %d bytes, want the first %d of the output", len(res.Output), outputLimit)
	}
	// A failing command's error carries at most a short first line.
	script = writeScript(t, tmp, "chatty-fail.sh", "cat >/dev/null\nhead -c 100000 /dev/zero | tr '\\0' y\nexit 9\n")
	_, err = Run(context.Background(), &rules.Action{Type: rules.TypePipe, Cmd: script}, newDelivery())
	if err == nil || !strings.Contains(err.Error(), "exit status 9") || len(err.Error()) > 600 {
		t.Errorf("error = %.300q (%d bytes), want exit status 9 and a short line", err, len(err.Error()))
	}
}

func TestPipeTimeout(t *testing.T) {
	tmp := t.TempDir()
	pids := filepath.Join(tmp, "pids")
	// The grandchild holds the output pipe too: only killing the whole
	// group lets Run return.
	script := writeScript(t, tmp, "hang.sh", `sleep 1000 &
echo $! > "$1.grandchild"
echo $$ > "$1.child"
echo started
sleep 1000
`)
	quick := writeScript(t, tmp, "quick.sh", "cat >/dev/null\nsleep 0.2\necho fine\n")
	t.Parallel()

	t.Run("kills child and grandchild", func(t *testing.T) {
		start := time.Now()
		res, err := Run(context.Background(), &rules.Action{Type: rules.TypePipe, Cmd: script, Args: []string{pids}, Timeout: time.Second}, newDelivery())
		elapsed := time.Since(start)
		child, grandchild := readPid(t, pids+".child"), readPid(t, pids+".grandchild")
		defer killIfAlive(child)
		defer killIfAlive(grandchild)
		if err == nil || !strings.Contains(err.Error(), "killed after timeout") {
			t.Errorf("Run error = %v, want killed after timeout", err)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Run error = %v, want it to wrap context.DeadlineExceeded", err)
		}
		if elapsed < time.Second || elapsed > 4*time.Second {
			t.Errorf("Run returned after %v, want soon after the 1s timeout", elapsed)
		}
		if res.Output != "started" {
			t.Errorf("Output = %q, want the output so far", res.Output)
		}
		if !gone(child) {
			t.Errorf("child %d still alive after the timeout", child)
		}
		if !gone(grandchild) {
			t.Errorf("grandchild %d still alive after the timeout", grandchild)
		}
	})
	t.Run("a timeout that does not expire", func(t *testing.T) {
		res, err := Run(context.Background(), &rules.Action{Type: rules.TypePipe, Cmd: quick, Timeout: 10 * time.Second}, newDelivery())
		if err != nil || res.Output != "fine" {
			t.Errorf("Run = %q, %v; want fine, nil", res.Output, err)
		}
	})
}

// TestPipeGrandchildHoldsOutput: a command that exits 0 but leaves a
// grandchild holding its output pipe succeeded; Run must not wait for the
// grandchild (Postfix would time out and bounce) and must not leave it.
func TestPipeGrandchildHoldsOutput(t *testing.T) {
	tmp := t.TempDir()
	pidFile := filepath.Join(tmp, "grandchild")
	script := writeScript(t, tmp, "daemonize.sh", `cat >/dev/null
sleep 1000 &
echo $! > "$1"
echo done
exit 0
`)
	t.Parallel()
	start := time.Now()
	res, err := Run(context.Background(), &rules.Action{Type: rules.TypePipe, Cmd: script, Args: []string{pidFile}}, newDelivery())
	elapsed := time.Since(start)
	grandchild := readPid(t, pidFile)
	defer killIfAlive(grandchild)
	if err != nil {
		t.Errorf("Run = %v, want success", err)
	}
	if res.Output != "done" {
		t.Errorf("Output = %q, want done", res.Output)
	}
	if elapsed > waitDelay+3*time.Second {
		t.Errorf("Run returned after %v, want at most waitDelay (%v) and a margin", elapsed, waitDelay)
	}
	if !gone(grandchild) {
		t.Errorf("grandchild %d still alive after Run returned", grandchild)
	}
}

func TestPipeContextCancel(t *testing.T) {
	tmp := t.TempDir()
	pids := filepath.Join(tmp, "pids")
	script := writeScript(t, tmp, "hang.sh", `sleep 1000 &
echo $! > "$1.grandchild"
echo $$ > "$1.child.tmp" && mv "$1.child.tmp" "$1.child"
sleep 1000
`)
	fwdPid := filepath.Join(tmp, "sendmail-grandchild")
	hangingSendmail := writeScript(t, tmp, "sendmail-hang", "sleep 1000 &\necho $! > "+fwdPid+"\nsleep 1000\n")
	t.Parallel()

	t.Run("cancel while running", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		type result struct {
			err     error
			elapsed time.Duration
		}
		done := make(chan result, 1)
		var start time.Time
		go func() {
			s := time.Now()
			_, err := Run(ctx, &rules.Action{Type: rules.TypePipe, Cmd: script, Args: []string{pids}}, newDelivery())
			done <- result{err, time.Since(s)}
		}()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := os.Stat(pids + ".child"); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the command never started")
			}
			time.Sleep(10 * time.Millisecond)
		}
		child, grandchild := readPid(t, pids+".child"), readPid(t, pids+".grandchild")
		defer killIfAlive(child)
		defer killIfAlive(grandchild)
		start = time.Now()
		cancel()
		select {
		case r := <-done:
			if !errors.Is(r.err, context.Canceled) {
				t.Errorf("Run error = %v, want it to wrap context.Canceled", r.err)
			}
		case <-time.After(4 * time.Second):
			t.Fatal("Run did not return within 4s of the cancellation")
		}
		t.Logf("returned %v after cancel", time.Since(start))
		if !gone(child) {
			t.Errorf("child %d still alive after cancel", child)
		}
		if !gone(grandchild) {
			t.Errorf("grandchild %d still alive after cancel", grandchild)
		}
	})
	t.Run("already cancelled: nothing runs", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		p := filepath.Join(tmp, "never")
		_, err := Run(ctx, &rules.Action{Type: rules.TypePipe, Cmd: script, Args: []string{p}}, newDelivery())
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run error = %v, want context.Canceled", err)
		}
		time.Sleep(100 * time.Millisecond)
		if _, err := os.Stat(p + ".grandchild"); err == nil {
			t.Errorf("the command ran with a cancelled context")
		}
	})
	t.Run("forward: cancel kills sendmail", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		d := newDelivery()
		d.Sendmail = hangingSendmail
		start := time.Now()
		_, err := Run(ctx, &rules.Action{Type: rules.TypeForward, Addresses: []string{"a@x"}}, d)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
			t.Errorf("Run = %v after %v, want a context error soon after 300ms", err, time.Since(start))
		}
		grandchild := readPid(t, fwdPid)
		defer killIfAlive(grandchild)
		if !gone(grandchild) {
			t.Errorf("sendmail's child %d still alive after the deadline", grandchild)
		}
	})
}

func TestForward(t *testing.T) {
	tmp := t.TempDir()
	// A fake sendmail that records its argv and stdin next to itself.
	fake := writeScript(t, tmp, "sendmail", `d=$(dirname "$0")
printf '%s\0' "$@" > "$d/argv"
cat > "$d/stdin"
`)
	tempfail := writeScript(t, tmp, "sendmail-75", "cat >/dev/null\necho 'sendmail: fatal: queue file write error'\nexit 75\n")
	tests := []struct {
		name      string
		fwdSender string
		addrs     []string
		want      []string
	}{
		{"two addresses", "forwarder@local.example", []string{"a@x", "b@y"},
			[]string{"-i", "-f", "forwarder@local.example", "--", "a@x", "b@y"}},
		{"one address", "fwd@local", []string{"a@x"},
			[]string{"-i", "-f", "fwd@local", "--", "a@x"}},
		{"an address that looks like an option stays after --", "fwd@local", []string{"-oQ/tmp@x", "-bv"},
			[]string{"-i", "-f", "fwd@local", "--", "-oQ/tmp@x", "-bv"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(filepath.Join(tmp, "argv"))
			os.Remove(filepath.Join(tmp, "stdin"))
			d := newDelivery()
			d.Sendmail = fake
			d.ForwardSender = tt.fwdSender
			if _, err := Run(context.Background(), &rules.Action{Type: rules.TypeForward, Addresses: tt.addrs}, d); err != nil {
				t.Fatalf("Run: %v", err)
			}
			argv, err := os.ReadFile(filepath.Join(tmp, "argv"))
			if err != nil {
				t.Fatal(err)
			}
			if got := splitArgv(argv); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("sendmail argv = %q, want %q", got, tt.want)
			}
			stdin, err := os.ReadFile(filepath.Join(tmp, "stdin"))
			if err != nil {
				t.Fatal(err)
			}
			// The original sender stays in Return-Path; the envelope
			// sender of the forward is ours.
			if want := traceFor(d) + string(testMsg); string(stdin) != want {
				t.Errorf("sendmail stdin = %q, want %q", stdin, want)
			}
		})
	}
	t.Run("sendmail exits 75", func(t *testing.T) {
		d := newDelivery()
		d.Sendmail = tempfail
		d.ForwardSender = "fwd@local"
		_, err := Run(context.Background(), &rules.Action{Type: rules.TypeForward, Addresses: []string{"a@x"}}, d)
		if err == nil || !strings.Contains(err.Error(), "exit status 75") || !strings.Contains(err.Error(), "queue file write error") {
			t.Errorf("Run = %v, want an error with exit status 75 and sendmail's message", err)
		}
	})
	t.Run("sendmail missing", func(t *testing.T) {
		d := newDelivery()
		d.Sendmail = filepath.Join(tmp, "no-sendmail")
		if _, err := Run(context.Background(), &rules.Action{Type: rules.TypeForward, Addresses: []string{"a@x"}}, d); err == nil {
			t.Errorf("Run with a missing sendmail = nil, want an error")
		}
	})
}
