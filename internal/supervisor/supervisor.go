// Package supervisor is `quietmx run`, the container's PID 1: it loads the
// spec, fixes the mail volume's ownership, makes sure there is a
// certificate, renders every config file into a fresh directory and swaps
// it live, starts Postfix and Dovecot as children, relays every log line to
// the container log, reaps orphans, and watches the spec, the rules and the
// certificate: a valid change is rendered, swapped and reloaded without a
// restart; an invalid one is refused loudly and the running config stays.
//
// One job per file: services.go controls Postfix and Dovecot (behind the
// Services interface), reconfigure.go applies a change, renew.go runs
// certbot away from the main loop, reaper.go and logrelay.go are the two
// goroutines PID 1 needs (guard.go turns a panic in either into a clean
// non-zero exit), watch.go notices changes.
//
// No shell scripts edit files here: every file is rendered whole (package
// render), so a restart is always safe.
package supervisor

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"quietmx/internal/render"
	"quietmx/internal/spec"
)

// PostfixMeta is where the image keeps the Postfix package's metadata
// (docker/Dockerfile), so that /etc/postfix can link to the live tree.
const PostfixMeta = "/etc/postfix-meta"

// Options configure Run. Zero values mean the image's layout.
type Options struct {
	SpecPath   string            // the spec file (spec.ResolvePath); "" = environment only
	Environ    map[string]string // nil = the process environment
	ConfigRoot string            // where rendered trees and the live link live
	MailRoot   string            // the mail volume (rescue directories are made below it)
	LogSocket  string            // the syslog socket we own
	Out        io.Writer         // the container log
	Poll       time.Duration     // how often to look for changes
	StopGrace  time.Duration     // how long Postfix and Dovecot get to stop
}

func (o *Options) defaults() {
	if o.ConfigRoot == "" {
		o.ConfigRoot = "/etc/quietmx"
	}
	if o.MailRoot == "" {
		o.MailRoot = spec.MailRoot
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
	opt       Options
	mu        sync.Mutex     // serialises writes to opt.Out
	reaper    *reaper        // nil in unit tests
	svc       Services       // Postfix and Dovecot
	renderOpt render.Options // how trees are rendered for the live tree
	spec      *spec.Spec
	live      string
	state     watchState
	fatal     chan error // a guarded goroutine died (see guard)
}

// newSupervisor is a Supervisor for opt (defaults applied) that does not
// start anything yet; Run adds the reaper and the real services.
func newSupervisor(opt Options) *Supervisor {
	opt.defaults()
	return &Supervisor{
		opt:  opt,
		live: filepath.Join(opt.ConfigRoot, "live"),
		// Installing into the live tree: files get their owners.
		renderOpt: render.Options{MetaDirectory: PostfixMeta, Ownership: true},
		fatal:     make(chan error, 2),
	}
}

func (s *Supervisor) logf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.opt.Out, "quietmx: "+format+"\n", args...)
}

// fail reports a dead guarded goroutine to the main loop; it never blocks.
func (s *Supervisor) fail(err error) {
	select {
	case s.fatal <- err:
	default: // one is enough to stop
	}
}

// Run runs the appliance until ctx ends, a signal stops it, a service
// dies or one of its own goroutines panics. It returns nil after a clean
// stop, an error when it could not start or had to stop for a failure.
func Run(ctx context.Context, opt Options) error {
	s := newSupervisor(opt)
	s.reaper = newReaper(s.fail)
	s.svc = newMailServices(s.reaper, s.live, s.opt.StopGrace, s.logf)
	sp, err := spec.LoadFile(s.opt.SpecPath, s.opt.Environ)
	if err != nil {
		return fmt.Errorf("invalid spec, nothing started:\n%w", err)
	}
	s.spec = sp
	s.svc = s.withAgent(s.svc, func() *spec.Spec { return s.spec })
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
	t0 := time.Now()
	if err := s.renderAndSwap(sp); err != nil {
		return fmt.Errorf("render: %w", err)
	}
	s.logf("configuration rendered and verified in %v", time.Since(t0).Round(time.Millisecond))
	s.state = s.snapshot()

	relay, err := listenLog(s.opt.LogSocket, s.opt.Out, &s.mu)
	if err != nil {
		s.logf("warning: cannot own %s (%v): the agent's delivery lines will not reach the container log", s.opt.LogSocket, err)
	} else {
		defer relay.close()
		relay.start(s.fail)
	}
	if err := s.svc.Prepare(); err != nil {
		return err
	}
	if err := s.svc.Start(); err != nil {
		s.svc.Stop()
		return err
	}
	t0 = time.Now()
	if err := s.svc.Ready(60 * time.Second); err != nil {
		s.svc.Stop()
		return err
	}
	s.logf("Postfix and Dovecot answering after %v", time.Since(t0).Round(time.Millisecond))
	// A new certificate on the state volume means a first start: show how
	// to test.
	s.banner(firstStart || rep.Created)
	return s.loop(ctx)
}

// loop is the main loop: signals, dead services, dead goroutines, changes
// and certbot's results. Nothing in it waits for long, so a signal is
// always handled at once.
func (s *Supervisor) loop(ctx context.Context) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	tick := time.NewTicker(s.opt.Poll)
	defer tick.Stop()
	renew := newRenewer(s.reaper.run, s.logf, filepath.Join(s.live, render.CertbotINI), spec.CertbotDir, time.Now())
	for {
		select {
		case <-ctx.Done():
			s.svc.Stop()
			return nil
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				s.reconfigure("SIGHUP")
				continue
			}
			s.logf("%v: stopping Postfix and Dovecot", sig)
			s.svc.Stop()
			s.logf("stopped")
			return nil
		case e := <-s.svc.Exited():
			name := "Postfix master"
			if e.Service == Dovecot {
				name = "Dovecot"
			}
			s.logf("%s exited (%s): stopping", name, e.Status)
			s.svc.Stop()
			return fmt.Errorf("%s exited", e.Service)
		case err := <-s.fatal:
			s.logf("%v", err)
			s.logf("stopping Postfix and Dovecot: the supervisor cannot go on safely")
			s.svc.Stop()
			return fmt.Errorf("supervisor failure: %s", firstLine(err.Error()))
		case after := <-renew.done:
			renew.finished(time.Now(), after)
		case <-tick.C:
			if now := s.snapshot(); !now.equal(s.state) {
				s.reconfigure(strings.Join(now.changed(s.state), ", "))
			}
			if s.spec.TLS.Mode == spec.TLSCertbot {
				renew.poll(time.Now(), s.spec.Hostname)
			}
		}
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
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
