// Package supervisor is `quietmx run`, the container's PID 1: it loads the
// spec, fixes the mail volume's ownership, makes sure there is a
// certificate, renders every config file into a fresh directory and swaps
// it live, starts Postfix and Dovecot as children, relays every log line to
// the container log, reaps orphans, and watches the spec, the rules and the
// certificate: a valid change is rendered, swapped and reloaded without a
// restart; an invalid one is refused loudly and the running config stays.
//
// One job per file: services.go controls Postfix and Dovecot (behind the
// Services interface), runstate.go clears what a crash left before they
// start, drain.go lets the deliveries in progress finish before they
// stop, reconfigure.go applies a change, applied.go keeps the last
// applied configuration on the state volume and starts on it (degraded)
// when the spec is invalid at start, renew.go runs certbot away from the
// main loop, reaper.go and logrelay.go are the two goroutines PID 1 needs
// (guard.go turns a panic in either into a clean non-zero exit), watch.go
// notices changes.
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

	"quietmx/internal/health"
	"quietmx/internal/loginguard"
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
	StateDir   string            // the state volume (the last applied configuration is kept there)
	StatusDir  string            // where `quietmx health` reads the supervisor's status
	Poll       time.Duration     // how often to look for changes
	// StopGrace is the whole time a stop may take (docker stop's
	// timeout, less a margin): the drain gets most of it, Postfix and
	// Dovecot the rest (StopReserve) to exit before they are killed.
	StopGrace time.Duration
}

// StopReserve is the part of the grace time kept for Postfix and Dovecot
// to exit once the drain is over.
func (o Options) StopReserve() time.Duration {
	return min(5*time.Second, o.StopGrace/3)
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
	if o.StateDir == "" {
		o.StateDir = spec.StateDir
	}
	if o.StatusDir == "" {
		o.StatusDir = health.StatusDir
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
	fatal     chan error     // a guarded goroutine died (see guard)
	certbot   *certbotRunner // certbot mode (certbot.go)
	// degraded is why the appliance runs on the last applied
	// configuration ("" = on the spec on disk).
	degraded string
	// verifyApplied checks a saved tree with the real tools before
	// installing it (off in unit tests without Postfix and Dovecot).
	verifyApplied bool
	rescued       int // messages in the rescue directory at the last count

	loginGuard *loginguard.Guard // nil until Run starts it (protection.go)
}

// newSupervisor is a Supervisor for opt (defaults applied) that does not
// start anything yet; Run adds the reaper and the real services.
func newSupervisor(opt Options) *Supervisor {
	opt.defaults()
	return &Supervisor{
		opt:  opt,
		live: filepath.Join(opt.ConfigRoot, "live"),
		// Installing into the live tree: files get their owners.
		renderOpt:     render.Options{MetaDirectory: PostfixMeta, Ownership: true},
		fatal:         make(chan error, 2),
		verifyApplied: true,
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
	s.svc = newMailServices(s.reaper, s.live, s.opt.StopReserve(), s.logf)
	s.setDegraded("") // a status left by the run before
	sp, specErr := spec.LoadFile(s.opt.SpecPath, s.opt.Environ)
	if specErr != nil {
		var err error
		if sp, err = s.startDegraded(specErr); err != nil {
			return err
		}
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
	s.certbot = newCertbotRunner(s.reaper.run, s.logf, s.live)
	if sp.TLS.Mode == spec.TLSCertbot {
		s.certbot.startACME()
	}
	t0 := time.Now()
	if s.degraded == "" {
		if err := s.renderAndSwap(sp); err != nil {
			return fmt.Errorf("render: %w", err)
		}
		s.logf("configuration rendered and verified in %v", time.Since(t0).Round(time.Millisecond))
		s.saveApplied(sp)
	}
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
	if err := s.startProtection(sp); err != nil {
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
	// What the last stop's drain deferred goes out now, not at the next
	// queue run minutes later.
	if err := s.svc.Flush(); err != nil {
		s.logf("warning: postqueue -f: %v (the queue is delivered at the next queue run)", err)
	}
	// A new certificate on the state volume means a first start: show how
	// to test.
	s.banner(firstStart || rep.Created)
	s.countRescued(true)
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
	renew := newRenewer(s.certbot.obtain, time.Now())
	for {
		select {
		case <-ctx.Done():
			s.stop("shutdown")
			return nil
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				s.reconfigure("SIGHUP")
				continue
			}
			s.stop(sig.String())
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
			s.countRescued(false)
		}
	}
}

// stop is the graceful stop: refuse new mail and let the deliveries in
// progress finish (Drain), within the grace time less what Postfix and
// Dovecot need to exit, then stop both.
func (s *Supervisor) stop(why string) {
	t0 := time.Now()
	s.logf("%s: draining: port 25 closed, deliveries in progress may finish (up to %v)", why, s.opt.StopGrace-s.opt.StopReserve())
	r := s.svc.Drain(t0.Add(s.opt.StopGrace - s.opt.StopReserve()))
	s.logf("%s", r)
	s.logf("stopping Postfix and Dovecot")
	s.svc.Stop()
	s.logf("stopped after %v", time.Since(t0).Round(time.Millisecond))
}

// countRescued logs how many messages wait in the rescue directory: at
// start when there are any, later whenever more arrive. Rescued mail is
// safe but not where it was meant to go; the owner must hear of it.
func (s *Supervisor) countRescued(first bool) {
	if s.spec == nil || s.spec.Rules.Set == nil || s.spec.Rules.Set.Rescue == "" {
		return
	}
	dir := s.spec.Rules.Set.Rescue
	n, err := health.RescueCount(dir)
	if err != nil {
		return // the agent will say why it cannot rescue, if it must
	}
	if n > s.rescued || (first && n > 0) {
		where := dir
		if f := render.RescueFolder(s.spec); f != "" {
			where = fmt.Sprintf("the %s folder of %s (%s)", f, s.spec.Mailboxes[0].Login, dir)
		}
		s.logf("RESCUED: %d messages wait in %s: see docs/operations.md, \"Rescued mail\"", n, where)
	}
	s.rescued = n
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
