package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// RunStateDirs hold what a running Postfix or Dovecot leaves behind: pid
// files, sockets and fifos. They live in the container's writable layer,
// so a killed container keeps them; PIDs start from 1 again, so a stale
// master.pid may name a live process and Dovecot refuses to start
// ("Dovecot is already running"). Both rebuild them on start.
var RunStateDirs = []string{"/run/dovecot", "/var/spool/postfix/pid"}

// ClearRunState removes everything inside each of dirs (not the
// directories themselves) and returns how many entries it removed. It is
// called only before the services start, so nothing there is in use. A
// missing directory is fine; a failure is returned, naming the entry.
func ClearRunState(dirs []string) (int, error) {
	n := 0
	var errs []error
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("run state: %w", err))
			continue
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, fmt.Errorf("run state: %w", err))
				continue
			}
			n++
		}
	}
	return n, errors.Join(errs...)
}
