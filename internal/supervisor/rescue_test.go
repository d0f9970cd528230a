package supervisor

import (
	"os"
	"path/filepath"
	"testing"
)

func TestEnsureRescueDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test chowns files and must run as root (as the appliance does)")
	}
	mail := filepath.Join(t.TempDir(), "mail")
	if err := os.MkdirAll(filepath.Join(mail, "vmail"), 0o700); err != nil {
		t.Fatal(err)
	}

	// The generated rules' rescue: a plain directory, made as vmail.
	plain := filepath.Join(mail, "vmail", "rescue")
	created, err := EnsureRescueDir(mail, plain, 5000, 5000)
	if err != nil || len(created) != 1 || created[0] != plain {
		t.Fatalf("plain: created %v, %v", created, err)
	}
	if u, g := owner(t, plain); u != 5000 || g != 5000 {
		t.Errorf("plain: owner %d:%d", u, g)
	}
	if st, _ := os.Stat(plain); st.Mode().Perm() != 0o700 {
		t.Errorf("plain: mode %v", st.Mode().Perm())
	}
	// Existing: nothing to do, nothing changed.
	if created, err := EnsureRescueDir(mail, plain, 5000, 5000); err != nil || len(created) != 0 {
		t.Errorf("again: created %v, %v", created, err)
	}

	// A Maildir's new/: parents, tmp/ and cur/ too, all vmail's.
	md := filepath.Join(mail, "vmail", "example.com", "rescue", "Maildir")
	created, err = EnsureRescueDir(mail, md+"/new", 5000, 5000)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Dir(filepath.Dir(md)), filepath.Dir(md), md, md + "/new", md + "/tmp", md + "/cur"} {
		if u, g := owner(t, p); u != 5000 || g != 5000 {
			t.Errorf("%s: owner %d:%d", p, u, g)
		}
	}
	if len(created) != 6 {
		t.Errorf("created %v, want 6 directories", created)
	}

	// Outside the mail volume, relative, or a file in the way: left alone.
	for _, d := range []string{"/tmp/elsewhere/rescue", "relative/rescue", "", mail} {
		if created, err := EnsureRescueDir(mail, d, 5000, 5000); err != nil || len(created) != 0 {
			t.Errorf("%q: created %v, %v", d, created, err)
		}
	}
	if _, err := os.Stat("/tmp/elsewhere"); err == nil {
		t.Errorf("created a directory outside the mail volume")
	}
	file := filepath.Join(mail, "vmail", "afile")
	os.WriteFile(file, nil, 0o600)
	if _, err := EnsureRescueDir(mail, file+"/rescue", 5000, 5000); err == nil {
		t.Errorf("a file in the path: no error")
	}
}
