package supervisor

import (
	"crypto/rand"

	"quietmx/internal/loginguard"
	"quietmx/internal/spec"
)

// startLoginGuard makes the nonce Dovecot's configuration reads (it must
// exist before Dovecot starts) and starts the login guard on loopback,
// whatever the spec's limit: a later spec may turn it on, and Dovecot's
// configuration points at it only when it is on. A guard that cannot
// listen or dies is logged, not fatal: Dovecot then logs in as without it
// (auth_policy_reject_on_fail = no).
func (s *Supervisor) startLoginGuard(sp *spec.Spec) error {
	if err := loginguard.EnsureNonce(loginguard.NonceFile, rand.Reader); err != nil {
		return err
	}
	g := loginguard.New(sp.Protection.IMAPFailuresPerMinute, s.logf)
	srv, err := g.Serve(loginguard.Addr)
	if err != nil {
		s.logf("warning: %v: IMAP logins are not protected against password guessing", err)
		return nil
	}
	s.loginGuard = g
	go guard("login guard", s.fail, func() {
		if err := <-srv.Done(); err != nil {
			s.logf("warning: login guard stopped: %v: IMAP logins are no longer protected against password guessing", err)
		}
	})
	return nil
}

// followLoginGuard gives the running guard a new spec's limit.
func (s *Supervisor) followLoginGuard(sp *spec.Spec) {
	if s.loginGuard != nil {
		s.loginGuard.SetLimit(sp.Protection.IMAPFailuresPerMinute)
	}
}
