package supervisor

import (
	"errors"
	"os"
	"path/filepath"
	"quietmx/internal/maillog/maillogtest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"quietmx/internal/certs"
	"quietmx/internal/render"
	"quietmx/internal/spec"
)

// fakeServices records what the supervisor asks of Postfix and Dovecot.
type fakeServices struct {
	mu        sync.Mutex
	reloads   []Service
	reloadErr map[Service]error
	exited    chan Exit
	calls     []string    // Drain, Flush and Stop, in order
	deadline  time.Time   // the last Drain's
	drain     DrainReport // what Drain reports
}

func (f *fakeServices) Prepare() error            { return nil }
func (f *fakeServices) Start() error              { return nil }
func (f *fakeServices) Ready(time.Duration) error { return nil }
func (f *fakeServices) Exited() <-chan Exit       { return f.exited }
func (f *fakeServices) Stop()                     { f.record("Stop") }
func (f *fakeServices) Flush() error              { f.record("Flush"); return nil }
func (f *fakeServices) Drain(deadline time.Time) DrainReport {
	f.record("Drain")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deadline = deadline
	return f.drain
}

func (f *fakeServices) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}
func (f *fakeServices) Reload(svc Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads = append(f.reloads, svc)
	return f.reloadErr[svc]
}

func (f *fakeServices) take() []Service {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.reloads
	f.reloads = nil
	return r
}

const testHash = "{SHA512-CRYPT}$6$4bAowgfggBr85FSu$A9PM3uNhN0WsrY.1PrmmOXAcMqW3gjS63YHaVA7YdERz3dpVx8kmTu1vJMvBdWoEzCuo6iCE9QfK8lA7Cido11"

// testSpec is a valid spec in files TLS mode (no certbot, no state volume).
func testSpec(dir, domains, hash string) string {
	return "hostname: mail.example.com\n" +
		"domains: [" + domains + "]\n" +
		"tls: {mode: files, cert: " + filepath.Join(dir, "cert.pem") + ", key: " + filepath.Join(dir, "key.pem") + "}\n" +
		"mailboxes:\n  - login: me@example.com\n    password_hash: \"" + hash + "\"\n"
}

func writeTestCert(t *testing.T, dir string) {
	t.Helper()
	c, k, err := certs.SelfSigned("mail.example.com", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), k, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), c, 0o644); err != nil {
		t.Fatal(err)
	}
}

// specWriter is the spec file of a test in dir and what replaces it.
func specWriter(t *testing.T, dir string) (string, func(content string)) {
	p := filepath.Join(dir, "quietmx.yaml")
	return p, func(content string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReconfigure: a change is rendered, verified with the real tools,
// swapped live, and only the services whose files changed are reloaded;
// an invalid change reloads nothing and leaves the live tree as it was.
func TestReconfigure(t *testing.T) {
	dir := t.TempDir()
	specPath, writeSpec := specWriter(t, dir)
	writeTestCert(t, dir)
	writeSpec(testSpec(dir, "example.com", testHash))

	out := &maillogtest.Buffer{}
	fake := &fakeServices{reloadErr: map[Service]error{}}
	s := newSupervisor(Options{
		SpecPath:   specPath,
		Environ:    map[string]string{}, // never the test process's QUIETMX_*
		ConfigRoot: filepath.Join(dir, "etc"),
		MailRoot:   filepath.Join(dir, "mail"),
		StateDir:   filepath.Join(dir, "state"),
		StatusDir:  filepath.Join(dir, "run"),
		Out:        out,
	})
	s.svc = fake
	s.renderOpt = render.Options{} // no owners, no image layout: any machine
	sp, err := spec.LoadFile(specPath, s.opt.Environ)
	if err != nil {
		t.Fatal(err)
	}
	s.spec = sp
	if err := s.renderAndSwap(sp); err != nil {
		t.Fatalf("first render: %v", err)
	}
	s.state = s.snapshot()
	out.Take()

	otherHash := "{SHA512-CRYPT}$6$rounds=5000$abcdefgh$" + strings.Repeat("x", 86)
	steps := []struct {
		name    string
		change  func()
		reloads []Service
		logs    []string // in the log, in this order
		notLogs []string
		kept    bool // the live tree must be the one before
	}{
		{
			name:    "new domain: main.cf only",
			change:  func() { writeSpec(testSpec(dir, "example.com, example.org", testHash)) },
			reloads: []Service{Postfix},
			logs:    []string{"quietmx: change detected (test): validating", "quietmx: applied: changed postfix/main.cf", "quietmx: postfix reloaded"},
		},
		{
			name:    "invalid spec: refused",
			change:  func() { writeSpec("hostname: mail\n") },
			logs:    []string{"quietmx: REJECTED: the new spec is invalid; the running configuration stays"},
			notLogs: []string{"applied"},
			kept:    true,
		},
		{
			name:   "back to the running spec: nothing rendered changed",
			change: func() { writeSpec(testSpec(dir, "example.com, example.org", testHash)) },
			logs:   []string{"quietmx: applied: changed no rendered file"},
		},
		{
			name:    "new password hash: Dovecot rereads its passwd-file by itself",
			change:  func() { writeSpec(testSpec(dir, "example.com, example.org", otherHash)) },
			logs:    []string{"quietmx: applied: changed dovecot/passwd"},
			notLogs: []string{"reloaded"},
		},
		{
			name:    "new certificate at the same paths: both reread it",
			change:  func() { writeTestCert(t, dir) },
			reloads: []Service{Postfix, Dovecot},
			logs:    []string{"quietmx: applied: changed no rendered file", "quietmx: postfix reloaded", "quietmx: dovecot reloaded"},
		},
		{
			name: "a failed reload is logged, the new tree stays live",
			change: func() {
				fake.reloadErr[Postfix] = errors.New("postfix reload: exit status 1: fatal: boom")
				writeSpec(testSpec(dir, "example.com", otherHash))
			},
			reloads: []Service{Postfix},
			logs:    []string{"quietmx: applied: changed postfix/main.cf", "quietmx: postfix reload failed: postfix reload: exit status 1: fatal: boom"},
			notLogs: []string{"postfix reloaded"},
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before, _ := filepath.EvalSymlinks(s.live)
			st.change()
			s.reconfigure("test")
			if got := fake.take(); !reflect.DeepEqual(got, st.reloads) {
				t.Errorf("reloads = %v, want %v", got, st.reloads)
			}
			log := out.Take()
			rest := log
			for _, want := range st.logs {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Fatalf("log lacks %q (in order):\n%s", want, log)
				}
				rest = rest[i+len(want):]
			}
			for _, bad := range st.notLogs {
				if strings.Contains(log, bad) {
					t.Errorf("log has %q:\n%s", bad, log)
				}
			}
			after, _ := filepath.EvalSymlinks(s.live)
			if (before == after) != st.kept {
				t.Errorf("live tree %s -> %s, want kept=%v", before, after, st.kept)
			}
			if now := s.snapshot(); !now.equal(s.state) {
				t.Errorf("after reconfigure the watcher still sees changes: %v", now.changed(s.state))
			}
		})
	}
	// Only the live generation and the one before remain, and no render
	// directory was left behind.
	entries, _ := os.ReadDir(s.opt.ConfigRoot)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 3 {
		t.Errorf("%s holds %v, want two generations and the live link", s.opt.ConfigRoot, names)
	}
}
