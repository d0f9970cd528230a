//go:build e2e

package e2e

// Helpers for the routing and security scenarios (routing_test.go,
// security_test.go): the agent's delivery log lines, the trace headers of a
// delivered message, every folder of an IMAP account, raw SMTP dialogues
// (from the host, and from bash inside a container), and the container's
// listening sockets and processes.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/testcontainers/testcontainers-go"
)

// rtPassword is the password of every mailbox of these tests: a
// password_file ("pw") in the spec directory, hashed by the renderer.
const rtPassword = "routing-e2e-secret"

// rtFiles are the spec directory's files: the password file plus extra.
func rtFiles(extra map[string]string) map[string]string {
	files := map[string]string{"pw": rtPassword + "\n"}
	for k, v := range extra {
		files[k] = v
	}
	return files
}

// agentLine is one "msg=delivery" line of the agent (logfmt), by key.
type agentLine map[string]string

// parseLogfmt reads the key=value pairs of a logfmt line; words without
// '=' (a syslog prefix such as "altpostlocal[42]:") are skipped.
func parseLogfmt(line string) agentLine {
	m := agentLine{}
	s := line
	for {
		s = strings.TrimLeft(s, " ")
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return m
		}
		if sp := strings.IndexByte(s, ' '); sp >= 0 && sp < eq {
			s = s[sp+1:]
			continue
		}
		k := s[:eq]
		s = s[eq+1:]
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return m
			}
			m[k], _ = strconv.Unquote(q)
			s = s[len(q):]
			continue
		}
		end := strings.IndexByte(s, ' ')
		if end < 0 {
			end = len(s)
		}
		m[k] = s[:end]
		s = s[end:]
	}
}

// agentLines returns the agent's delivery lines in the container log.
func (a *Appliance) agentLines() []agentLine {
	var out []agentLine
	for _, l := range strings.Split(a.Logs(), "\n") {
		if strings.Contains(l, "msg=delivery") {
			out = append(out, parseLogfmt(l))
		}
	}
	return out
}

// waitAgentLines waits until the agent has logged at least n
// deliveries, and returns them.
func (a *Appliance) waitAgentLines(n int, within time.Duration) []agentLine {
	a.t.Helper()
	var lines []agentLine
	waitFor(a.t, within, func() bool { lines = a.agentLines(); return len(lines) >= n },
		func() string {
			return fmt.Sprintf("the agent logged %d deliveries, want %d:\n%v", len(lines), n, lines)
		})
	return lines
}

// waitAgentLine waits until the agent has logged a delivery for the
// recipient (as Postfix gave it: orig_recipient), and returns the line.
func (a *Appliance) waitAgentLine(rcpt string, within time.Duration) agentLine {
	a.t.Helper()
	var found agentLine
	waitFor(a.t, within, func() bool {
		for _, l := range a.agentLines() {
			if strings.EqualFold(l["orig_recipient"], rcpt) {
				found = l
				return true
			}
		}
		return false
	}, func() string { return "no delivery line for " + rcpt + " in the container log" })
	return found
}

// waitLogMatch waits until re matches the container log, and returns the
// first match's submatches.
func (a *Appliance) waitLogMatch(re *regexp.Regexp, within time.Duration) []string {
	a.t.Helper()
	var m []string
	waitFor(a.t, within, func() bool { m = re.FindStringSubmatch(a.Logs()); return m != nil },
		func() string { return fmt.Sprintf("container log: nothing matches %q", re) })
	return m
}

// trace is what the appliance prepends to a message it delivers: the
// agent's Return-Path and Delivered-To lines, then Postfix's Received:
// header and the sender checks' Authentication-Results (in the order the
// milter placed it); Body is everything after them, which must be exactly
// the bytes the client sent.
type trace struct {
	ReturnPath, DeliveredTo, Received, AuthResults string
	Body                                           []byte
}

// splitTrace cuts a message as read over IMAP (CRLF line ends) into its
// trace and the original message.
func splitTrace(t *testing.T, msg []byte) trace {
	t.Helper()
	var tr trace
	line := func() string {
		i := bytes.Index(msg, []byte("\r\n"))
		if i < 0 {
			t.Fatalf("delivered message: no line end in %q", head(msg))
		}
		l := string(msg[:i])
		msg = msg[i+2:]
		return l
	}
	l1, l2 := line(), line()
	var ok1, ok2 bool
	tr.ReturnPath, ok1 = strings.CutPrefix(l1, "Return-Path: ")
	tr.DeliveredTo, ok2 = strings.CutPrefix(l2, "Delivered-To: ")
	if !ok1 || !ok2 {
		t.Fatalf("delivered message does not start with Return-Path and Delivered-To:\n%s", head(msg))
	}
	// One Received: and at most one Authentication-Results:, each with its
	// folded lines.
	field := func() string {
		f := []string{line()}
		for len(msg) > 0 && (msg[0] == ' ' || msg[0] == '\t') {
			f = append(f, line())
		}
		return strings.Join(f, "\r\n")
	}
	for {
		switch {
		case tr.Received == "" && bytes.HasPrefix(msg, []byte("Received: ")):
			tr.Received = field()
			continue
		case tr.AuthResults == "" && bytes.HasPrefix(msg, []byte("Authentication-Results: ")):
			tr.AuthResults = field()
			continue
		}
		break
	}
	if tr.Received == "" {
		t.Fatalf("no Received: header after the agent's trace lines:\n%s", head(msg))
	}
	tr.Body = msg
	return tr
}

func head(b []byte) string {
	if len(b) > 600 {
		b = b[:600]
	}
	return string(b)
}

// sameBytes compares two messages without printing megabytes: it names
// the first difference.
func sameBytes(got, want []byte) error {
	if bytes.Equal(got, want) {
		return nil
	}
	n := min(len(got), len(want))
	i := 0
	for i < n && got[i] == want[i] {
		i++
	}
	lo := max(0, i-40)
	return fmt.Errorf("%d bytes, want %d; first difference at byte %d: got %q, want %q",
		len(got), len(want), i, got[lo:min(len(got), i+40)], want[lo:min(len(want), i+40)])
}

var subjectRe = regexp.MustCompile(`(?mi)^Subject: ([^\r\n]*)`)

func subjectOf(msg []byte) string {
	if m := subjectRe.FindSubmatch(msg); m != nil {
		return string(m[1])
	}
	return ""
}

// folders lists every mailbox of the logged-in account with its LIST
// attributes (special-use included).
func folders(t *testing.T, c *imapclient.Client) map[string][]imap.MailboxAttr {
	t.Helper()
	list, err := c.List("", "*", &imap.ListOptions{ReturnSpecialUse: true}).Collect()
	if err != nil {
		t.Fatalf("imap list: %v", err)
	}
	out := map[string][]imap.MailboxAttr{}
	for _, d := range list {
		out[d.Mailbox] = d.Attrs
	}
	return out
}

// allMessages reads every message of every folder of the account, by
// folder.
func allMessages(t *testing.T, c *imapclient.Client) map[string][][]byte {
	t.Helper()
	out := map[string][][]byte{}
	for name := range folders(t, c) {
		out[name] = readFolder(t, c, name)
	}
	return out
}

// readFolder reads every message of a folder (fetchAll leaves no mailbox
// selected, so later STATUS polls see new mail).
func readFolder(t *testing.T, c *imapclient.Client, mailbox string) [][]byte {
	t.Helper()
	return fetchAll(t, c, mailbox)
}

// waitFolder waits until the folder holds at least n messages and
// returns them all. Unlike WaitMessages, a folder that does not exist yet
// counts as empty (the agent creates a Maildir++ folder with its first
// message), and no mailbox stays selected afterwards.
func waitFolder(t *testing.T, c *imapclient.Client, mailbox string, n int, within time.Duration) [][]byte {
	t.Helper()
	got := 0
	var err error
	waitFor(t, within, func() bool {
		var st *imap.StatusData
		st, err = c.Status(mailbox, &imap.StatusOptions{NumMessages: true}).Wait()
		switch {
		case err == nil && st.NumMessages != nil:
			got = int(*st.NumMessages)
		case err != nil && !strings.Contains(err.Error(), "doesn't exist"):
			t.Fatalf("status %s: %v", mailbox, err)
		}
		return got >= n
	}, func() string {
		return fmt.Sprintf("mailbox %s: %d messages, want %d (status error: %v)", mailbox, got, n, err)
	})
	return readFolder(t, c, mailbox)
}

// smtpReply is one (possibly multi-line) SMTP reply.
type smtpReply struct {
	Code int
	Text string // every line, joined by "\n", codes stripped
}

func (r smtpReply) String() string { return fmt.Sprintf("%d %s", r.Code, r.Text) }

// rawSMTP is an SMTP dialogue on a plain TCP connection with nothing in
// between: what the client writes is exactly what goes on the wire. Only
// for what the suite's sender (harness, go-smtp) cannot say on purpose:
// bare newlines (smuggling), DSN parameters the server does not offer,
// EXPN. Everything else goes through harness.
type rawSMTP struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialRawSMTP(t *testing.T, address string) (*rawSMTP, smtpReply) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", address, 10*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", address, err)
	}
	t.Cleanup(func() { conn.Close() })
	s := &rawSMTP{t: t, conn: conn, r: bufio.NewReader(conn)}
	banner, err := s.read()
	if err != nil {
		t.Fatalf("banner: %v", err)
	}
	return s, banner
}

// read reads one reply (io.EOF when the server closed the connection).
func (s *rawSMTP) read() (smtpReply, error) {
	s.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var rep smtpReply
	var lines []string
	for {
		l, err := s.r.ReadString('\n')
		if err != nil {
			return rep, err
		}
		l = strings.TrimRight(l, "\r\n")
		if len(l) < 3 {
			return rep, fmt.Errorf("malformed reply line %q", l)
		}
		code, err := strconv.Atoi(l[:3])
		if err != nil {
			return rep, fmt.Errorf("malformed reply line %q", l)
		}
		rep.Code = code
		if len(l) > 4 {
			lines = append(lines, l[4:])
		}
		if len(l) == 3 || l[3] != '-' {
			rep.Text = strings.Join(lines, "\n")
			return rep, nil
		}
	}
}

// write sends raw bytes.
func (s *rawSMTP) write(b string) {
	s.t.Helper()
	s.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := s.conn.Write([]byte(b)); err != nil {
		s.t.Fatalf("write: %v", err)
	}
}

// cmd sends one command line (CRLF added) and reads the reply.
func (s *rawSMTP) cmd(line string) smtpReply {
	s.t.Helper()
	s.write(line + "\r\n")
	rep, err := s.read()
	if err != nil {
		s.t.Fatalf("%s: %v", line, err)
	}
	return rep
}

// bashSMTP is a bash script (bash's /dev/tcp: the image has no nc or
// swaks) that speaks SMTP to $1 port 25, sends each further argument as a
// command line, and prints every reply line as "S: ..." and every command
// as "C: ...".
const bashSMTP = `set -u
exec 3<>"/dev/tcp/$1/25" || exit 111
shift
reply() {
  while IFS= read -r -t 20 l <&3; do
    l=${l%$'\r'}
    echo "S: $l"
    case "$l" in [0-9][0-9][0-9]-*) ;; *) return 0 ;; esac
  done
  echo "S: <EOF>"
}
reply
for c in "$@"; do
  printf '%s\r\n' "$c" >&3
  echo "C: $c"
  reply
done
`

// parseBashSMTP turns bashSMTP's transcript into the final line of each
// reply, in order (the banner first).
func parseBashSMTP(out string) []string {
	var replies []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimRight(l, "\r")
		r, ok := strings.CutPrefix(l, "S: ")
		if !ok || (len(r) > 3 && r[3] == '-') {
			continue
		}
		replies = append(replies, r)
	}
	return replies
}

// relayProbe is the dialogue every relay attempt uses: the reply to its
// RCPT is the fourth (banner, EHLO, MAIL, RCPT, DATA, QUIT).
func relayProbe(rcpt string) []string {
	return []string{"EHLO probe.e2e.example", "MAIL FROM:<probe@outside.example>", "RCPT TO:<" + rcpt + ">", "DATA", "QUIT"}
}

// listeningPorts reads the TCP sockets the container listens on (every
// address, IPv4 and IPv6) from /proc/net/tcp{,6}: no ss or netstat needed.
// Sockets bound to loopback only (the supervisor's login guard) are left
// out: no client outside the container can reach them.
func (a *Appliance) listeningPorts() []int {
	a.t.Helper()
	out := a.MustExec("cat", "/proc/net/tcp", "/proc/net/tcp6")
	seen := map[int]bool{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 4 || f[3] != "0A" { // 0A = LISTEN
			continue
		}
		hexAddr, hexPort, ok := strings.Cut(f[1], ":")
		if !ok || strings.HasSuffix(hexAddr, "7F") || hexAddr == "00000000000000000000000001000000" {
			continue // 127.x.x.x (little-endian) or ::1
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err == nil {
			seen[int(p)] = true
		}
	}
	var ports []int
	for p := range seen {
		ports = append(ports, p)
	}
	sort.Ints(ports)
	return ports
}

// processes lists the command lines of every process in the container
// (from /proc: the image has no ps).
func (a *Appliance) processes() []string {
	a.t.Helper()
	out := a.MustExec("sh", "-c", `for p in /proc/[0-9]*; do tr '\0' ' ' < "$p/cmdline" 2>/dev/null; echo; done`)
	var ps []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			ps = append(ps, l)
		}
	}
	return ps
}

// sideContainer runs another container of the same image on the network,
// doing nothing (sleep) until the test execs commands in it; it is removed
// when the test ends.
func sideContainer(t *testing.T, network string) testcontainers.Container {
	t.Helper()
	ctx := context.Background()
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Image:      Image,
			Entrypoint: []string{"/bin/sleep", "600"},
			Networks:   []string{network},
		},
		Started: true,
	})
	if c != nil {
		t.Cleanup(func() { _ = testcontainers.TerminateContainer(c, testcontainers.StopTimeout(0)) })
	}
	if err != nil {
		t.Fatalf("start the side container: %v", err)
	}
	return c
}

// ipOn is a container's address on the named network.
func ipOn(t *testing.T, c testcontainers.Container, network string) string {
	t.Helper()
	info, err := c.Inspect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n, ok := info.NetworkSettings.Networks[network]
	if !ok || !n.IPAddress.IsValid() {
		t.Fatalf("container not on network %s: %v", network, info.NetworkSettings.Networks)
	}
	return n.IPAddress.String()
}
