// Package maildir writes messages durably: a file is visible under its final
// name only once it is complete and fsynced, and the directory entry is
// fsynced too. It knows nothing of rules or routing.
//
// A crash or kill at any moment leaves at most an orphan in tmp/ (or a
// dot-file for Store), never a partial message in new/: Postfix then retries
// and delivers again, so a message may arrive twice but never half.
package maildir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// JunkFolder is the Maildir++ folder Dovecot shows as the Junk mailbox.
const JunkFolder = ".Junk"

var counter atomic.Uint64

var hostname = sync.OnceValue(func() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	// Maildir reserves / and : in names.
	return strings.NewReplacer("/", `\057`, ":", `\072`).Replace(h)
})

// UniqueName returns a Maildir file name, unique across processes, hosts and
// calls in the same microsecond: <sec>.M<usec>P<pid>Q<n>R<random>.<host>.
func UniqueName() string {
	now := time.Now()
	var r [4]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%d.M%dP%dQ%dR%s.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(),
		counter.Add(1), hex.EncodeToString(r[:]), hostname())
}

// Deliver writes the concatenation of parts as a new message into the
// Maildir at dir (into its .Junk folder when junk is set), creating dir,
// tmp/, new/ and cur/ as needed. It returns the path in new/ only after the
// file is fsynced there and new/ is synced.
func Deliver(dir string, junk bool, parts ...[]byte) (string, error) {
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("maildir %q: not an absolute path", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("maildir %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", fmt.Errorf("maildir %s: %w", dir, err)
	}
	defer root.Close()
	// The Maildir itself always gets tmp/ new/ cur/, even when this
	// message goes to .Junk: Dovecot expects the INBOX to be complete.
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := mkdirIn(root, sub); err != nil {
			return "", fmt.Errorf("maildir %s: %w", dir, err)
		}
	}
	folder := "."
	if junk {
		folder = JunkFolder
		if err := mkdirIn(root, folder); err != nil {
			return "", fmt.Errorf("maildir %s: %w", dir, err)
		}
		// Dovecot treats a Maildir++ folder with this marker as a mailbox.
		if f, err := root.OpenFile(folder+"/maildirfolder", os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
			f.Close()
		}
	}
	if junk {
		for _, sub := range []string{"tmp", "new", "cur"} {
			if err := mkdirIn(root, folder+"/"+sub); err != nil {
				return "", fmt.Errorf("maildir %s: %w", dir, err)
			}
		}
	}
	name, err := writeLinked(root, folder+"/tmp", folder+"/new", parts)
	if err != nil {
		return "", fmt.Errorf("maildir %s: %w", dir, err)
	}
	return filepath.Join(dir, folder, "new", name), nil
}

// Store writes the parts as a new file in the existing directory dir, with a
// unique Maildir-style name (plus suffix), durably: it is written to a
// sibling tmp/ when dir is a Maildir's new/, else to a dot-file in dir, and
// linked into place only once fsynced. dir is not created: a missing rescue
// directory is the operator's to fix.
func Store(dir, suffix string, parts ...[]byte) (string, error) {
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("store %q: not an absolute path", dir)
	}
	parent, base := filepath.Split(filepath.Clean(dir))
	var root *os.Root
	var err error
	tmp, final := ".", "."
	if st, e := os.Stat(filepath.Join(parent, "tmp")); base == "new" && e == nil && st.IsDir() {
		root, err = os.OpenRoot(parent)
		tmp, final = "tmp", "new"
	} else {
		root, err = os.OpenRoot(dir)
	}
	if err != nil {
		return "", fmt.Errorf("store in %s: %w", dir, err)
	}
	defer root.Close()
	if _, err := root.Stat(final); err != nil {
		return "", fmt.Errorf("store in %s: %w", dir, err)
	}
	name, err := writeLinkedSuffix(root, tmp, final, suffix, parts)
	if err != nil {
		return "", fmt.Errorf("store in %s: %w", dir, err)
	}
	return filepath.Join(dir, name), nil
}

func mkdirIn(root *os.Root, name string) error {
	err := root.Mkdir(name, 0o700)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

func writeLinked(root *os.Root, tmpDir, newDir string, parts [][]byte) (string, error) {
	return writeLinkedSuffix(root, tmpDir, newDir, "", parts)
}

// writeLinkedSuffix is the durable write: create in tmpDir (O_EXCL), write,
// fsync, close, link() into newDir (link never overwrites), unlink the tmp
// name, fsync newDir.
func writeLinkedSuffix(root *os.Root, tmpDir, newDir, suffix string, parts [][]byte) (string, error) {
	name := UniqueName() + suffix
	tmpName := tmpDir + "/" + name
	if tmpDir == newDir {
		tmpName = tmpDir + "/.tmp." + name
	}
	f, err := root.OpenFile(tmpName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	cleanup := func() { _ = root.Remove(tmpName) }
	for _, p := range parts {
		if _, err := f.Write(p); err != nil {
			f.Close()
			cleanup()
			return "", err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		cleanup()
		return "", err
	}
	if err := f.Close(); err != nil {
		cleanup()
		return "", err
	}
	for i := 0; ; i++ {
		err = root.Link(tmpName, newDir+"/"+name)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || i > 5 {
			cleanup()
			return "", err
		}
		name = UniqueName() + suffix
	}
	cleanup()
	if err := syncDir(root, newDir); err != nil {
		// The message is complete in new/; only its durability across a
		// power loss is in doubt. Report it so Postfix retries (at worst a
		// duplicate).
		return "", fmt.Errorf("sync %s: %w", newDir, err)
	}
	return name, nil
}

func syncDir(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}
