package supervisor

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// OwnershipReport says what CheckOwnership found and fixed.
type OwnershipReport struct {
	Root    string
	Wrong   int // entries not owned by uid:gid before the fix
	Fixed   int
	Created bool
}

// Advice is the line an operator needs when the volume was wrong.
func (r OwnershipReport) Advice(uid, gid int) string {
	if r.Wrong == 0 {
		return ""
	}
	return fmt.Sprintf("mail volume: %d entries under %s were not owned by vmail (%d:%d), so every delivery would have been deferred; fixed %d. If you bind-mount a host directory, run on the host once: chown -R %d:%d <that directory>",
		r.Wrong, r.Root, uid, gid, r.Fixed, uid, gid)
}

// CheckOwnership makes root (the vmail tree of the mail volume) exist and
// belong to uid:gid, with everything below it. A bind-mounted, root-owned
// mail directory would otherwise make every Maildir write fail and every
// message defer. Symlinks are not followed.
func CheckOwnership(root string, uid, gid int) (OwnershipReport, error) {
	rep := OwnershipReport{Root: root}
	if _, err := os.Lstat(root); os.IsNotExist(err) {
		if err := os.MkdirAll(root, 0o700); err != nil {
			return rep, err
		}
		rep.Created = true
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok || (int(st.Uid) == uid && int(st.Gid) == gid) {
			return nil
		}
		rep.Wrong++
		if err := os.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
		rep.Fixed++
		return nil
	})
	if err == nil && rep.Created {
		err = os.Chown(root, uid, gid)
	}
	return rep, err
}
