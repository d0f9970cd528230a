package supervisor

import (
	"os"
	"path/filepath"
	"quietmx/internal/maillog/maillogtest"
	"strings"
	"testing"

	"quietmx/internal/health"
	"quietmx/internal/render"
	"quietmx/internal/spec"
)

// TestStartOnLastApplied: a spec that is invalid at start runs on the
// configuration applied last (kept on the state volume, so it survives a
// new container), degraded and saying so, until a valid spec applies;
// with nothing ever applied, nothing starts.
func TestStartOnLastApplied(t *testing.T) {
	dir := t.TempDir()
	specPath, writeSpec := specWriter(t, dir)
	writeTestCert(t, dir)
	// container is one run of the appliance: a fresh config root (the
	// writable layer), the same state volume.
	container := func(name string) (*Supervisor, *maillogtest.Buffer) {
		os.RemoveAll(filepath.Join(dir, "etc"))
		out := &maillogtest.Buffer{}
		s := newSupervisor(Options{
			SpecPath:   specPath,
			Environ:    map[string]string{},
			ConfigRoot: filepath.Join(dir, "etc"),
			MailRoot:   filepath.Join(dir, "mail"),
			StateDir:   filepath.Join(dir, "state"),
			StatusDir:  filepath.Join(dir, name, "run"),
			Out:        out,
		})
		s.svc = &fakeServices{reloadErr: map[Service]error{}}
		s.renderOpt = render.Options{}
		return s, out
	}
	broken := "hostname: mail\n"

	// Never applied: an invalid spec starts nothing.
	writeSpec(broken)
	s, _ := container("first")
	if _, err := s.startDegraded(errString("hostname: not a fully qualified name")); err == nil ||
		!strings.Contains(err.Error(), "invalid spec, nothing started (and no last valid configuration") {
		t.Fatalf("startDegraded with nothing applied = %v", err)
	}

	// A valid spec applies and is kept.
	writeSpec(testSpec(dir, "example.com, example.org", testHash))
	sp, err := spec.LoadFile(specPath, s.opt.Environ)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.renderAndSwap(sp); err != nil {
		t.Fatal(err)
	}
	s.saveApplied(sp)
	appliedMain, err := os.ReadFile(filepath.Join(s.live, render.MainCF))
	if err != nil {
		t.Fatal(err)
	}

	// The spec breaks; a new container starts on what was applied.
	writeSpec(broken)
	_, specErr := spec.LoadFile(specPath, map[string]string{})
	if specErr == nil {
		t.Fatal("the broken spec loads")
	}
	s2, out := container("second")
	sp2, err := s2.startDegraded(specErr)
	if err != nil {
		t.Fatalf("startDegraded: %v", err)
	}
	if got := strings.Join(sp2.Domains, ","); got != "example.com,example.org" {
		t.Errorf("restored domains %q", got)
	}
	if sp2.Rules.Set == nil || sp2.Rules.Set.Rescue != sp2.Mailboxes[0].Rescue() {
		t.Errorf("restored rules: %+v", sp2.Rules.Set)
	}
	live, err := os.ReadFile(filepath.Join(s2.live, render.MainCF))
	if err != nil || string(live) != string(appliedMain) {
		t.Errorf("live main.cf is not the applied one (err %v)", err)
	}
	log := out.Take()
	for _, want := range []string{"DEGRADED: the spec on disk is invalid; running on the configuration applied", "hostname"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if got := health.ReadDegraded(s2.opt.StatusDir); !strings.Contains(got, "the spec on disk is invalid") {
		t.Errorf("health status %q, want degraded", got)
	}

	// Still invalid after an edit: still degraded.
	s2.spec = sp2
	s2.state = s2.snapshot()
	writeSpec(broken + "# still\n")
	s2.reconfigure("test")
	if log := out.Take(); !strings.Contains(log, "REJECTED") || !strings.Contains(log, "still DEGRADED") {
		t.Errorf("log after a second invalid edit:\n%s", log)
	}
	// Fixed: applied, no longer degraded, and the fix is what is kept.
	writeSpec(testSpec(dir, "example.com", testHash))
	s2.reconfigure("test")
	if log := out.Take(); !strings.Contains(log, "applied: changed postfix/main.cf") || !strings.Contains(log, "no longer degraded") {
		t.Errorf("log after the fix:\n%s", log)
	}
	if got := health.ReadDegraded(s2.opt.StatusDir); got != "" {
		t.Errorf("health status %q after the fix", got)
	}
	sp3, _, _, err := s2.loadApplied()
	if err != nil || strings.Join(sp3.Domains, ",") != "example.com" {
		t.Errorf("kept after the fix: %v, %v", sp3, err)
	}
	if olds, _ := filepath.Glob(filepath.Join(dir, "state", "applied-*")); len(olds) != 1 {
		t.Errorf("state volume holds %v, want one copy", olds)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
