package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// EnsureRescueDir makes the rule file's rescue directory exist, owned by
// uid:gid, when it lies in the mail volume mailRoot. The agent never
// creates it (a rescue that lands in a mistyped path would hide mail), and
// without it every failure defers instead of being rescued, so the
// generated rules' rescue (/var/mail/vmail/rescue) would never work on a
// fresh volume. When the directory is a Maildir's new/, its tmp/ and cur/
// are made too, so the rescued mail is written through tmp/ and the
// Maildir can be read over IMAP. Missing parents are created with the same
// owner, mode 0700; existing directories are left alone. It returns the
// directories it created.
func EnsureRescueDir(mailRoot, dir string, uid, gid int) ([]string, error) {
	if dir == "" || !filepath.IsAbs(dir) {
		return nil, nil
	}
	dir = filepath.Clean(dir)
	root := filepath.Clean(mailRoot)
	if dir == root || !strings.HasPrefix(dir, root+string(filepath.Separator)) {
		return nil, nil // outside the mail volume: the operator's to make
	}
	targets := []string{dir}
	if filepath.Base(dir) == "new" {
		md := filepath.Dir(dir)
		targets = append(targets, filepath.Join(md, "tmp"), filepath.Join(md, "cur"))
	}
	var created []string
	for _, t := range targets {
		rel, _ := filepath.Rel(root, t)
		p := root
		for _, part := range strings.Split(rel, string(filepath.Separator)) {
			p = filepath.Join(p, part)
			st, err := os.Lstat(p)
			if err == nil {
				if !st.IsDir() {
					return created, fmt.Errorf("rescue directory %s: %s is not a directory", dir, p)
				}
				continue
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return created, fmt.Errorf("rescue directory %s: %w", dir, err)
			}
			if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return created, fmt.Errorf("rescue directory %s: %w", dir, err)
			}
			if err := os.Lchown(p, uid, gid); err != nil {
				return created, fmt.Errorf("rescue directory %s: %w", dir, err)
			}
			created = append(created, p)
		}
	}
	return created, nil
}
