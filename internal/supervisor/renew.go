package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"quietmx/internal/certs"
	"quietmx/internal/spec"
)

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

// Intervals between certbot runs.
const (
	renewFirst = 5 * time.Second // after start
	renewAfter = 12 * time.Hour  // after a success
	renewRetry = time.Hour       // after a failure
)

// renewer runs certbot in its own goroutine and posts when to run next to
// the main loop (done), so a run (a minute, or certbot's own timeouts when
// the CA is unreachable) never delays signals, spec changes or a dying
// service. The new certificate itself arrives through certbot's deploy
// hook, and the watcher reloads the services for it.
type renewer struct {
	run        func(name string, args ...string) (string, error)
	logf       func(format string, args ...any)
	ini        string // certbot's cli.ini, through the live tree
	certbotDir string // certbot's config-dir
	next       time.Time
	busy       bool
	done       chan time.Duration
}

func newRenewer(run func(string, ...string) (string, error), logf func(string, ...any), ini, certbotDir string, now time.Time) *renewer {
	return &renewer{run: run, logf: logf, ini: ini, certbotDir: certbotDir, next: now.Add(renewFirst), done: make(chan time.Duration, 1)}
}

// poll starts a run for hostname when one is due and none is running. It
// never waits.
func (r *renewer) poll(now time.Time, hostname string) {
	if r.busy || now.Before(r.next) {
		return
	}
	r.busy = true
	go func() { r.done <- r.renew(hostname) }()
}

// finished records a run's result, received from done.
func (r *renewer) finished(now time.Time, after time.Duration) {
	r.busy = false
	r.next = now.Add(after)
}

// renew obtains or renews the certificate; it returns when to run again.
func (r *renewer) renew(hostname string) time.Duration {
	args := []string{"--config", r.ini, "certonly"}
	if _, err := os.Stat(filepath.Join(r.certbotDir, "live", hostname)); err == nil {
		args = []string{"--config", r.ini, "renew"}
	}
	out, err := r.run("certbot", args...)
	if err != nil {
		r.logf("certbot %s failed (keeping the current certificate, retrying in 1h): %v", args[2], lastLines(out, 5))
		return renewRetry
	}
	r.logf("certbot %s: ok", args[2])
	return renewAfter
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
