package supervisor

import (
	"net"
	"path/filepath"
	"quietmx/internal/maillog/maillogtest"
	"strings"
	"sync"
	"testing"
)

// TestGuard: a panic in a guarded goroutine reaches fatal, named and with
// its stack, instead of vanishing; a normal return reports nothing.
func TestGuard(t *testing.T) {
	fatal := make(chan error, 1)
	report := func(err error) { fatal <- err }
	guard("quiet", report, func() {})
	select {
	case err := <-fatal:
		t.Fatalf("a normal return reported %v", err)
	default:
	}
	go guard("the reaper", report, func() { panic("wait4 went wrong") })
	err := <-fatal
	if msg := err.Error(); !strings.HasPrefix(msg, "the reaper panicked: wait4 went wrong\n") || !strings.Contains(msg, "guard_test.go") {
		t.Errorf("fatal error = %q, want the name, the panic and the stack", msg)
	}
}

// panicWriter is a container log that breaks.
type panicWriter struct{}

func (panicWriter) Write([]byte) (int, error) { panic("log writer broke") }

// TestLogRelayPanicStopsSupervisor: a panic while relaying a line reaches
// the supervisor's fatal channel (so it stops and exits non-zero) instead
// of silently ending the relay.
func TestLogRelayPanicStopsSupervisor(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	var mu sync.Mutex
	relay, err := listenLog(sock, panicWriter{}, &mu)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.close()
	s := newSupervisor(Options{Out: &maillogtest.Buffer{}})
	relay.start(s.fail)
	c, err := net.Dial("unixgram", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("<22>Nov 23 07:48:40 altpostlocal[42]: msg=delivery")); err != nil {
		t.Fatal(err)
	}
	err = <-s.fatal
	if !strings.Contains(err.Error(), "the log relay panicked: log writer broke") {
		t.Errorf("fatal error = %v", err)
	}
	// The lock the relay held is free again (mu is not left locked).
	if !mu.TryLock() {
		t.Error("the relay left the log lock held")
	}
}
