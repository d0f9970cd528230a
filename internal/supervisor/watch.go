package supervisor

import (
	"crypto/sha256"
	"fmt"
	"os"
	"sort"

	"quietmx/internal/certs"
	"quietmx/internal/spec"
)

// watchState is what the supervisor watches: the spec file, the files it
// names (rules_file, password files) and the certificate pair. A change
// of content triggers a re-render; polling content hashes (every few
// seconds, a few small files) works on bind mounts and volumes alike,
// where inotify misses editors that replace files.
type watchState struct {
	files           map[string]string // path → content hash ("" = missing)
	certFingerprint string
	keyStamp        string
}

func (s *Supervisor) watched() []string {
	var paths []string
	if s.opt.SpecPath != "" {
		paths = append(paths, s.opt.SpecPath)
	}
	sp := s.spec
	if sp != nil {
		if sp.Rules.Origin != "" && sp.Rules.Origin != "generated" && fileExists(sp.Rules.Origin) {
			paths = append(paths, sp.Rules.Origin)
		}
		for _, m := range sp.Mailboxes {
			if m.PasswordFile != "" {
				paths = append(paths, m.PasswordFile)
			}
		}
		if sp.Outbound != nil && sp.Outbound.PasswordFile != "" {
			paths = append(paths, sp.Outbound.PasswordFile)
		}
	}
	return paths
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func (s *Supervisor) snapshot() watchState {
	st := watchState{files: map[string]string{}}
	for _, p := range s.watched() {
		st.files[p] = hashFile(p)
	}
	if s.spec != nil {
		if info, err := certs.Read(s.spec.TLS.Cert); err == nil {
			st.certFingerprint = info.Fingerprint
		}
		st.keyStamp = hashFile(s.spec.TLS.Key)
	}
	return st
}

func hashFile(p string) string {
	data, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%x", sha256.Sum256(data))
}

func (a watchState) equal(b watchState) bool { return len(a.changed(b)) == 0 }

// changed names what differs between two states.
func (a watchState) changed(b watchState) []string {
	var out []string
	for p, h := range a.files {
		if b.files[p] != h {
			out = append(out, p)
		}
	}
	for p := range b.files {
		if _, ok := a.files[p]; !ok {
			out = append(out, p)
		}
	}
	if a.certFingerprint != b.certFingerprint {
		out = append(out, "certificate")
	}
	if a.keyStamp != b.keyStamp {
		out = append(out, "private key")
	}
	sort.Strings(out)
	return out
}

// stateAfter is the watch state to keep once sp replaced old: the snapshot
// taken before sp was loaded (so an edit made while it loaded is still a
// change at the next poll), plus the files only sp names (a rules_file the
// spec now points to, a new password file), hashed now. Without those, the
// next poll would see them "appear" and re-render for nothing, logging a
// second "applied" that a script waiting for the real change would take
// for it.
func (s *Supervisor) stateAfter(before watchState, old, sp *spec.Spec) watchState {
	saved := s.spec
	s.spec = sp
	fresh := s.snapshot()
	s.spec = saved
	for p := range fresh.files {
		if h, ok := before.files[p]; ok {
			fresh.files[p] = h
		}
	}
	if old != nil && old.TLS.Cert == sp.TLS.Cert && old.TLS.Key == sp.TLS.Key {
		fresh.certFingerprint, fresh.keyStamp = before.certFingerprint, before.keyStamp
	}
	return fresh
}
