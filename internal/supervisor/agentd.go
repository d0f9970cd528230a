package supervisor

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"quietmx/internal/delivery"
	"quietmx/internal/policy"
	"quietmx/internal/render"
	"quietmx/internal/spec"
)

// The resident agent (`altpostlocal serve`, delivery: lmtp) is not one of
// the two services whose death stops the appliance: it is restarted, with
// a backoff, whenever it exits. While it is down Postfix's lmtp(8) client
// cannot connect and defers, so nothing is lost.

// agentCmd is how the daemon is started; equal values need no restart.
type agentCmd struct {
	args     string // argv, NUL-separated (comparable); "": no daemon
	lmtp     string // the LMTP socket, "" when delivery is through pipe(8)
	uid, gid int
}

func (c agentCmd) none() bool { return c.args == "" }

func (c agentCmd) argv() []string { return splitNUL(c.args) }

func splitNUL(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// agentCmdFor is the daemon's command for sp. It always answers smtpd's
// policy requests (reject addresses are refused at RCPT); it answers LMTP
// unless sp delivers through pipe(8).
func agentCmdFor(sp *spec.Spec, agent, live string) agentCmd {
	// The cap only guards memory: LMTP's CRLF can double a message of
	// empty lines, and Postfix has enforced message_size_limit already.
	max := 2*sp.Limits.MessageSize + 1<<20
	socket := delivery.DefaultSocket
	if sp.Delivery == spec.DeliveryPipe {
		socket = ""
	}
	// altpostlocal execs altpostlocal-serve, keeping this command line.
	args := []string{agent, "serve",
		"-c", filepath.Join(live, render.RulesFile),
		"-socket", socket,
		"-policy-socket", policy.DefaultSocket,
		"-deadline", render.AgentDeadline,
		"-max-size", strconv.FormatInt(max, 10),
	}
	s := args[0]
	for _, a := range args[1:] {
		s += "\x00" + a
	}
	return agentCmd{args: s, lmtp: socket, uid: sp.Vmail.UID, gid: sp.Vmail.GID}
}

// agentd keeps one daemon running with the wanted command.
type agentd struct {
	start func(agentCmd) (pid int, done <-chan syscall.WaitStatus, err error)
	kill  func(pid int, sig syscall.Signal)
	logf  func(format string, args ...any)
	fatal func(error)
	min   time.Duration // first restart delay, doubled up to max
	max   time.Duration
	grace time.Duration // between SIGTERM and SIGKILL
	// stable: a daemon that ran this long restarts after min again.
	stable time.Duration
	// restarted runs after a daemon that died was started again (nil:
	// nothing): Postfix has suspended the destination meanwhile.
	restarted func()

	mu      sync.Mutex
	want    agentCmd
	changed chan struct{} // signalled when want changes
	stopped chan struct{} // closed when the loop has ended
	running bool          // the loop runs
}

func newAgentd(start func(agentCmd) (int, <-chan syscall.WaitStatus, error), grace time.Duration, logf func(string, ...any), fatal func(error)) *agentd {
	return &agentd{start: start, kill: func(pid int, sig syscall.Signal) { _ = syscall.Kill(pid, sig) }, logf: logf, fatal: fatal,
		min: 100 * time.Millisecond, max: 2 * time.Second, grace: grace, stable: 30 * time.Second,
		changed: make(chan struct{}, 1)}
}

// set makes the daemon run with cmd (none: not at all), restarting it
// when it runs with another command.
func (a *agentd) set(cmd agentCmd) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if cmd == a.want && (a.running || cmd.none()) {
		return
	}
	a.want = cmd
	if !a.running && !cmd.none() {
		a.running = true
		a.stopped = make(chan struct{})
		go guard("the agent daemon's keeper", a.fatal, a.loop)
		return
	}
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

// stop asks the daemon to finish the messages in progress (SIGTERM), kills
// it after the grace time, and returns once it is gone.
func (a *agentd) stop() {
	a.mu.Lock()
	stopped := a.stopped
	a.mu.Unlock()
	a.set(agentCmd{})
	if stopped != nil {
		<-stopped
	}
}

// loop starts the wanted daemon and restarts it until want is zero.
func (a *agentd) loop() {
	defer func() {
		a.mu.Lock()
		a.running = false
		close(a.stopped)
		a.mu.Unlock()
	}()
	delay := a.min
	died := false
	for {
		a.mu.Lock()
		cmd := a.want
		a.mu.Unlock()
		if cmd.none() {
			return
		}
		t0 := time.Now()
		pid, done, err := a.start(cmd)
		if err != nil {
			a.logf("altpostlocal serve: %v: retrying in %v (mail is deferred meanwhile)", err, delay)
		} else {
			if died && a.restarted != nil {
				a.restarted()
			}
			died = false
			select {
			case ws := <-done:
				died = true
				if time.Since(t0) >= a.stable {
					delay = a.min
				}
				a.logf("altpostlocal serve exited (%s): restarting in %v", describe(ws), delay)
			case <-a.changed:
				a.terminate(pid, done)
				delay = a.min
				continue // at once, with the new command (or none)
			}
		}
		select {
		case <-time.After(delay):
		case <-a.changed:
		}
		delay = min(2*delay, a.max)
	}
}

// terminate asks pid to finish (SIGTERM) and kills it after the grace
// time.
func (a *agentd) terminate(pid int, done <-chan syscall.WaitStatus) {
	a.kill(pid, syscall.SIGTERM)
	select {
	case <-done:
		return
	case <-time.After(a.grace):
	}
	a.logf("altpostlocal serve did not stop within %v: killing it (Postfix retries what it had)", a.grace)
	a.kill(pid, syscall.SIGKILL)
	<-done
}

// agentServices adds the resident agent to Postfix and Dovecot: it starts
// before them and stops after Postfix, so no lmtp(8) client is left
// talking to it; it follows every spec change (Reload of Postfix).
type agentServices struct {
	Services
	d     *agentd
	cmd   func() agentCmd // for the current spec
	dir   string          // the socket's directory
	warnf func(format string, args ...any)
}

// withAgent wraps svc so that the resident agent runs alongside, as
// current() (the running spec) says.
func (s *Supervisor) withAgent(svc Services, current func() *spec.Spec) Services {
	agent := s.renderOpt.Agent
	if agent == "" {
		agent = render.DefaultAgent
	}
	cmd := func() agentCmd { return agentCmdFor(current(), agent, s.live) }
	d := newAgentd(s.startAgent, s.opt.StopGrace, s.logf, s.fail)
	d.restarted = func() {
		// Only delivery over LMTP was suspended; the policy service's
		// absence deferred nothing.
		if cmd().lmtp != "" {
			go guard("the agent's queue flush", s.fail, s.flushAfterRestart)
		}
	}
	return &agentServices{Services: svc, d: d, cmd: cmd, dir: filepath.Dir(delivery.DefaultSocket), warnf: s.logf}
}

// flushAfterRestart runs once a daemon that died runs again: while it was
// down Postfix found its socket refusing and suspended the destination,
// so what arrived meanwhile would wait minutes for the next queue run.
// Once the new daemon answers, postqueue -f brings it back at once.
func (s *Supervisor) flushAfterRestart() {
	if err := waitSocket(delivery.DefaultSocket, 30*time.Second); err != nil {
		s.logf("altpostlocal serve not answering after its restart (%v): deferred mail waits for Postfix's next queue run", err)
		return
	}
	if out, err := s.reaper.run("postqueue", "-f"); err != nil {
		s.logf("postqueue -f after the agent's restart: %v: %s", err, out)
	}
}

// waitSocket returns once a unix socket accepts a connection.
func waitSocket(path string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Prepare makes the socket's directory: the daemon (vmail) writes in it,
// Postfix's lmtp client (group postfix) may only reach the socket, and no
// one else may.
func (w *agentServices) Prepare() error {
	if err := w.Services.Prepare(); err != nil {
		return err
	}
	c := w.cmd()
	uid, gid := c.uid, c.gid
	if g, err := user.LookupGroup("postfix"); err == nil {
		gid, _ = strconv.Atoi(g.Gid)
	} else {
		w.warnf("warning: group postfix: %v (the agent's socket directory stays vmail's)", err)
	}
	if err := os.MkdirAll(w.dir, 0o750); err != nil {
		return fmt.Errorf("agent socket directory: %w", err)
	}
	if err := os.Chown(w.dir, uid, gid); err != nil {
		return fmt.Errorf("agent socket directory: %w", err)
	}
	return os.Chmod(w.dir, 0o750)
}

func (w *agentServices) Start() error {
	w.d.set(w.cmd())
	return w.Services.Start()
}

// Ready also waits for the daemon's sockets: mail arriving before LMTP
// answers would wait in the deferred queue for minutes, and before the
// policy service answers a reject address is accepted (and passed over at
// delivery). A daemon that does not answer only warns: Postfix takes mail
// in and defers it, and the keeper goes on restarting the daemon.
func (w *agentServices) Ready(limit time.Duration) error {
	t0 := time.Now()
	if err := w.Services.Ready(limit); err != nil {
		return err
	}
	c := w.cmd()
	if c.none() {
		return nil
	}
	if c.lmtp != "" {
		if err := waitSocket(c.lmtp, max(limit-time.Since(t0), time.Second)); err != nil {
			w.warnf("warning: altpostlocal serve not answering on %s after %v (%v): mail is deferred until it does", c.lmtp, limit, err)
			return nil
		}
	}
	if err := waitSocket(policy.DefaultSocket, max(limit-time.Since(t0), time.Second)); err != nil {
		w.warnf("warning: altpostlocal serve not answering on %s after %v (%v): reject addresses are accepted until it does", policy.DefaultSocket, limit, err)
	}
	return nil
}

// Reload of Postfix follows a spec change: the daemon is restarted when
// its command changed (delivery mode, message size), started or stopped.
func (w *agentServices) Reload(svc Service) error {
	err := w.Services.Reload(svc)
	if svc == Postfix {
		w.d.set(w.cmd())
	}
	return err
}

func (w *agentServices) Stop() {
	w.Services.Stop()
	w.d.stop()
}

// startAgent starts the daemon as vmail, with the environment pipe(8)
// would give the agent rather than the supervisor's.
func (s *Supervisor) startAgent(c agentCmd) (int, <-chan syscall.WaitStatus, error) {
	argv := c.argv()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "USER=" + render.VmailUser, "LOGNAME=" + render.VmailUser}
	for _, k := range []string{"TZ", "LANG"} {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	// Its own process group: a ^C meant for the supervisor must not stop
	// it before Postfix.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: &syscall.Credential{Uid: uint32(c.uid), Gid: uint32(c.gid), Groups: []uint32{}}}
	done, err := s.reaper.start(cmd)
	if err != nil {
		return 0, nil, err
	}
	return cmd.Process.Pid, done, nil
}
