package supervisor

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"sync"
)

// logRelay owns the system log socket (/dev/log) inside the container and
// copies every line to the container log. The agent runs as vmail under
// pipe(8), which keeps only a little of a command's output, so its one
// line per delivery comes here through syslog(3).
type logRelay struct {
	conn *net.UnixConn
	out  io.Writer
	mu   *sync.Mutex
}

// syslogLine matches "<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG" (RFC 3164, as Go's
// log/syslog and glibc write it), optionally with a host name.
var (
	syslogHead  = regexp.MustCompile(`^<\d{1,3}>(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d |\d{4}-\d\d-\d\dT[^ ]+ )`)
	hostThenTag = regexp.MustCompile(`^[^ \[:]+ [^ \[:]+\[\d+\]:`)
)

func listenLog(path string, out io.Writer, mu *sync.Mutex) (*logRelay, error) {
	_ = os.Remove(path)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	// Every local user (vmail, postfix) must be able to log.
	if err := os.Chmod(path, 0o666); err != nil {
		conn.Close()
		return nil, err
	}
	return &logRelay{conn: conn, out: out, mu: mu}, nil
}

// start serves in its own goroutine until close; a panic goes to fatal
// (see guard).
func (l *logRelay) start(fatal func(error)) {
	go guard("the log relay", fatal, l.serve)
}

func (l *logRelay) serve() {
	buf := make([]byte, 64<<10)
	for {
		n, _, err := l.conn.ReadFromUnix(buf)
		if err != nil {
			return
		}
		l.write(stripSyslog(buf[:n]))
	}
}

// write copies one line out. The lock is released even if the write
// panics: the supervisor must still be able to log why it stops.
func (l *logRelay) write(line []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.out, "%s\n", line)
}

// stripSyslog removes the priority, time stamp and host of a syslog line,
// keeping "tag[pid]: message" (the container log adds its own time).
func stripSyslog(b []byte) []byte {
	b = bytes.TrimRight(b, "\n\x00")
	if loc := syslogHead.FindIndex(b); loc != nil {
		b = b[loc[1]:]
		if hostThenTag.Match(b) {
			b = b[bytes.IndexByte(b, ' ')+1:]
		}
	}
	return bytes.ReplaceAll(b, []byte("\n"), []byte(" "))
}

func (l *logRelay) close() { l.conn.Close() }
