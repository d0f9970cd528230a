// Package supervisor is `quietmx run`, the container's PID 1: it loads the
// spec, fixes the mail volume's ownership, makes sure there is a
// certificate, renders every config file into a fresh directory and swaps
// it live, starts Postfix and Dovecot as children, relays every log line to
// the container log, reaps orphans, and watches the spec, the rules and the
// certificate: a valid change is rendered, swapped and reloaded without a
// restart; an invalid one is refused loudly and the running config stays.
//
// No shell scripts edit files here: every file is rendered whole (package
// render), so a restart is always safe.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"quietmx/internal/certs"
	"quietmx/internal/health"
	"quietmx/internal/render"
	"quietmx/internal/spec"
)

// PostfixMeta is where the image keeps the Postfix package's metadata
// (docker/Dockerfile), so that /etc/postfix can link to the live tree.
const PostfixMeta = "/etc/postfix-meta"

// Options configure Run. Zero values mean the image's layout.
type Options struct {
	SpecPath   string            // the spec file; "" = environment only
	Environ    map[string]string // nil = the process environment
	ConfigRoot string            // where rendered trees and the live link live
	LogSocket  string            // the syslog socket we own
	Out        io.Writer         // the container log
	Poll       time.Duration     // how often to look for changes
	StopGrace  time.Duration     // how long Postfix and Dovecot get to stop
}

func (o *Options) defaults() {
	if o.ConfigRoot == "" {
		o.ConfigRoot = "/etc/quietmx"
	}
	if o.LogSocket == "" {
		o.LogSocket = "/dev/log"
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Poll == 0 {
		o.Poll = 2 * time.Second
	}
	if o.StopGrace == 0 {
		o.StopGrace = 8 * time.Second
	}
}

// Supervisor holds the running appliance.
type Supervisor struct {
	opt    Options
	mu     sync.Mutex // serialises writes to opt.Out
	reaper *reaper
	spec   *spec.Spec
	live   string
	state  watchState
	// children
	postfix, dovecot <-chan syscall.WaitStatus
	postfixPid       int
	dovecotPid       int
	certbot          *certbotRunner // certbot mode (certbot.go)
}

func (s *Supervisor) logf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.opt.Out, "quietmx: "+format+"\n", args...)
}

// Run runs the appliance until ctx ends or a child dies. It returns nil after
// a clean stop, an error when it could not start or a service died.
func Run(ctx context.Context, opt Options) error {
	opt.defaults()
	s := &Supervisor{opt: opt, live: filepath.Join(opt.ConfigRoot, "live"), reaper: newReaper()}
	sp, err := spec.LoadFile(opt.SpecPath, opt.Environ)
	if err != nil {
		return fmt.Errorf("invalid spec, nothing started:\n%w", err)
	}
	s.spec = sp
	for _, w := range sp.Warnings {
		s.logf("%s", w)
	}
	rep, err := CheckOwnership(spec.VmailRoot, sp.Vmail.UID, sp.Vmail.GID)
	if err != nil {
		return fmt.Errorf("mail volume: %w (run on the host: chown -R %d:%d <mail volume>)", err, sp.Vmail.UID, sp.Vmail.GID)
	}
	if adv := rep.Advice(sp.Vmail.UID, sp.Vmail.GID); adv != "" {
		s.logf("%s", adv)
	}
	s.ensureRescue(sp)
	firstStart, err := s.ensureCertificate()
	if err != nil {
		return err
	}
	s.certbot = newCertbotRunner(s.reaper.run, s.logf, s.live)
	if sp.TLS.Mode == spec.TLSCertbot {
		s.certbot.startACME()
	}
	t0 := time.Now()
	if err := s.renderAndSwap(sp); err != nil {
		return fmt.Errorf("render: %w", err)
	}
	s.logf("configuration rendered and verified in %v", time.Since(t0).Round(time.Millisecond))
	s.state = s.snapshot()

	relay, err := listenLog(opt.LogSocket, opt.Out, &s.mu)
	if err != nil {
		s.logf("warning: cannot own %s (%v): the agent's delivery lines will not reach the container log", opt.LogSocket, err)
	} else {
		defer relay.close()
		go relay.serve()
	}
	if err := s.prepareQueue(); err != nil {
		return err
	}
	if err := s.startServices(); err != nil {
		s.stopServices()
		return err
	}
	t0 = time.Now()
	if err := s.waitReady(60 * time.Second); err != nil {
		s.stopServices()
		return err
	}
	s.logf("Postfix and Dovecot answering after %v", time.Since(t0).Round(time.Millisecond))
	// A new certificate on the state volume means a first start: show how
	// to test.
	s.banner(firstStart || rep.Created)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	tick := time.NewTicker(opt.Poll)
	defer tick.Stop()
	certbotNext := time.Now()
	for {
		select {
		case <-ctx.Done():
			s.stopServices()
			return nil
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				s.reconfigure("SIGHUP")
				continue
			}
			s.logf("%v: stopping Postfix and Dovecot", sig)
			s.stopServices()
			s.logf("stopped")
			return nil
		case ws := <-s.postfix:
			s.postfix = nil
			s.logf("Postfix master exited (%s): stopping", describe(ws))
			s.stopServices()
			return errors.New("postfix exited")
		case ws := <-s.dovecot:
			s.dovecot = nil
			s.logf("Dovecot exited (%s): stopping", describe(ws))
			s.stopServices()
			return errors.New("dovecot exited")
		case <-tick.C:
			if now := s.snapshot(); !now.equal(s.state) {
				s.reconfigure(strings.Join(now.changed(s.state), ", "))
			}
			if s.spec.TLS.Mode == spec.TLSCertbot && time.Now().After(certbotNext) {
				certbotNext = time.Now().Add(s.certbot.obtain(s.spec.Hostname))
			}
		}
	}
}

// waitReady returns once Postfix answers SMTP on 25 and Dovecot completes
// TLS on 993, so "ready" in the log means mail can flow.
func (s *Supervisor) waitReady(limit time.Duration) error {
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
		case ws := <-s.postfix:
			s.postfix = nil
			return fmt.Errorf("postfix exited during start (%s)", describe(ws))
		case ws := <-s.dovecot:
			s.dovecot = nil
			return fmt.Errorf("dovecot exited during start (%s)", describe(ws))
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

// ensureCertificate gives Postfix and Dovecot a certificate to start with.
func (s *Supervisor) ensureCertificate() (generated bool, err error) {
	t := s.spec.TLS
	switch t.Mode {
	case spec.TLSFiles:
		if err := certs.CheckPair(t.Cert, t.Key); err != nil {
			return false, fmt.Errorf("tls files: %w", err)
		}
	default:
		// self-signed, and certbot until its first certificate arrives
		made, err := certs.EnsureSelfSigned(t.Cert, t.Key, s.spec.Hostname, time.Now())
		if err != nil {
			return false, fmt.Errorf("self-signed certificate: %w", err)
		}
		generated = made
		if made {
			s.logf("generated a self-signed certificate for %s in %s", s.spec.Hostname, t.Cert)
		}
	}
	if info, err := certs.Read(t.Cert); err == nil {
		s.logf("certificate %s: %s, %d days left, sha256 %s", t.Cert, strings.Join(info.DNSNames, ","), certs.DaysLeft(info, time.Now()), info.Fingerprint)
	}
	return generated, nil
}

// renderAndSwap renders sp into a fresh generation, validates it with the
// real tools, and makes it live. The old generation stays until the next.
func (s *Supervisor) renderAndSwap(sp *spec.Spec) error {
	fresh := filepath.Join(s.opt.ConfigRoot, fmt.Sprintf("gen-%d", time.Now().UnixNano()))
	err := s.reaper.exclusive(func() error {
		if err := render.RenderWith(sp, fresh, render.Options{Live: s.live, Previous: s.live, MetaDirectory: PostfixMeta}); err != nil {
			return err
		}
		backdate(fresh)
		return render.Verify(fresh)
	})
	// Hashing passwords (argon2id, 64 MiB) grew the heap; give it back so
	// the appliance idles small.
	debug.FreeOSMemory()
	if err != nil {
		os.RemoveAll(fresh)
		return err
	}
	if err := render.Swap(fresh, s.live); err != nil {
		os.RemoveAll(fresh)
		return err
	}
	s.prune(fresh)
	return nil
}

// backdate sets rendered files a minute into the past: Postfix waits before
// starting when main.cf is only seconds old (it cannot tell an edit in
// progress from a finished one).
func backdate(dir string) {
	t := time.Now().Add(-time.Minute)
	_ = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			_ = os.Chtimes(p, t, t)
		}
		return nil
	})
}

// prune removes generations other than the live one and the one before.
func (s *Supervisor) prune(current string) {
	gens, _ := filepath.Glob(filepath.Join(s.opt.ConfigRoot, "gen-*"))
	sort.Strings(gens)
	keep := map[string]bool{current: true}
	if len(gens) >= 2 {
		keep[gens[len(gens)-2]] = true
	}
	for _, g := range gens {
		if !keep[g] {
			os.RemoveAll(g)
		}
	}
}

// prepareQueue makes the Postfix queue directories exist with the right
// owners (on first start the queue volume is empty), then asks Postfix to
// skip its start-up integrity checks: the tree is ours and was just
// verified, and postfix-script's checks cost seconds on a small host.
func (s *Supervisor) prepareQueue() error {
	q := "/var/spool/postfix"
	complete := true
	for _, d := range []string{"active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "maildrop", "pid", "private", "public", "saved", "trace"} {
		if st, err := os.Stat(filepath.Join(q, d)); err != nil || !st.IsDir() {
			complete = false
			break
		}
	}
	if !complete {
		if out, err := s.reaper.run("postfix", "post-install", "create-missing"); err != nil {
			return fmt.Errorf("postfix queue: %v: %s", err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(q, "quick-start"), nil, 0o644); err != nil {
		s.logf("warning: %v (Postfix will run its slower start-up checks)", err)
	}
	return nil
}

func (s *Supervisor) startServices() error {
	pf := exec.Command("postfix", "start-fg")
	pf.Stdout, pf.Stderr = os.Stdout, os.Stderr
	ch, err := s.reaper.start(pf)
	if err != nil {
		return fmt.Errorf("start postfix: %w", err)
	}
	s.postfix, s.postfixPid = ch, pf.Process.Pid
	dc := exec.Command("dovecot", "-F", "-c", filepath.Join(s.live, render.DovecotConf))
	dc.Stdout, dc.Stderr = os.Stdout, os.Stderr
	ch, err = s.reaper.start(dc)
	if err != nil {
		return fmt.Errorf("start dovecot: %w", err)
	}
	s.dovecot, s.dovecotPid = ch, dc.Process.Pid
	return nil
}

// stopServices asks both to stop and waits up to StopGrace, then kills.
func (s *Supervisor) stopServices() {
	if s.postfix != nil {
		// postfix stop signals the master through its pid file; the child
		// we started may be a wrapper, so signal it too.
		_, _ = s.reaper.run("postfix", "stop")
		_ = syscall.Kill(s.postfixPid, syscall.SIGTERM)
	}
	if s.dovecot != nil {
		_ = syscall.Kill(s.dovecotPid, syscall.SIGTERM)
	}
	deadline := time.After(s.opt.StopGrace)
	for s.postfix != nil || s.dovecot != nil {
		select {
		case <-s.postfix:
			s.postfix = nil
		case <-s.dovecot:
			s.dovecot = nil
		case <-deadline:
			if s.postfix != nil {
				_ = syscall.Kill(-s.postfixPid, syscall.SIGKILL)
				_ = syscall.Kill(s.postfixPid, syscall.SIGKILL)
			}
			if s.dovecot != nil {
				_ = syscall.Kill(s.dovecotPid, syscall.SIGKILL)
			}
			return
		}
	}
}

// reconfigure reloads the spec after a change. An invalid change is refused
// and everything keeps running as it was.
func (s *Supervisor) reconfigure(why string) {
	s.logf("change detected (%s): validating", why)
	now := s.snapshot()
	sp, err := spec.LoadFile(s.opt.SpecPath, s.opt.Environ)
	if err != nil {
		s.state = now
		s.logf("REJECTED: the new spec is invalid; the running configuration stays:\n%v", err)
		return
	}
	if sp.TLS.Mode == spec.TLSFiles {
		if err := certs.CheckPair(sp.TLS.Cert, sp.TLS.Key); err != nil {
			s.state = now
			s.logf("REJECTED: %v; the running configuration stays", err)
			return
		}
	}
	old, _ := filepath.EvalSymlinks(s.live)
	s.ensureRescue(sp)
	if err := s.renderAndSwap(sp); err != nil {
		s.state = now
		s.logf("REJECTED: %v; the running configuration stays", err)
		return
	}
	cur, _ := filepath.EvalSymlinks(s.live)
	changed, err := render.Diff(old, cur)
	if err != nil {
		s.logf("warning: diff: %v", err)
	}
	pf, dc := render.Reloads(changed)
	if now.certFingerprint != s.state.certFingerprint || now.keyStamp != s.state.keyStamp {
		pf, dc = true, true // same paths, new certificate: services reread it on reload
	}
	s.state = s.stateAfter(now, s.spec, sp)
	s.spec = sp
	for _, w := range sp.Warnings {
		s.logf("%s", w)
	}
	s.logf("applied: changed %s", orNone(changed))
	s.reload(pf, dc)
}

// ensureRescue makes the rules' rescue directory, so a failure is rescued
// rather than deferred (see EnsureRescueDir). A failure here only warns:
// the agent then defers, which loses nothing.
func (s *Supervisor) ensureRescue(sp *spec.Spec) {
	if sp.Rules.Set == nil || sp.Rules.Set.Rescue == "" {
		return
	}
	created, err := EnsureRescueDir(spec.MailRoot, sp.Rules.Set.Rescue, sp.Vmail.UID, sp.Vmail.GID)
	if err != nil {
		s.logf("warning: %v: failed deliveries will be deferred instead of rescued", err)
	} else if len(created) > 0 {
		s.logf("created the rescue directory %s", sp.Rules.Set.Rescue)
	}
}

func orNone(l []string) string {
	if len(l) == 0 {
		return "no rendered file (certificate only, or nothing)"
	}
	return strings.Join(l, ", ")
}

func (s *Supervisor) reload(postfix, dovecot bool) {
	if postfix {
		if out, err := s.reaper.run("postfix", "reload"); err != nil {
			s.logf("postfix reload failed: %v %s", err, out)
		} else {
			s.logf("postfix reloaded")
		}
	}
	if dovecot {
		if out, err := s.reaper.run("doveadm", "-c", filepath.Join(s.live, render.DovecotConf), "reload"); err != nil {
			s.logf("dovecot reload failed: %v %s", err, out)
		} else {
			s.logf("dovecot reloaded")
		}
	}
}

// banner tells the operator, on first start, how to log in and test.
func (s *Supervisor) banner(first bool) {
	sp := s.spec
	var b strings.Builder
	fmt.Fprintf(&b, "quietmx: ready: %s receiving for %s (SMTP 25, IMAPS 993)\n", sp.Hostname, strings.Join(sp.Domains, ", "))
	for _, m := range sp.Mailboxes {
		src := "password_hash in the spec"
		if m.PasswordFile != "" {
			src = "the password in " + m.PasswordFile
		}
		fmt.Fprintf(&b, "quietmx:   IMAPS login %q (%s), Maildir %s\n", m.Login, src, m.Maildir)
	}
	if first {
		fmt.Fprintf(&b, "quietmx:   test: swaks --server localhost:25 --to postmaster@%s   (or any SMTP client)\n", sp.Domains[0])
		fmt.Fprintf(&b, "quietmx:   why did it go there? docker compose exec quietmx quietmx explain postmaster@%s\n", sp.Domains[0])
	}
	s.mu.Lock()
	fmt.Fprint(s.opt.Out, b.String())
	s.mu.Unlock()
}
