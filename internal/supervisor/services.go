package supervisor

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"quietmx/internal/atomicfile"
	"quietmx/internal/health"
	"quietmx/internal/render"
)

// Service is one of the two long-running mail services.
type Service string

const (
	Postfix Service = "postfix"
	Dovecot Service = "dovecot"
)

// Exit reports a service that ended on its own.
type Exit struct {
	Service Service
	Status  string // as describe words it, e.g. "exit status 1"
}

// Services controls Postfix and Dovecot: mailServices runs the real ones,
// unit tests use a fake that records calls.
type Services interface {
	// Prepare makes what the services need before their first start.
	Prepare() error
	// Start starts both as children.
	Start() error
	// Ready returns once both answer, or an error once limit passes or
	// either exits.
	Ready(limit time.Duration) error
	// Reload makes a running service reread its configuration.
	Reload(Service) error
	// Exited delivers a service that ended without being asked to.
	Exited() <-chan Exit
	// Drain stops accepting mail and starting deliveries, and waits until
	// deadline for the deliveries in progress to finish. Stop follows.
	Drain(deadline time.Time) DrainReport
	// Flush asks Postfix to deliver what waits in the queue now (what the
	// last run's drain deferred) rather than at the next queue run.
	Flush() error
	// Stop asks both to stop and kills what is left after the grace time.
	Stop()
}

// QueueDir is Postfix's queue (the queue volume).
const QueueDir = "/var/spool/postfix"

// mailServices is Services for the real Postfix and Dovecot, children of
// the reaper, configured through the live tree.
type mailServices struct {
	reaper *reaper
	live   string
	grace  time.Duration
	warnf  func(format string, args ...any)
	exited chan Exit
	pf, dc *child // nil until started
}

// child is a started service; done is closed when it has exited.
type child struct {
	service Service
	pid     int
	done    chan struct{}
	status  syscall.WaitStatus // valid once done is closed
}

func newMailServices(r *reaper, live string, grace time.Duration, warnf func(string, ...any)) *mailServices {
	return &mailServices{reaper: r, live: live, grace: grace, warnf: warnf, exited: make(chan Exit, 2)}
}

func (m *mailServices) Exited() <-chan Exit { return m.exited }

// Prepare clears the run state a killed container left (ClearRunState),
// makes the Postfix queue directories exist with the right owners (on
// first start the queue volume is empty), then asks Postfix to skip its
// start-up integrity checks: the tree is ours and was just verified, and
// postfix-script's checks cost seconds on a small host.
func (m *mailServices) Prepare() error {
	n, err := ClearRunState(RunStateDirs)
	if err != nil {
		return fmt.Errorf("%w (Postfix or Dovecot would refuse to start on it)", err)
	}
	if n > 0 {
		m.warnf("cleared %d stale run-state entries (pid files, sockets) in %s", n, strings.Join(RunStateDirs, ", "))
	}
	q := QueueDir
	complete := true
	for _, d := range []string{"active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "maildrop", "pid", "private", "public", "saved", "trace"} {
		if st, err := os.Stat(filepath.Join(q, d)); err != nil || !st.IsDir() {
			complete = false
			break
		}
	}
	if !complete {
		if out, err := m.reaper.run("postfix", "post-install", "create-missing"); err != nil {
			return fmt.Errorf("postfix queue: %v: %s", err, out)
		}
	}
	if err := atomicfile.Write(filepath.Join(q, "quick-start"), nil, 0o644); err != nil {
		m.warnf("warning: %v (Postfix will run its slower start-up checks)", err)
	}
	return nil
}

func (m *mailServices) Start() error {
	var err error
	if m.pf, err = m.start(Postfix, "postfix", "start-fg"); err != nil {
		return err
	}
	m.dc, err = m.start(Dovecot, "dovecot", "-F", "-c", filepath.Join(m.live, render.DovecotConf))
	return err
}

func (m *mailServices) start(svc Service, name string, args ...string) (*child, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	ch, err := m.reaper.start(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", svc, err)
	}
	c := &child{service: svc, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		c.status = <-ch
		close(c.done)
		m.exited <- Exit{Service: svc, Status: describe(c.status)} // buffered: one per child
	}()
	return c, nil
}

func (c *child) running() bool {
	if c == nil {
		return false
	}
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// doneChan is c.done, or nil (blocks forever) for a child never started.
func (c *child) doneChan() <-chan struct{} {
	if c == nil {
		return nil
	}
	return c.done
}

// Ready returns once Postfix answers SMTP on 25 and Dovecot completes
// TLS on 993, so "ready" in the log means mail can flow.
func (m *mailServices) Ready(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		// Plain connects while waiting (a TLS probe would make Dovecot log
		// a line per attempt), then one real check of each.
		smtpErr := listening("127.0.0.1:25")
		imapErr := listening("127.0.0.1:993")
		if smtpErr == nil && imapErr == nil {
			smtpErr = health.SMTP("127.0.0.1:25", 5*time.Second)
			imapErr = health.IMAPS("127.0.0.1:993", 5*time.Second)
			if smtpErr == nil && imapErr == nil {
				return nil
			}
		}
		select {
		case <-m.pf.doneChan():
			return fmt.Errorf("postfix exited during start (%s)", describe(m.pf.status))
		case <-m.dc.doneChan():
			return fmt.Errorf("dovecot exited during start (%s)", describe(m.dc.status))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: smtp: %v; imaps: %v", limit, smtpErr, imapErr)
		}
	}
}

func listening(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return err
}

func (m *mailServices) Drain(deadline time.Time) DrainReport {
	if !m.pf.running() {
		return DrainReport{}
	}
	d := drainer{run: m.reaper.run, postfixDir: filepath.Join(m.live, "postfix"), queueDir: QueueDir}
	return d.drain(deadline)
}

func (m *mailServices) Flush() error {
	_, err := m.reaper.run("postqueue", "-f")
	return err
}

func (m *mailServices) Reload(svc Service) error {
	var err error
	switch svc {
	case Postfix:
		_, err = m.reaper.run("postfix", "reload")
	case Dovecot:
		_, err = m.reaper.run("doveadm", "-c", filepath.Join(m.live, render.DovecotConf), "reload")
	default:
		err = fmt.Errorf("no such service %q", svc)
	}
	return err
}

// Stop asks both to stop and waits up to the grace time, then kills.
func (m *mailServices) Stop() {
	if m.pf.running() {
		// postfix stop signals the master through its pid file; the child
		// we started may be a wrapper, so signal it too.
		_, _ = m.reaper.run("postfix", "stop")
		_ = syscall.Kill(m.pf.pid, syscall.SIGTERM)
	}
	if m.dc.running() {
		_ = syscall.Kill(m.dc.pid, syscall.SIGTERM)
	}
	grace := time.After(m.grace)
	for _, c := range []*child{m.pf, m.dc} {
		if c == nil {
			continue
		}
		select {
		case <-c.done:
			continue
		case <-grace:
		}
		// The grace time is spent: kill whatever still runs.
		for _, k := range []*child{m.pf, m.dc} {
			if !k.running() {
				continue
			}
			if k == m.pf {
				_ = syscall.Kill(-k.pid, syscall.SIGKILL)
			}
			_ = syscall.Kill(k.pid, syscall.SIGKILL)
		}
		return
	}
}
