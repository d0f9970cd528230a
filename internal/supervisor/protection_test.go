package supervisor

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"quietmx/internal/loginguard"
	"quietmx/internal/spec"
)

// TestPostscreenDir: the cache directory is made, owned by postfix, and a
// second start leaves it as it is.
func TestPostscreenDir(t *testing.T) {
	u, err := user.Lookup("postfix")
	if err != nil || os.Geteuid() != 0 {
		// make test-unit installs the tools first: a missing one fails.
		t.Fatalf("needs root and a postfix user (internal/render/install-tools.sh): euid %d, %v", os.Geteuid(), err)
	}
	dir := filepath.Join(t.TempDir(), "spool", "postscreen")
	for i := 0; i < 2; i++ {
		if err := ensurePostfixDir(dir); err != nil {
			t.Fatal(err)
		}
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	if got := st.Sys().(*syscall.Stat_t).Uid; int(got) != uid || st.Mode().Perm() != 0o700 {
		t.Fatalf("owner %d mode %v, want %d 0700", got, st.Mode().Perm(), uid)
	}
}

// TestFollowLoginGuard: a new spec's limit reaches the running guard, and
// a supervisor without one (unit tests, a guard that could not listen)
// takes new specs all the same.
func TestFollowLoginGuard(t *testing.T) {
	s := newSupervisor(Options{})
	s.followLoginGuard(&spec.Spec{Protection: spec.Protection{IMAPFailuresPerMinute: 3}})
	g := loginguard.New(10, t.Logf)
	s.loginGuard = g
	s.followLoginGuard(&spec.Spec{Protection: spec.Protection{IMAPFailuresPerMinute: 1}})
	if !g.Allow("192.0.2.1") || g.Allow("192.0.2.1") {
		t.Fatal("the guard did not take the new limit of 1")
	}
}
