package maillog

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

func TestSinks(t *testing.T) {
	dir := t.TempDir()
	// A file.
	file := filepath.Join(dir, "agent.log")
	log, done := Open(file, nil)
	log.Info("delivery", "recipient", "a@example.com", "outcome", "delivered")
	done()
	data, _ := os.ReadFile(file)
	if !strings.Contains(string(data), "level=INFO msg=delivery recipient=a@example.com outcome=delivered") || strings.Contains(string(data), "time=") {
		t.Errorf("file sink wrote %q", data)
	}
	// A datagram socket (what the appliance's supervisor listens on).
	sock := filepath.Join(dir, "log.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	log, done = Open("unix:"+sock, nil)
	log.Warn("delivery", "outcome", "rescued")
	done()
	buf := make([]byte, 4096)
	n, _, err := conn.ReadFrom(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "level=WARN msg=delivery outcome=rescued") {
		t.Errorf("socket sink: %q %v", buf[:n], err)
	}
	// An unopenable destination never fails the delivery: it discards.
	log, done = Open(filepath.Join(dir, "no/such/dir/x.log"), nil)
	log.Error("delivery")
	done()
}

func TestSyslogFormat(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	sink := &syslogSink{fd: fds[0], pid: 42}
	for level, pri := range map[slog.Level]string{slog.LevelInfo: "<22>", slog.LevelWarn: "<20>", slog.LevelError: "<19>"} {
		sink.writeLine(level, "msg=delivery x=y")
		buf := make([]byte, 512)
		n, _ := syscall.Read(fds[1], buf)
		re := regexp.MustCompile(`^` + regexp.QuoteMeta(pri) + `[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d altpostlocal\[42\]: msg=delivery x=y$`)
		if !re.Match(buf[:n]) {
			t.Errorf("level %v: %q", level, buf[:n])
		}
	}
}
