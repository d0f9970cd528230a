package supervisor

import (
	"fmt"
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

// renewFirst is the wait after start before the first certbot run.
const renewFirst = 5 * time.Second

// renewer runs certbot in its own goroutine and posts when to run next to
// the main loop (done), so a run (a minute, or certbot's own timeouts when
// the CA is unreachable) never delays signals, spec changes or a dying
// service. The new certificate itself arrives through certbot's deploy
// hook, and the watcher reloads the services for it. What a run does and
// when the next one is due is the certbotRunner's (certbot.go).
type renewer struct {
	obtain func(hostname string) time.Duration // only ever one call at a time
	next   time.Time
	busy   bool
	done   chan time.Duration
}

func newRenewer(obtain func(hostname string) time.Duration, now time.Time) *renewer {
	return &renewer{obtain: obtain, next: now.Add(renewFirst), done: make(chan time.Duration, 1)}
}

// poll starts a run for hostname when one is due and none is running. It
// never waits.
func (r *renewer) poll(now time.Time, hostname string) {
	if r.busy || now.Before(r.next) {
		return
	}
	r.busy = true
	go func() { r.done <- r.obtain(hostname) }()
}

// finished records a run's result, received from done.
func (r *renewer) finished(now time.Time, after time.Duration) {
	r.busy = false
	r.next = now.Add(after)
}
