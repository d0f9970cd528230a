// Package maillog is where the agent's one line per delivery goes. Under
// pipe(8) the agent must not write to stdout or stderr (Postfix reads them
// as the delivery status), so the line goes to the system log socket, a
// file or a datagram socket chosen by flag; in the appliance, `quietmx run`
// owns /dev/log and copies every line to the container log.
package maillog

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Open returns a logger for dest and a function that closes it:
//
//	"" or "syslog"   the system log (/dev/log), facility mail, tag altpostlocal;
//	                 discarded when there is none
//	"stderr"         standard error (for a person running the agent by hand)
//	"unix:PATH"      a unix datagram socket
//	PATH             a file, appended to
//
// Opening never fails: a sink that cannot be opened is replaced by a
// discarding one, because logging must never stop a delivery.
func Open(dest string, also io.Writer) (*slog.Logger, func()) {
	var sink lineWriter
	var closer = func() {}
	switch {
	case dest == "" || dest == "syslog":
		for _, p := range []string{"/dev/log", "/var/run/syslog", "/var/run/log"} {
			if fd, err := dialUnixgram(p); err == nil {
				sink = &syslogSink{fd: fd, pid: os.Getpid()}
				closer = func() { syscall.Close(fd) }
				break
			}
		}
	case dest == "stderr":
		sink = plainSink{os.Stderr}
	case strings.HasPrefix(dest, "unix:"):
		if fd, err := dialUnixgram(strings.TrimPrefix(dest, "unix:")); err == nil {
			f := os.NewFile(uintptr(fd), dest)
			sink = plainSink{f}
			closer = func() { f.Close() }
		}
	default:
		if f, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640); err == nil {
			sink = plainSink{f}
			closer = func() { f.Close() }
		}
	}
	h := &handler{sink: sink, also: also}
	return slog.New(h), closer
}

// dialUnixgram connects a datagram socket with plain system calls: the
// agent starts once per message, and the net package (which log/syslog
// would pull in) costs milliseconds of start-up.
func dialUnixgram(path string) (int, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

type lineWriter interface {
	writeLine(level slog.Level, line string)
}

// syslogSink writes RFC 3164 lines, facility mail, tag altpostlocal.
type syslogSink struct {
	fd  int
	pid int
}

func (s *syslogSink) writeLine(level slog.Level, line string) {
	sev := 6 // info
	switch {
	case level >= slog.LevelError:
		sev = 3
	case level >= slog.LevelWarn:
		sev = 4
	}
	msg := fmt.Sprintf("<%d>%s altpostlocal[%d]: %s", 2*8+sev, time.Now().Format(time.Stamp), s.pid, line)
	_, _ = syscall.Write(s.fd, []byte(msg))
}

type plainSink struct{ w io.Writer }

func (s plainSink) writeLine(_ slog.Level, line string) {
	_, _ = io.WriteString(s.w, "altpostlocal: "+line+"\n")
}

// handler formats records as logfmt (slog's text form, without the time:
// syslog and the container log add their own) and writes each as one line.
type handler struct {
	mu    sync.Mutex
	sink  lineWriter
	also  io.Writer
	attrs []slog.Attr
}

func (h *handler) Enabled(context.Context, slog.Level) bool { return true }

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	var buf bytes.Buffer
	th := slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}).WithAttrs(h.attrs)
	if err := th.Handle(context.Background(), r); err != nil {
		return err
	}
	line := strings.TrimRight(buf.String(), "\n")
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sink != nil {
		h.sink.writeLine(r.Level, line)
	}
	if h.also != nil {
		fmt.Fprintln(h.also, line)
	}
	return nil
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &handler{sink: h.sink, also: h.also, attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], attrs...)}
}

func (h *handler) WithGroup(string) slog.Handler { return h }
