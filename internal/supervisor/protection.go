package supervisor

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"

	"quietmx/internal/render"

	"quietmx/internal/loginguard"
	"quietmx/internal/spec"
)

// startProtection prepares what the protection settings need before
// Postfix and Dovecot start: postscreen's cache directory on the queue
// volume (Postfix writes a cache only in a directory it owns; elsewhere it
// falls back to data_directory, which a new container loses), the nonce
// Dovecot's configuration reads, and the login guard.
func (s *Supervisor) startProtection(sp *spec.Spec) error {
	if err := ensurePostfixDir(render.PostscreenDir); err != nil {
		return err
	}
	return s.startLoginGuard(sp)
}

// ensurePostfixDir makes dir exist, owned by the postfix user, mode 0700.
func ensurePostfixDir(dir string) error {
	u, err := user.Lookup("postfix")
	if err != nil {
		return fmt.Errorf("postscreen cache: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("postscreen cache: user postfix: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("postscreen cache: %w", err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("postscreen cache: %w", err)
	}
	return nil
}

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
