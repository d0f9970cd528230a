package rules

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Live keeps a rule file loaded for a long-running process (the LMTP
// daemon, the policy service): loaded once, reloaded when the file or its
// snapshot changes on disk, and never replaced by an invalid one. Readers
// get an immutable *Set through an atomic pointer, so a reload never
// disturbs a delivery that already holds its set.
//
// Unlike Load, an invalid live file falls back first to the last set
// this process loaded from a valid file (it may be newer than the
// .last-valid snapshot, when the file was edited in place), then to the
// snapshot.
type Live struct {
	path string
	logf func(format string, args ...any) // reload events, once each

	mu   sync.Mutex // serialises reloads; readers never take it
	good *Set       // the last set loaded from a valid live file
	cur  atomic.Pointer[liveState]
}

type liveState struct {
	stamp  stamp // what the files looked like when loaded
	loaded Loaded
	err    error // no usable set at all
}

// stamp identifies the state of the rule file and its snapshot: any
// rewrite (atomicfile's rename gives a new inode) changes it.
type stamp [2]fileStamp

type fileStamp struct {
	ino, size int64
	mtime     time.Time
	ctime     syscall.Timespec
	missing   bool
}

func statFile(path string) fileStamp {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{missing: true}
	}
	fs := fileStamp{size: st.Size(), mtime: st.ModTime()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		fs.ino, fs.ctime = int64(sys.Ino), sys.Ctim
	}
	return fs
}

// NewLive loads the rule file at path. logf receives one line per reload
// and per refused change (nil: no lines).
func NewLive(path string, logf func(format string, args ...any)) *Live {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	l := &Live{path: path, logf: logf}
	l.mu.Lock()
	l.reload(l.current())
	l.mu.Unlock()
	return l
}

// Path is the rule file's path.
func (l *Live) Path() string { return l.path }

func (l *Live) current() stamp {
	return stamp{statFile(l.path), statFile(LastValidPath(l.path))}
}

// Current returns the rules to use now, reloading first when the files
// changed since the last look (two stat calls when they did not). The
// error is Load's: there is no usable set at all.
func (l *Live) Current() (Loaded, error) {
	now := l.current()
	if st := l.cur.Load(); st.stamp == now {
		return st.loaded, st.err
	}
	l.mu.Lock()
	if l.cur.Load().stamp != now {
		l.reload(now)
	}
	st := l.cur.Load()
	l.mu.Unlock()
	return st.loaded, st.err
}

// Set is the current set, nil when there is none: the form the policy
// service takes (func() *Set).
func (l *Live) Set() *Set {
	loaded, err := l.Current()
	if err != nil {
		return nil
	}
	return loaded.Set
}

// reload loads the files, which looked like now just before; l.mu is
// held. A change between the stat and the read only makes the next look
// reload once more.
func (l *Live) reload(now stamp) {
	first := l.cur.Load() == nil
	loaded, err := Load(l.path)
	switch {
	case err == nil && !loaded.Stale:
		l.good = loaded.Set
		if !first {
			l.logf("rules reloaded from %s", l.path)
		}
	case l.good != nil:
		// Keep what this process last loaded from a valid file.
		reason := "the live file cannot be used"
		if err != nil {
			reason = err.Error()
		} else if loaded.Reason != "" {
			reason = loaded.Reason
		}
		loaded = Loaded{Set: l.good, Stale: true, Reason: reason}
		err = nil
		l.logf("rule file %s refused, keeping the rules loaded before: %s", l.path, reason)
	case err == nil:
		l.logf("rule file %s cannot be used, using its last-valid snapshot: %s", l.path, loaded.Reason)
	default:
		l.logf("no usable rules: %v (every delivery defers until the file is fixed)", err)
	}
	l.cur.Store(&liveState{stamp: now, loaded: loaded, err: err})
}
