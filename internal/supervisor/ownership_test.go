package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func owner(t *testing.T, p string) (int, int) {
	t.Helper()
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	s := st.Sys().(*syscall.Stat_t)
	return int(s.Uid), int(s.Gid)
}

func TestCheckOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test chowns files and must run as root (as the appliance does)")
	}
	root := filepath.Join(t.TempDir(), "vmail")
	rep, err := CheckOwnership(root, 5000, 5000)
	if err != nil || !rep.Created {
		t.Fatalf("create: %+v %v", rep, err)
	}
	if u, g := owner(t, root); u != 5000 || g != 5000 {
		t.Errorf("created root owned by %d:%d", u, g)
	}
	// A root-owned tree, as a bind mount from the host would be.
	box := filepath.Join(root, "example.com/me/Maildir/new")
	os.MkdirAll(box, 0o700)
	os.WriteFile(filepath.Join(box, "msg"), []byte("x"), 0o600)
	os.Symlink("/etc/passwd", filepath.Join(root, "link"))
	os.Chown(root, 0, 0)
	rep, err = CheckOwnership(root, 5000, 5000)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Wrong == 0 || rep.Fixed != rep.Wrong {
		t.Errorf("report %+v", rep)
	}
	for _, p := range []string{root, box, filepath.Join(box, "msg"), filepath.Join(root, "link")} {
		if u, g := owner(t, p); u != 5000 || g != 5000 {
			t.Errorf("%s owned by %d:%d after the fix", p, u, g)
		}
	}
	if u, _ := owner(t, "/etc/passwd"); u != 0 {
		t.Fatalf("followed a symlink out of the volume")
	}
	if adv := rep.Advice(5000, 5000); !strings.Contains(adv, "chown -R 5000:5000") {
		t.Errorf("advice %q", adv)
	}
	// Clean: nothing to do, no advice.
	rep, _ = CheckOwnership(root, 5000, 5000)
	if rep.Wrong != 0 || rep.Advice(5000, 5000) != "" {
		t.Errorf("second pass: %+v", rep)
	}
}
