package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"quietmx/internal/atomicfile"
	"quietmx/internal/health"
	"quietmx/internal/render"
	"quietmx/internal/rules"
	"quietmx/internal/spec"
)

// The last configuration applied is kept on the state volume, so that an
// invalid spec found at start (an edit refused while running, then a
// restart or an upgrade) does not become an outage: the appliance starts
// on it, degraded, and says so until the spec is fixed.
//
//	STATE/applied                 symlink to the current copy
//	STATE/applied-<ns>/tree/      the rendered tree, as it was made live
//	STATE/applied-<ns>/spec.json  the spec it was rendered from
const (
	appliedLink = "applied"
	appliedSpec = "spec.json"
	appliedTree = "tree"
)

// applied is the saved record: the spec without its compiled rules (they
// are loaded back from the tree's rule file).
type applied struct {
	At   time.Time  `json:"at"`
	Spec *spec.Spec `json:"spec"`
}

// saveApplied copies the live tree and sp to the state volume, replacing
// the previous copy in one rename. A failure only warns: the appliance
// runs, it just could not fall back on this configuration later.
func (s *Supervisor) saveApplied(sp *spec.Spec) {
	if err := s.writeApplied(sp); err != nil {
		s.logf("warning: cannot keep the applied configuration on the state volume (%v): an invalid spec at the next start will stop the appliance", err)
	}
}

func (s *Supervisor) writeApplied(sp *spec.Spec) error {
	root := s.opt.StateDir
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	fresh, err := os.MkdirTemp(root, "applied-"+fmt.Sprint(time.Now().UnixNano())+"-")
	if err != nil {
		return err
	}
	// The tree holds a password hash file: keep the copy as closed as
	// the original (0700 directory, files keep their modes and owners).
	if err := copyTree(s.live, filepath.Join(fresh, appliedTree)); err != nil {
		os.RemoveAll(fresh)
		return err
	}
	saved := *sp
	saved.Rules.Set, saved.Warnings = nil, nil
	data, err := json.MarshalIndent(applied{At: time.Now().UTC(), Spec: &saved}, "", "  ")
	if err != nil {
		os.RemoveAll(fresh)
		return err
	}
	if err := atomicfile.Write(filepath.Join(fresh, appliedSpec), data, 0o600); err != nil {
		os.RemoveAll(fresh)
		return err
	}
	link := filepath.Join(root, appliedLink)
	if err := render.Swap(fresh, link); err != nil {
		os.RemoveAll(fresh)
		return err
	}
	// Only the copy the link names is kept.
	old, _ := filepath.Glob(filepath.Join(root, "applied-*"))
	for _, o := range old {
		if o != fresh {
			os.RemoveAll(o)
		}
	}
	return nil
}

// loadApplied returns the last applied spec (its rules compiled again
// from the saved tree), the saved tree, and when it was applied.
func (s *Supervisor) loadApplied() (*spec.Spec, string, time.Time, error) {
	dir, err := filepath.EvalSymlinks(filepath.Join(s.opt.StateDir, appliedLink))
	if err != nil {
		return nil, "", time.Time{}, fmt.Errorf("no configuration was ever applied (%w)", err)
	}
	data, err := os.ReadFile(filepath.Join(dir, appliedSpec))
	if err != nil {
		return nil, "", time.Time{}, err
	}
	var a applied
	if err := json.Unmarshal(data, &a); err != nil || a.Spec == nil {
		return nil, "", time.Time{}, fmt.Errorf("%s: unreadable (%v)", filepath.Join(dir, appliedSpec), err)
	}
	tree := filepath.Join(dir, appliedTree)
	loaded, err := rules.Load(filepath.Join(tree, render.RulesFile))
	if err != nil {
		return nil, "", time.Time{}, fmt.Errorf("the saved rule file: %w", err)
	}
	a.Spec.Rules.Set = loaded.Set
	return a.Spec, tree, a.At, nil
}

// installApplied makes a copy of the saved tree the live generation,
// checked with the real tools first (the image may have changed since).
func (s *Supervisor) installApplied(tree string) error {
	if err := os.MkdirAll(s.opt.ConfigRoot, 0o755); err != nil {
		return err
	}
	fresh := filepath.Join(s.opt.ConfigRoot, fmt.Sprintf("gen-%d", time.Now().UnixNano()))
	if err := copyTree(tree, fresh); err != nil {
		os.RemoveAll(fresh)
		return err
	}
	if s.verifyApplied {
		// As PID 1 the reaper would otherwise reap the checkers first.
		if err := s.reaper.exclusive(func() error { return render.Verify(fresh) }); err != nil {
			os.RemoveAll(fresh)
			return err
		}
	}
	return s.makeLive(fresh)
}

// startDegraded is Run's answer to an invalid spec at start: the last
// applied configuration, or the refusal when there is none.
func (s *Supervisor) startDegraded(specErr error) (*spec.Spec, error) {
	sp, tree, at, err := s.loadApplied()
	if err != nil {
		return nil, fmt.Errorf("invalid spec, nothing started (and no last valid configuration to run on: %v):\n%w", err, specErr)
	}
	if err := s.installApplied(tree); err != nil {
		return nil, fmt.Errorf("invalid spec, nothing started (the last valid configuration, applied %s, failed: %v):\n%w", at.Format(time.RFC3339), err, specErr)
	}
	reason := fmt.Sprintf("the spec on disk is invalid; running on the configuration applied %s", at.Format(time.RFC3339))
	s.logf("DEGRADED: %s. Fix the spec: it applies as soon as it is valid. Why it is invalid:\n%v", reason, specErr)
	s.setDegraded(reason)
	return sp, nil
}

// setDegraded records why the appliance runs degraded, for `quietmx
// health`; "" clears it.
func (s *Supervisor) setDegraded(reason string) {
	s.degraded = reason
	p := filepath.Join(s.opt.StatusDir, health.DegradedFile)
	var err error
	if reason == "" {
		if err = os.Remove(p); errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
	} else if err = os.MkdirAll(s.opt.StatusDir, 0o755); err == nil {
		err = atomicfile.Write(p, []byte(reason+"\n"), 0o644)
	}
	if err != nil {
		s.logf("warning: health status: %v", err)
	}
}

// copyTree copies the directory src to dst (which must not exist):
// directories, regular files with their modes and owners, and nothing
// else (a rendered tree holds nothing else).
func copyTree(src, dst string) error {
	src, err := filepath.EvalSymlinks(src)
	if err != nil {
		return err
	}
	var dirs []string
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
			dirs = append(dirs, rel)
		case d.Type().IsRegular():
			if err := copyFile(p, target, info); err != nil {
				return err
			}
		default:
			return fmt.Errorf("copy %s: not a file or directory", p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Directory modes last, deepest first, and everything synced.
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, rel := range dirs {
		info, err := os.Stat(filepath.Join(src, rel))
		if err != nil {
			return err
		}
		if err := os.Chmod(filepath.Join(dst, rel), info.Mode().Perm()); err != nil {
			return err
		}
		if err := atomicfile.SyncDir(filepath.Join(dst, rel)); err != nil {
			return err
		}
	}
	return atomicfile.SyncDir(filepath.Dir(dst))
}

func copyFile(src, dst string, info fs.FileInfo) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
	if err != nil {
		return err
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		if err := out.Chown(int(st.Uid), int(st.Gid)); err != nil {
			out.Close()
			return err
		}
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	// Keep the tree's backdated times (see render.backdate).
	return os.Chtimes(dst, info.ModTime(), info.ModTime())
}
