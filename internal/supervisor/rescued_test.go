package supervisor

import (
	"os"
	"path/filepath"
	"quietmx/internal/maillog/maillogtest"
	"strings"
	"testing"

	"quietmx/internal/rules"
	"quietmx/internal/spec"
)

// TestCountRescued: the log says how many messages wait in the rescue
// folder at start when there are any, and again whenever more arrive.
func TestCountRescued(t *testing.T) {
	dir := t.TempDir()
	me := spec.Mailbox{Login: "me@example.com", Maildir: filepath.Join(dir, "me", "Maildir")}
	rescue := me.Rescue()
	for _, d := range []string{rescue, filepath.Join(filepath.Dir(rescue), "cur"), filepath.Join(filepath.Dir(rescue), "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	out := &maillogtest.Buffer{}
	s := newSupervisor(Options{Out: out})
	s.spec = &spec.Spec{Mailboxes: []spec.Mailbox{me}, Rules: spec.Rules{Set: &rules.Set{Rescue: rescue}}}
	add := func(name string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(rescue, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name  string
		first bool
		add   []string
		log   string // "" = nothing logged
	}{
		{"empty at start", true, nil, ""},
		{"one arrives", false, []string{"a"}, "quietmx: RESCUED: 1 messages wait in the Rescue folder of me@example.com (" + rescue + ")"},
		{"nothing new", false, nil, ""},
		{"two more", false, []string{"b", "c"}, "quietmx: RESCUED: 3 messages wait"},
		{"at the next start", true, nil, "quietmx: RESCUED: 3 messages wait"},
	}
	for _, st := range steps {
		for _, f := range st.add {
			add(f)
		}
		s.countRescued(st.first)
		got := out.Take()
		if st.log == "" && got != "" || !strings.Contains(got, st.log) {
			t.Errorf("%s: log %q, want %q", st.name, got, st.log)
		}
	}
}
