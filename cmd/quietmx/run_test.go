package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"quietmx/internal/passwd"
	"quietmx/internal/spec"
)

// TestDefaultPasswordFile: `docker run` with the one-mailbox shortcut and
// no password gets the file compose.yaml names; anything else is kept.
func TestDefaultPasswordFile(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string // QUIETMX_PASSWORD_FILE afterwards
	}{
		{"mailbox alone", map[string]string{"QUIETMX_MAILBOX": "me@example.com"}, spec.GeneratedPasswordFile},
		{"mailbox and file", map[string]string{"QUIETMX_MAILBOX": "me@example.com", "QUIETMX_PASSWORD_FILE": "/run/secrets/pw"}, "/run/secrets/pw"},
		{"mailbox and hash", map[string]string{"QUIETMX_MAILBOX": "me@example.com", "QUIETMX_PASSWORD_HASH": "{ARGON2ID}x"}, ""},
		{"no mailbox (the spec's)", map[string]string{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			defaultPasswordFile(func(k string) string { return env[k] }, func(k, v string) error { env[k] = v; return nil })
			if got := env["QUIETMX_PASSWORD_FILE"]; got != tt.want {
				t.Errorf("QUIETMX_PASSWORD_FILE = %q, want %q", got, tt.want)
			}
		})
	}
	// compose.yaml names the same file.
	compose, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(compose), "QUIETMX_PASSWORD_FILE: ${QUIETMX_PASSWORD_FILE:-"+spec.GeneratedPasswordFile+"}") {
		t.Errorf("compose.yaml does not default QUIETMX_PASSWORD_FILE to %s", spec.GeneratedPasswordFile)
	}
}

// TestGeneratedPasswordNotLogged: the password lands in its file (0600),
// and the log says where and how to read it, never the password.
func TestGeneratedPasswordNotLogged(t *testing.T) {
	state := t.TempDir()
	p := filepath.Join(state, "secrets", "mailbox.password")
	var out strings.Builder
	if err := ensureGeneratedPassword(p, state, &out); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	pw, err := passwd.ReadSecret(raw)
	if err != nil || len(pw) < 20 {
		t.Fatalf("password file %q: %v", raw, err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	log := out.String()
	if strings.Contains(log, string(pw)) {
		t.Errorf("the log shows the password: %q", log)
	}
	if !strings.Contains(log, "cat "+p) {
		t.Errorf("the log does not say how to read it: %q", log)
	}
	// An existing file is kept, silently; a file outside the state
	// volume is the operator's.
	out.Reset()
	if err := ensureGeneratedPassword(p, state, &out); err != nil || out.Len() > 0 {
		t.Errorf("second call: %v, %q", err, out.String())
	}
	if again, _ := os.ReadFile(p); string(again) != string(raw) {
		t.Error("the password changed")
	}
	other := filepath.Join(t.TempDir(), "pw")
	if err := ensureGeneratedPassword(other, state, &out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(other); err == nil {
		t.Error("generated a file outside the state volume")
	}
}

func TestStopGrace(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, true}, {"55s", 55 * time.Second, true}, {"1m", time.Minute, true},
		{"55", 0, false}, {"100ms", 0, false}, {"soon", 0, false},
	}
	for _, tt := range tests {
		got, err := stopGrace(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("stopGrace(%q) = %v, %v", tt.in, got, err)
		}
	}
}
