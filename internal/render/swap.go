package render

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"quietmx/internal/atomicfile"
)

// Swap makes the rendered tree fresh live: live becomes a symlink to it,
// by renaming a new symlink over the old one, so every reader sees either
// the old tree or the new one, never a mix. The parent directory is synced
// afterwards. The old tree is left in place (the caller may delete it once
// the services reloaded). live must be a symlink or absent; a real
// directory there is refused rather than replaced.
//
// When fresh sits in live's directory the link is relative, so the pair
// can be moved or bind-mounted elsewhere together.
func Swap(fresh, live string) error {
	st, err := os.Stat(fresh)
	if err != nil {
		return fmt.Errorf("swap: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("swap: %s is not a directory", fresh)
	}
	if lst, err := os.Lstat(live); err == nil && lst.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("swap: %s is not a symlink; move it away once, then swap", live)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("swap: %w", err)
	}
	target, err := filepath.Abs(fresh)
	if err != nil {
		return err
	}
	dir := filepath.Dir(live)
	if absDir, err := filepath.Abs(dir); err == nil && filepath.Dir(target) == absDir {
		target = filepath.Base(target)
	}
	tmp := filepath.Join(dir, "."+filepath.Base(live)+".swap-"+strconv.Itoa(os.Getpid())+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("swap: %w", err)
	}
	if err := os.Rename(tmp, live); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("swap: %w", err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("swap: %w", err)
	}
	return nil
}

// Diff lists the files (relative paths, sorted) that differ between two
// rendered trees: added, removed, or changed in content or mode. An
// oldDir that does not exist counts as empty. A rule file's compiled form
// is compared through its rule file: it embeds the hash of the rule file's
// bytes, but its encoding is not byte-stable.
func Diff(oldDir, newDir string) ([]string, error) {
	oldFiles, err := treeFiles(oldDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	newFiles, err := treeFiles(newDir)
	if err != nil {
		return nil, err
	}
	var changed []string
	for rel, nf := range newFiles {
		of, ok := oldFiles[rel]
		if !ok || of.mode != nf.mode {
			changed = append(changed, rel)
			continue
		}
		if src, ok := strings.CutSuffix(rel, ".compiled"); ok {
			if _, has := newFiles[src]; has {
				if bytes.Equal(oldFiles[src].data, newFiles[src].data) {
					continue
				}
				changed = append(changed, rel)
				continue
			}
		}
		if !bytes.Equal(of.data, nf.data) {
			changed = append(changed, rel)
		}
	}
	for rel := range oldFiles {
		if _, ok := newFiles[rel]; !ok {
			changed = append(changed, rel)
		}
	}
	slices.Sort(changed)
	return changed, nil
}

type treeFile struct {
	data []byte
	mode fs.FileMode
}

func treeFiles(root string) (map[string]treeFile, error) {
	files := map[string]treeFile{}
	if _, err := os.Stat(root); err != nil {
		return files, err
	}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = treeFile{data: data, mode: info.Mode()}
		return nil
	})
	return files, err
}

// Reloads says which services must reload after a swap, given Diff's
// list. Postfix rereads main.cf and master.cf only on reload; Dovecot
// rereads dovecot.conf on reload but notices a changed passwd-file by
// itself. The agent reads its rule file for every message, and certbot
// its files on every run: neither needs a signal.
func Reloads(changed []string) (postfix, dovecot bool) {
	for _, rel := range changed {
		switch {
		case strings.HasPrefix(rel, "postfix/"):
			postfix = true
		case rel == DovecotConf:
			dovecot = true
		}
	}
	return postfix, dovecot
}
