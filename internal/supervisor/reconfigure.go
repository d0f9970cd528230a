package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"quietmx/internal/certs"
	"quietmx/internal/render"
	"quietmx/internal/spec"
)

// reconfigure reloads the spec after a change: render, verify, swap, then
// reload only the services whose files changed. An invalid change is
// refused and everything keeps running as it was.
func (s *Supervisor) reconfigure(why string) {
	s.logf("change detected (%s): validating", why)
	now := s.snapshot()
	sp, err := spec.LoadFile(s.opt.SpecPath, s.opt.Environ)
	if err != nil {
		s.state = now
		s.logf("REJECTED: the new spec is invalid; the running configuration stays:\n%v", err)
		if s.degraded != "" {
			s.logf("still DEGRADED: %s", s.degraded)
		}
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
	s.followLoginGuard(sp)
	for _, w := range sp.Warnings {
		s.logf("%s", w)
	}
	s.logf("applied: changed %s", orNone(changed))
	s.saveApplied(sp)
	if s.degraded != "" {
		s.setDegraded("")
		s.logf("no longer degraded: running on the spec on disk")
	}
	if pf {
		s.reload(Postfix)
	}
	if dc {
		s.reload(Dovecot)
	}
}

func (s *Supervisor) reload(svc Service) {
	if err := s.svc.Reload(svc); err != nil {
		s.logf("%s reload failed: %v", svc, err)
		return
	}
	s.logf("%s reloaded", svc)
}

func orNone(l []string) string {
	if len(l) == 0 {
		return "no rendered file (certificate only, or nothing)"
	}
	return strings.Join(l, ", ")
}

// renderAndSwap renders sp into a fresh generation, validates it with the
// real tools, and makes it live. The old generation stays until the next.
func (s *Supervisor) renderAndSwap(sp *spec.Spec) error {
	fresh := filepath.Join(s.opt.ConfigRoot, fmt.Sprintf("gen-%d", time.Now().UnixNano()))
	o := s.renderOpt
	o.Live, o.Previous, o.Verify = s.live, s.live, true
	// RenderWith leaves nothing behind on failure.
	err := s.reaper.exclusive(func() error { return render.RenderWith(sp, fresh, o) })
	// Hashing passwords (argon2id, 64 MiB) grew the heap; give it back so
	// the appliance idles small.
	debug.FreeOSMemory()
	if err != nil {
		return err
	}
	return s.makeLive(fresh)
}

// makeLive swaps the complete generation fresh live and prunes the old
// ones; on failure fresh is removed and the live tree stays.
func (s *Supervisor) makeLive(fresh string) error {
	if err := render.Swap(fresh, s.live); err != nil {
		os.RemoveAll(fresh)
		return err
	}
	s.prune(fresh)
	return nil
}

// prune removes generations other than the live one and the one before,
// and any render a crash interrupted (RenderWith's temporary directories).
func (s *Supervisor) prune(current string) {
	gens, _ := filepath.Glob(filepath.Join(s.opt.ConfigRoot, "gen-*"))
	sort.Strings(gens)
	keep := map[string]bool{current: true}
	if len(gens) >= 2 {
		keep[gens[len(gens)-2]] = true
	}
	stale, _ := filepath.Glob(filepath.Join(s.opt.ConfigRoot, ".gen-*.render-*"))
	for _, g := range append(gens, stale...) {
		if !keep[g] {
			os.RemoveAll(g)
		}
	}
}

// ensureRescue makes the rules' rescue directory, so a failure is rescued
// rather than deferred (see EnsureRescueDir). A failure here only warns:
// the agent then defers, which loses nothing.
func (s *Supervisor) ensureRescue(sp *spec.Spec) {
	if sp.Rules.Set == nil || sp.Rules.Set.Rescue == "" {
		return
	}
	created, err := EnsureRescueDir(s.opt.MailRoot, sp.Rules.Set.Rescue, sp.Vmail.UID, sp.Vmail.GID)
	if err != nil {
		s.logf("warning: %v: failed deliveries will be deferred instead of rescued", err)
	} else if len(created) > 0 {
		s.logf("created the rescue directory %s", sp.Rules.Set.Rescue)
	}
}
