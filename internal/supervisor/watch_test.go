package supervisor

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"quietmx/internal/certs"
	"quietmx/internal/render"
	"quietmx/internal/spec"
)

// What the supervisor reloads for which change: the rendered files decide
// (render.Reloads), and a new certificate at the same paths reloads both.
func TestReloadDecisions(t *testing.T) {
	tests := []struct {
		changed          []string
		postfix, dovecot bool
	}{
		{nil, false, false},
		{[]string{render.RulesFile}, false, false},  // the agent reads it per message
		{[]string{render.PasswdFile}, false, false}, // Dovecot rereads its passwd-file
		{[]string{render.MainCF}, true, false},
		{[]string{render.MasterCF, render.RulesFile}, true, false},
		{[]string{render.DovecotConf}, false, true},
		{[]string{render.SASLPasswd}, true, false},
		{[]string{render.MainCF, render.DovecotConf}, true, true},
	}
	for _, tt := range tests {
		pf, dc := render.Reloads(tt.changed)
		if pf != tt.postfix || dc != tt.dovecot {
			t.Errorf("Reloads(%v) = %v, %v; want %v, %v", tt.changed, pf, dc, tt.postfix, tt.dovecot)
		}
	}
}

// The watcher notices content changes of the spec, the rules file and the
// certificate pair, and nothing else.
func TestWatchStateChanges(t *testing.T) {
	dir := t.TempDir()
	specPath := filepath.Join(dir, "quietmx.yaml")
	rulesPath := filepath.Join(dir, "rules.yaml")
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(specPath, []byte("hostname: a\n"), 0o644)
	os.WriteFile(rulesPath, []byte("default: []\n"), 0o644)
	c1, k1, _ := certs.SelfSigned("mail.example.com", timeNow())
	os.WriteFile(cert, c1, 0o644)
	os.WriteFile(key, k1, 0o600)
	s := &Supervisor{opt: Options{SpecPath: specPath}, spec: &spec.Spec{
		Rules: spec.Rules{Origin: rulesPath},
		TLS:   spec.TLS{Cert: cert, Key: key},
	}}
	base := s.snapshot()
	if !base.equal(s.snapshot()) {
		t.Fatal("unchanged files compare unequal")
	}
	// Touching without changing content is not a change.
	os.WriteFile(specPath, []byte("hostname: a\n"), 0o644)
	if got := s.snapshot().changed(base); len(got) != 0 {
		t.Errorf("rewrite with same content: changed %v", got)
	}
	os.WriteFile(rulesPath, []byte("default: {type: discard}\n"), 0o644)
	if got := s.snapshot().changed(base); !reflect.DeepEqual(got, []string{rulesPath}) {
		t.Errorf("rules edit: changed %v", got)
	}
	c2, k2, _ := certs.SelfSigned("mail.example.com", timeNow())
	os.WriteFile(cert, c2, 0o644)
	os.WriteFile(key, k2, 0o600)
	if got := s.snapshot().changed(base); !reflect.DeepEqual(got, []string{rulesPath, "certificate", "private key"}) {
		t.Errorf("certificate rotation: changed %v", got)
	}
	os.Remove(specPath)
	if got := s.snapshot().changed(base); len(got) != 4 {
		t.Errorf("spec removed: changed %v", got)
	}
}

func timeNow() time.Time { return time.Now() }

// A spec edit that starts using a rules_file: the state kept after applying
// it already covers that file, so the next poll sees no change (before, it
// saw the file "appear" and re-rendered for nothing, logging a second
// "applied").
func TestStateAfterNewRulesFile(t *testing.T) {
	dir := t.TempDir()
	specPath := filepath.Join(dir, "quietmx.yaml")
	rulesPath := filepath.Join(dir, "rules.yaml")
	os.WriteFile(specPath, []byte("hostname: a\n"), 0o644)
	os.WriteFile(rulesPath, []byte("default: []\n"), 0o644)
	old := &spec.Spec{Rules: spec.Rules{Origin: "quietmx.yaml:3"}}
	s := &Supervisor{opt: Options{SpecPath: specPath}, spec: old}
	before := s.snapshot()
	os.WriteFile(specPath, []byte("hostname: a\nrules_file: rules.yaml\n"), 0o644)
	// An edit that lands while the new spec loads is still seen later.
	edited := s.snapshot()
	sp := &spec.Spec{Rules: spec.Rules{Origin: rulesPath}}
	st := s.stateAfter(before, old, sp)
	s.spec = sp
	if got := s.snapshot().changed(st); !reflect.DeepEqual(got, []string{specPath}) {
		t.Errorf("after applying: changed %v, want only the spec edited since the pre-load snapshot", got)
	}
	st = s.stateAfter(edited, old, sp)
	if got := s.snapshot().changed(st); len(got) != 0 {
		t.Errorf("after applying: changed %v, want nothing", got)
	}
	if _, ok := st.files[rulesPath]; !ok {
		t.Errorf("the new rules_file is not watched: %v", st.files)
	}
}
