package maildir_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"quietmx/internal/maildir"
)

// nameRE is the Maildir name UniqueName promises:
// <sec>.M<usec>P<pid>Q<n>R<random>.<host>.
var nameRE = regexp.MustCompile(`^[0-9]+\.M[0-9]+P[0-9]+Q[0-9]+R[0-9a-f]{8}\.[^/:]+$`)

// fastDir returns a fresh directory on tmpfs (/dev/shm) when there is one,
// else t.TempDir(). For tests of names and bytes, which do not depend on the
// filesystem: there each fsync is free, where on a small VM's disk 1,000
// deliveries (two fsyncs each) take seconds. Durability under SIGKILL is
// tested on the real disk.
func fastDir(t *testing.T) string {
	t.Helper()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "quietmx-maildir-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

func concat(parts [][]byte) []byte { return bytes.Join(parts, nil) }

// entries lists the names in dir (nil if dir does not exist).
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatalf("ReadDir(%s): %v", dir, err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func wantMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("Stat(%s): %v", path, err)
	}
	if got := st.Mode(); got != want {
		t.Errorf("mode of %s = %v, want %v", path, got, want)
	}
}

func TestDeliver(t *testing.T) {
	tests := []struct {
		name  string
		junk  bool
		parts [][]byte
	}{
		{"plain LF", false, [][]byte{[]byte("Return-Path: <a@b>\nDelivered-To: x@y\n"), []byte("Subject: hi\n\nbody\n")}},
		{"CRLF kept", false, [][]byte{[]byte("Return-Path: <a@b>\r\nDelivered-To: x@y\r\n"), []byte("Subject: hi\r\n\r\nbody\r\n")}},
		{"lone CR kept", false, [][]byte{[]byte("A: b\r"), []byte("\rbody\r")}},
		{"8-bit and NUL", false, [][]byte{[]byte("Subject: \x82\xa0\xff\n\n"), []byte("\x00\x01\xfe\xff\x00 tail without newline")}},
		{"ISO-2022-JP escapes", false, [][]byte{[]byte("Subject: \x1b$B$\"\x1b(B\n\n\x1b$B$3$s$K$A$O\x1b(B\n")}},
		{"one part", false, [][]byte{[]byte("only part")}},
		{"empty message", false, nil},
		{"empty parts", false, [][]byte{{}, []byte("x"), {}}},
		{"junk", true, [][]byte{[]byte("Return-Path: <spam@b>\n"), []byte("Subject: buy\n\n\x00\xff\r\n")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "home", "Maildir")
			path, err := maildir.Deliver(dir, tt.junk, tt.parts...)
			if err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			folder := dir
			if tt.junk {
				folder = filepath.Join(dir, ".Junk")
				if _, err := os.Stat(filepath.Join(folder, "maildirfolder")); err != nil {
					t.Errorf(".Junk/maildirfolder: %v", err)
				}
				wantMode(t, folder, fs.ModeDir|0o700)
				// Nothing may land in the inbox.
				if es := entries(t, filepath.Join(dir, "new")); len(es) != 0 {
					t.Errorf("inbox new/ = %q, want empty for junk", es)
				}
			}
			wantMode(t, dir, fs.ModeDir|0o700)
			for _, sub := range []string{"tmp", "new", "cur"} {
				wantMode(t, filepath.Join(folder, sub), fs.ModeDir|0o700)
			}
			if got, want := filepath.Dir(path), filepath.Join(folder, "new"); got != want {
				t.Errorf("Deliver returned %s, want a file in %s", path, want)
			}
			if es := entries(t, filepath.Join(folder, "new")); len(es) != 1 || es[0] != filepath.Base(path) {
				t.Errorf("new/ = %q, want exactly [%s]", es, filepath.Base(path))
			}
			for _, sub := range []string{"tmp", "cur"} {
				if es := entries(t, filepath.Join(folder, sub)); len(es) != 0 {
					t.Errorf("%s/ = %q, want empty", sub, es)
				}
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if want := concat(tt.parts); !bytes.Equal(got, want) {
				t.Errorf("content = %q, want %q", got, want)
			}
			wantMode(t, path, 0o600)
			if name := filepath.Base(path); !nameRE.MatchString(name) || strings.Contains(name, ":2,") {
				t.Errorf("name %q does not match %v (or carries :2, info)", name, nameRE)
			}
		})
	}
}

func TestDeliverIntoExistingMaildir(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	old := filepath.Join(dir, "cur", "1.old:2,S")
	if err := os.WriteFile(old, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	path, err := maildir.Deliver(dir, false, []byte("new mail"))
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if b, err := os.ReadFile(old); err != nil || string(b) != "old" {
		t.Errorf("existing message changed: %q, %v", b, err)
	}
	// Existing directories keep their mode: Deliver only creates.
	wantMode(t, filepath.Join(dir, "new"), fs.ModeDir|0o750)
	if b, _ := os.ReadFile(path); string(b) != "new mail" {
		t.Errorf("content = %q", b)
	}
	// A junk delivery next to the inbox leaves the inbox alone.
	jpath, err := maildir.Deliver(dir, true, []byte("spam"))
	if err != nil {
		t.Fatalf("Deliver junk: %v", err)
	}
	if want := filepath.Join(dir, ".Junk", "new"); filepath.Dir(jpath) != want {
		t.Errorf("junk path %s, want in %s", jpath, want)
	}
	if es := entries(t, filepath.Join(dir, "new")); len(es) != 1 {
		t.Errorf("inbox new/ = %q, want the one earlier message", es)
	}
}

func TestDeliverRefusesRelativePath(t *testing.T) {
	for _, dir := range []string{"Maildir", "./Maildir", "../Maildir", "", "home/x/Maildir/"} {
		t.Run(fmt.Sprintf("%q", dir), func(t *testing.T) {
			cwd := t.TempDir()
			t.Chdir(filepath.Join(cwd))
			if p, err := maildir.Deliver(dir, false, []byte("x")); err == nil {
				t.Fatalf("Deliver(%q) = %s, nil; want an error", dir, p)
			}
			if es := entries(t, cwd); len(es) != 0 {
				t.Errorf("Deliver(%q) created %q in the working directory", dir, es)
			}
			// Store must refuse it even when the relative directory exists.
			if dir != "" && !strings.HasPrefix(dir, "..") {
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			if p, err := maildir.Store(dir, "", []byte("x")); err == nil {
				t.Errorf("Store(%q) = %s, nil; want an error", dir, p)
			}
			if dir != "" && !strings.HasPrefix(dir, "..") {
				if es := entries(t, dir); len(es) != 0 {
					t.Errorf("Store(%q) wrote %q", dir, es)
				}
			}
		})
	}
}

func checkNames(t *testing.T, names []string, want int) {
	t.Helper()
	if len(names) != want {
		t.Errorf("%d files, want %d", len(names), want)
	}
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if seen[n] {
			t.Errorf("duplicate name %q", n)
		}
		seen[n] = true
		if strings.Contains(n, ":2,") || strings.Contains(n, ":") {
			t.Errorf("name %q carries info (:2,) in new/", n)
		}
		if !nameRE.MatchString(n) {
			t.Errorf("name %q does not match %v", n, nameRE)
		}
	}
}

func TestUniqueNamesSequential(t *testing.T) {
	t.Parallel()
	dir := fastDir(t)
	const n = 1000
	for i := range n {
		if _, err := maildir.Deliver(dir, false, fmt.Appendf(nil, "message %d\n", i)); err != nil {
			t.Fatalf("Deliver #%d: %v", i, err)
		}
	}
	names := entries(t, filepath.Join(dir, "new"))
	checkNames(t, names, n)
	// Every message is there, each once.
	got := map[string]bool{}
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, "new", name))
		if err != nil {
			t.Fatal(err)
		}
		got[string(b)] = true
	}
	if len(got) != n {
		t.Errorf("%d distinct messages in new/, want %d", len(got), n)
	}
	if es := entries(t, filepath.Join(dir, "tmp")); len(es) != 0 {
		t.Errorf("tmp/ = %d entries, want empty", len(es))
	}
}

func TestUniqueNamesConcurrent(t *testing.T) {
	t.Parallel()
	t.Run("Deliver", func(t *testing.T) {
		// A fresh directory: the goroutines also race to create it.
		dir := filepath.Join(fastDir(t), "Maildir")
		const workers, each = 8, 25
		var wg sync.WaitGroup
		errs := make(chan error, workers*each)
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					if _, err := maildir.Deliver(dir, w%2 == 1, fmt.Appendf(nil, "%d/%d", w, i)); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("Deliver: %v", err)
		}
		checkNames(t, entries(t, filepath.Join(dir, "new")), workers*each/2)
		checkNames(t, entries(t, filepath.Join(dir, ".Junk", "new")), workers*each/2)
	})
	t.Run("UniqueName", func(t *testing.T) {
		const workers, each = 8, 2000
		var mu sync.Mutex
		var wg sync.WaitGroup
		var names []string
		for range workers {
			wg.Go(func() {
				local := make([]string, 0, each)
				for range each {
					local = append(local, maildir.UniqueName())
				}
				mu.Lock()
				names = append(names, local...)
				mu.Unlock()
			})
		}
		wg.Wait()
		checkNames(t, names, workers*each)
	})
}

func TestStoreRefusesMissingDir(t *testing.T) {
	base := t.TempDir()
	for _, dir := range []string{
		filepath.Join(base, "missing"),
		filepath.Join(base, "missing", "new"),
	} {
		if p, err := maildir.Store(dir, "", []byte("x")); err == nil {
			t.Errorf("Store(%s) = %s, nil; want an error", dir, p)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Store created %s (Stat: %v); a missing directory is the operator's to fix", dir, err)
		}
	}
}

// visible lists every file (not directory) under root, relative to it.
func visible(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return files
}

// TestUnwritable checks that every way a write can fail returns an error
// and leaves no message behind (no partial file in new/, no orphan in tmp/).
// Permission bits do not stop root, so when running as root the cases use
// failures that bind root too (a regular file where a directory should be).
func TestUnwritable(t *testing.T) {
	root := os.Geteuid() == 0
	mkMaildir := func(t *testing.T, md string) {
		for _, sub := range []string{"tmp", "new", "cur"} {
			if err := os.MkdirAll(filepath.Join(md, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	file := func(t *testing.T, p string) {
		if err := os.WriteFile(p, []byte("i am a file"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		needUser bool // permission bits: meaningless as root
		// setup prepares base and returns the directory to write to and the
		// files that may legitimately exist afterwards.
		setup func(t *testing.T, base string) (string, []string)
		store bool // Store instead of Deliver
		// mayWork: succeeding is also correct (with a complete file).
		mayWork bool
	}{
		{"Deliver: parent is a regular file", false, func(t *testing.T, base string) (string, []string) {
			file(t, filepath.Join(base, "f"))
			return filepath.Join(base, "f", "Maildir"), []string{"f"}
		}, false, false},
		{"Deliver: Maildir is a regular file", false, func(t *testing.T, base string) (string, []string) {
			file(t, filepath.Join(base, "Maildir"))
			return filepath.Join(base, "Maildir"), []string{"Maildir"}
		}, false, false},
		{"Deliver: new/ is a regular file (link fails after the write)", false, func(t *testing.T, base string) (string, []string) {
			md := filepath.Join(base, "Maildir")
			for _, sub := range []string{"tmp", "cur"} {
				os.MkdirAll(filepath.Join(md, sub), 0o700)
			}
			file(t, filepath.Join(md, "new"))
			return md, []string{"Maildir/new"}
		}, false, false},
		{"Deliver: tmp/ is a regular file", false, func(t *testing.T, base string) (string, []string) {
			md := filepath.Join(base, "Maildir")
			for _, sub := range []string{"new", "cur"} {
				os.MkdirAll(filepath.Join(md, sub), 0o700)
			}
			file(t, filepath.Join(md, "tmp"))
			return md, []string{"Maildir/tmp"}
		}, false, false},
		{"Deliver junk: .Junk is a regular file", false, func(t *testing.T, base string) (string, []string) {
			md := filepath.Join(base, "Maildir")
			mkMaildir(t, md)
			file(t, filepath.Join(md, ".Junk"))
			return md, []string{"Maildir/.Junk"}
		}, false, false},
		{"Store: dir is a regular file", false, func(t *testing.T, base string) (string, []string) {
			file(t, filepath.Join(base, "rescue"))
			return filepath.Join(base, "rescue"), []string{"rescue"}
		}, true, false},
		{"Store: new/ with a sibling tmp/ that is a file", false, func(t *testing.T, base string) (string, []string) {
			// tmp is not a directory: Store must fall back to a dot-temp
			// in new/ and succeed, or fail cleanly; either way no debris.
			md := filepath.Join(base, "Maildir")
			os.MkdirAll(filepath.Join(md, "new"), 0o700)
			file(t, filepath.Join(md, "tmp"))
			return filepath.Join(md, "new"), []string{"Maildir/tmp"}
		}, true, true},
		{"Deliver: read-only parent (0500)", true, func(t *testing.T, base string) (string, []string) {
			p := filepath.Join(base, "home")
			os.Mkdir(p, 0o500)
			return filepath.Join(p, "Maildir"), nil
		}, false, false},
		{"Deliver: read-only tmp/ (0500)", true, func(t *testing.T, base string) (string, []string) {
			md := filepath.Join(base, "Maildir")
			mkMaildir(t, md)
			os.Chmod(filepath.Join(md, "tmp"), 0o500)
			return md, nil
		}, false, false},
		{"Deliver: read-only new/ (0500)", true, func(t *testing.T, base string) (string, []string) {
			md := filepath.Join(base, "Maildir")
			mkMaildir(t, md)
			os.Chmod(filepath.Join(md, "new"), 0o500)
			return md, nil
		}, false, false},
		{"Store: read-only dir (0500)", true, func(t *testing.T, base string) (string, []string) {
			p := filepath.Join(base, "rescue")
			os.Mkdir(p, 0o500)
			return p, nil
		}, true, false},
	}
	for _, tt := range tests {
		if tt.needUser && root {
			// As root, permission bits do not stop writes, so these rows
			// cannot fail here; the regular-file rows cover root. They are
			// not run (and not counted) rather than skipped as passing.
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			dir, allowed := tt.setup(t, base)
			var path string
			var err error
			if tt.store {
				path, err = maildir.Store(dir, "", []byte("message"))
			} else {
				path, err = maildir.Deliver(dir, strings.Contains(tt.name, "junk"), []byte("message"))
			}
			left := visible(t, base)
			if err == nil {
				// Only acceptable where the test says so: a complete file.
				if !tt.mayWork {
					t.Fatalf("got %s, nil; want an error", path)
				}
				allowed = append(allowed, strings.TrimPrefix(path, base+"/"))
				if b, _ := os.ReadFile(path); string(b) != "message" {
					t.Errorf("stored %q, want the whole message", b)
				}
			}
			if !equalSets(left, allowed) {
				t.Errorf("files left: %q, want only %q (err %v)", left, allowed, err)
			}
			// The error names the directory, for the delivery log.
			if err != nil && !strings.Contains(err.Error(), dir) && !strings.Contains(err.Error(), filepath.Dir(dir)) {
				t.Errorf("error %q does not name %s", err, dir)
			}
		})
	}
}

func equalSets(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

func TestDeliverLarge(t *testing.T) {
	t.Parallel()
	// 50 MiB with every byte value, CR, LF and NUL included.
	block := make([]byte, 1<<16)
	for i := range block {
		block[i] = byte(i*7 + i>>13)
	}
	body := make([]byte, 0, 50<<20)
	for n := uint64(0); len(body) < 50<<20; n++ {
		body = binary.BigEndian.AppendUint64(body, n) // number blocks: a shift shows
		body = append(body, block[:min(len(block), 50<<20-len(body))]...)
	}
	head := []byte("Return-Path: <a@b>\r\nDelivered-To: x@y\r\n")
	dir := fastDir(t)
	path, err := maildir.Deliver(dir, false, head, body)
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if err := sameContent(path, head, body); err != nil {
		t.Errorf("50 MiB round trip: %v", err)
	}
	if es := entries(t, filepath.Join(dir, "tmp")); len(es) != 0 {
		t.Errorf("tmp/ = %q, want empty", es)
	}
}
