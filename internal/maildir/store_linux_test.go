package maildir_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"quietmx/internal/maildir"
)

// fsEvent is one inotify event: what happened to name in dir.
type fsEvent struct {
	dir, name string
	mask      uint32
}

func (e fsEvent) is(dir, name string, mask uint32) bool {
	return e.dir == dir && e.name == name && e.mask&mask != 0
}

// fsEvents runs f and returns, in order, the creations, writes, closes after
// writing, and removals of files in dirs while it ran. The kernel queues the
// events, so unlike polling this does not depend on scheduling.
func fsEvents(t *testing.T, dirs []string, f func()) []fsEvent {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	defer syscall.Close(fd)
	wds := map[int32]string{}
	for _, d := range dirs {
		wd, err := syscall.InotifyAddWatch(fd, d, syscall.IN_CREATE|syscall.IN_MODIFY|syscall.IN_CLOSE_WRITE|syscall.IN_DELETE|syscall.IN_MOVED_TO)
		if err != nil {
			t.Fatalf("inotify watch %s: %v", d, err)
		}
		wds[int32(wd)] = d
	}
	f()
	var events []fsEvent
	buf := make([]byte, 64<<10)
	for {
		n, err := syscall.Read(fd, buf)
		if errors.Is(err, syscall.EAGAIN) {
			return events
		}
		if err != nil {
			t.Fatalf("inotify read: %v", err)
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+int(ev.Len)]
			if ev.Mask&syscall.IN_Q_OVERFLOW != 0 {
				t.Fatal("inotify queue overflow")
			}
			events = append(events, fsEvent{wds[ev.Wd], string(bytes.TrimRight(name, "\x00")), ev.Mask})
			off += syscall.SizeofInotifyEvent + int(ev.Len)
		}
	}
}

// checkDurableWrite checks the event order of one durable write: the file
// was created and fully written under a temporary name in tmpDir, closed,
// and only then did its final name appear in finalDir, never to be written
// under it; the temporary name is gone at the end.
func checkDurableWrite(t *testing.T, events []fsEvent, tmpDir, finalDir, final string) {
	t.Helper()
	index := func(match func(fsEvent) bool) int {
		for i, e := range events {
			if match(e) {
				return i
			}
		}
		return -1
	}
	appeared := index(func(e fsEvent) bool { return e.is(finalDir, final, syscall.IN_CREATE|syscall.IN_MOVED_TO) })
	if appeared < 0 {
		t.Fatalf("%s never appeared in %s; events %v", final, finalDir, events)
	}
	tmpCreated := index(func(e fsEvent) bool { return e.dir == tmpDir && e.mask&syscall.IN_CREATE != 0 })
	if tmpCreated < 0 || tmpCreated >= appeared {
		t.Fatalf("no temporary file created in %s before %s appeared; events %v", tmpDir, final, events)
	}
	temp := events[tmpCreated].name
	if tmpDir == finalDir && !strings.HasPrefix(temp, ".") {
		t.Errorf("temporary %q in the final directory is not a dot-file (a reader would see it)", temp)
	}
	closed := index(func(e fsEvent) bool { return e.is(tmpDir, temp, syscall.IN_CLOSE_WRITE) })
	if closed < 0 || closed > appeared {
		t.Errorf("%s appeared (event %d) before the temporary %s was closed (event %d); events %v", final, appeared, temp, closed, events)
	}
	for i, e := range events {
		if e.is(finalDir, final, syscall.IN_MODIFY|syscall.IN_CLOSE_WRITE) {
			t.Errorf("event %d: %s was written under its final name: %v", i, final, e)
		}
		if e.dir == finalDir && e.name != final && e.name != temp {
			t.Errorf("event %d: unexpected file %s in %s", i, e.name, finalDir)
		}
	}
	if index(func(e fsEvent) bool { return e.is(tmpDir, temp, syscall.IN_DELETE) }) < appeared {
		t.Errorf("temporary %s not removed after the link; events %v", temp, events)
	}
}

func TestStore(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcde\n"), 1<<16) // 1 MiB
	t.Run("plain dir: dot-temp then link", func(t *testing.T) {
		dir := t.TempDir()
		var path string
		var err error
		events := fsEvents(t, []string{dir}, func() { path, err = maildir.Store(dir, ".eml", []byte("Subject: x\n\n"), payload) })
		if err != nil {
			t.Fatalf("Store: %v", err)
		}
		if !strings.HasSuffix(path, ".eml") || filepath.Dir(path) != dir {
			t.Fatalf("Store = %s, want a .eml file in %s", path, dir)
		}
		checkDurableWrite(t, events, dir, dir, filepath.Base(path))
		if es := entries(t, dir); len(es) != 1 || es[0] != filepath.Base(path) {
			t.Errorf("dir = %q, want exactly [%s] (no dot-file left)", es, filepath.Base(path))
		}
		if !nameRE.MatchString(strings.TrimSuffix(filepath.Base(path), ".eml")) {
			t.Errorf("name %q is not a Maildir name", filepath.Base(path))
		}
		want := append([]byte("Subject: x\n\n"), payload...)
		if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, want) {
			t.Errorf("stored %d bytes (%v), want the %d bytes given", len(b), err, len(want))
		}
		wantMode(t, path, 0o600)
	})
	t.Run("Maildir new/: sibling tmp/", func(t *testing.T) {
		md := t.TempDir()
		for _, sub := range []string{"tmp", "new", "cur"} {
			if err := os.Mkdir(filepath.Join(md, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		newDir, tmpDir := filepath.Join(md, "new"), filepath.Join(md, "tmp")
		var path string
		var err error
		events := fsEvents(t, []string{tmpDir, newDir}, func() { path, err = maildir.Store(newDir+"/", "", payload) })
		if err != nil {
			t.Fatalf("Store: %v", err)
		}
		if filepath.Dir(path) != newDir {
			t.Fatalf("Store = %s, want a file in %s", path, newDir)
		}
		checkDurableWrite(t, events, tmpDir, newDir, filepath.Base(path))
		if es := entries(t, newDir); len(es) != 1 {
			t.Errorf("new/ = %q, want one file", es)
		}
		if es := entries(t, tmpDir); len(es) != 0 {
			t.Errorf("tmp/ = %q, want empty", es)
		}
		if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, payload) {
			t.Errorf("content differs (%d bytes, %v)", len(b), err)
		}
	})
	t.Run("dir named new without tmp/ sibling: dot-temp", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "new")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		var path string
		var err error
		events := fsEvents(t, []string{dir}, func() { path, err = maildir.Store(dir, ".json", []byte(`{}`)) })
		if err != nil {
			t.Fatalf("Store: %v", err)
		}
		checkDurableWrite(t, events, dir, dir, filepath.Base(path))
		if es := entries(t, dir); len(es) != 1 || es[0] != filepath.Base(path) {
			t.Errorf("dir = %q, want exactly [%s]", es, filepath.Base(path))
		}
	})
	t.Run("bytes preserved", func(t *testing.T) {
		dir := t.TempDir()
		parts := [][]byte{[]byte("A: \xff\r\n"), {0, 0, '\r'}, []byte("\x1b$B\x1b(B")}
		path, err := maildir.Store(dir, "", parts...)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(path); !bytes.Equal(b, concat(parts)) {
			t.Errorf("content = %q, want %q", b, concat(parts))
		}
	})
}

// TestDeliverWritesInTmp: Deliver writes in tmp/ and links into new/ only
// once the file is complete, for the inbox and for .Junk.
func TestDeliverWritesInTmp(t *testing.T) {
	for _, junk := range []bool{false, true} {
		t.Run(map[bool]string{false: "inbox", true: "junk"}[junk], func(t *testing.T) {
			md := t.TempDir()
			folder := md
			if junk {
				folder = filepath.Join(md, maildir.JunkFolder)
			}
			// A first delivery creates the directories to watch.
			if _, err := maildir.Deliver(md, junk, []byte("first")); err != nil {
				t.Fatal(err)
			}
			tmpDir, newDir := filepath.Join(folder, "tmp"), filepath.Join(folder, "new")
			var path string
			var err error
			events := fsEvents(t, []string{tmpDir, newDir}, func() {
				path, err = maildir.Deliver(md, junk, []byte("Return-Path: <a@b>\n"), bytes.Repeat([]byte("x\r\n"), 100000))
			})
			if err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			checkDurableWrite(t, events, tmpDir, newDir, filepath.Base(path))
		})
	}
}
