package supervisor

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
)

// reaper owns every wait(2) of the process. As PID 1 in a container we
// inherit orphans (Postfix and Dovecot fork a lot) and must reap them, and
// once one loop calls wait4(-1) nobody else may wait: our own children are
// reaped here too and their status handed over on a channel.
type reaper struct {
	mu      sync.Mutex
	waiting map[int]chan syscall.WaitStatus
	fatal   func(error)
}

// newReaper starts reaping; a panic in it goes to fatal (see guard).
func newReaper(fatal func(error)) *reaper {
	r := &reaper{waiting: map[int]chan syscall.WaitStatus{}, fatal: fatal}
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, syscall.SIGCHLD)
	go guard("the reaper", fatal, func() {
		for range sig {
			r.reap()
		}
	})
	return r
}

func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		if ch, ok := r.waiting[pid]; ok {
			ch <- ws
			delete(r.waiting, pid)
		}
	}
}

// exclusive runs f while no wait4(-1) can happen, so code that uses os/exec
// itself (the renderer's checks with postconf and doveconf) waits for its
// own children. Orphans exiting meanwhile stay zombies until f returns.
// f must not start children through the reaper. A nil reaper (unit tests:
// nothing else waits there) just runs f.
func (r *reaper) exclusive(f func() error) error {
	if r == nil {
		return f()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return f()
}

// start starts cmd and returns a channel that receives its exit status. The
// lock is held across Start, so a child that exits at once is still matched.
// cmd's stdio must be *os.File (or nil): Wait is never called.
func (r *reaper) start(cmd *exec.Cmd) (<-chan syscall.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan syscall.WaitStatus, 1)
	r.waiting[cmd.Process.Pid] = ch
	// In case SIGCHLD arrived before we registered (it cannot be lost:
	// the next reap happens on the next signal), reap now outside the lock.
	go guard("the reaper", r.fatal, r.reap)
	return ch, nil
}

// run runs a command to completion and returns its combined output.
func (r *reaper) run(name string, args ...string) (string, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = pw, pw
	done, err := r.start(cmd)
	pw.Close()
	if err != nil {
		pr.Close()
		return "", err
	}
	out, _ := io.ReadAll(io.LimitReader(pr, 1<<20))
	pr.Close()
	ws := <-done
	text := strings.TrimSpace(string(out))
	if !ws.Exited() || ws.ExitStatus() != 0 {
		return text, fmt.Errorf("%s %s: %s: %s", name, strings.Join(args, " "), describe(ws), text)
	}
	return text, nil
}

func describe(ws syscall.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return "killed by " + ws.Signal().String()
	}
	return fmt.Sprintf("status %#x", uint32(ws))
}
