package supervisor

import (
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestClearRunState leaves what a SIGKILLed Dovecot and Postfix leave (a
// master.pid naming a live process, sockets, fifos, a login/ directory)
// and checks that nothing of it survives, while the directories stay.
func TestClearRunState(t *testing.T) {
	root := t.TempDir()
	dovecot := filepath.Join(root, "run", "dovecot")
	pid := filepath.Join(root, "spool", "pid")
	for _, d := range []string{filepath.Join(dovecot, "login"), pid} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// PID 1 is always alive: the stale file Dovecot refused to start on.
	write := func(p, data string) {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dovecot, "master.pid"), "1\n")
	write(filepath.Join(pid, "master.pid"), "         1\n")
	write(filepath.Join(pid, "unix.cleanup"), "")
	if err := syscall.Mkfifo(filepath.Join(dovecot, "login", "login"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(dovecot, "auth-login"))
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()

	n, err := ClearRunState([]string{dovecot, pid, filepath.Join(root, "missing")})
	if err != nil {
		t.Fatalf("ClearRunState: %v", err)
	}
	if n != 5 {
		t.Errorf("removed %d entries, want 5", n)
	}
	for _, d := range []string{dovecot, pid} {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatalf("%s: %v (the directory itself must stay)", d, err)
		}
		if len(entries) != 0 {
			t.Errorf("%s still holds %v", d, entries)
		}
	}
	// Nothing to clear is not an error.
	if n, err := ClearRunState([]string{dovecot}); n != 0 || err != nil {
		t.Errorf("second ClearRunState = %d, %v; want 0, nil", n, err)
	}
}
