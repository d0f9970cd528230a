// Package atomicfile is the one way this project replaces a file it owns
// (rule snapshots and compiled forms, rendered configuration, certificates
// and keys, generated secrets): a reader sees the old content or the new,
// never a mix, and once Write returns the new content survives a crash.
//
// The recipe: a uniquely named temporary file in the same directory (so
// two writers never share it and rename stays within one file system),
// write, chmod, chown when asked, fsync, rename over the target, fsync the
// directory. On any error the temporary file is removed and the target is
// untouched.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Owner asks Write to chown the file before it becomes visible. A nil
// *Owner leaves ownership to the process's uid and gid.
type Owner struct{ UID, GID int }

// Write replaces path with data and mode perm.
func Write(path string, data []byte, perm os.FileMode) error {
	return WriteOwned(path, data, perm, nil)
}

// WriteOwned is Write that also sets the file's owner before the rename,
// so the file is never visible with the wrong owner (a private key must
// never be readable by the wrong user, even for a moment).
func WriteOwned(path string, data []byte, perm os.FileMode, owner *Owner) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	// CreateTemp makes the file 0600, so a key is never briefly readable.
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if owner != nil {
		if err = f.Chown(owner.UID, owner.GID); err != nil {
			return err
		}
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making a rename or link in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
