package rules_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"quietmx/internal/rules"
)

func TestRejectParses(t *testing.T) {
	src, err := os.ReadFile("testdata/reject.yaml")
	if err != nil {
		t.Fatal(err)
	}
	set := mustParse(t, string(src))
	if set.RejectMode != rules.RejectLog {
		t.Errorf("RejectMode = %q, want log", set.RejectMode)
	}
	tests := []struct {
		key, reply string
	}{
		{"old@example.com", "550 5.1.1 This address is no longer in use"},
		{"former", "550 5.1.1 This address is no longer in use"},
		{"spam@example.com", "550 5.1.1 User unknown"},
	}
	for _, tt := range tests {
		a := set.Aliases[tt.key].Rejection()
		if a == nil {
			t.Errorf("%s: Rejection() = nil", tt.key)
			continue
		}
		if got := a.RejectReply(); got != tt.reply {
			t.Errorf("%s: RejectReply() = %q, want %q", tt.key, got, tt.reply)
		}
	}
	if set.Default.Rejection() == nil {
		t.Errorf("default: Rejection() = nil")
	}
	if set.Aliases["me"].Rejection() != nil || set.Aliases["to-old"].Rejection() != nil {
		t.Errorf("a non-reject entry says it rejects")
	}
	if got := set.Aliases["spam@example.com"].Actions[0].Summary(); got != "reject (550 5.1.1 User unknown)" {
		t.Errorf("Summary() = %q", got)
	}
}

func TestRejectModeDefault(t *testing.T) {
	for _, src := range []string{"default: []\n", "reject_mode:\ndefault: []\n", "reject_mode: refuse\n"} {
		if got := mustParse(t, src).RejectMode; got != rules.RejectRefuse {
			t.Errorf("%q: RejectMode = %q, want refuse", src, got)
		}
	}
	// An empty file is valid and refuses too (the zero mode is never "").
	if set, _ := parse(t, ""); set.RejectMode != rules.RejectRefuse {
		t.Errorf("empty file: RejectMode = %q", set.RejectMode)
	}
}

// Every misplaced or malformed reject is an error, so the file is invalid
// (check exits 1; delivery keeps the last valid rules).
func TestRejectErrors(t *testing.T) {
	src, err := os.ReadFile("testdata/bad_reject.yaml")
	if err != nil {
		t.Fatal(err)
	}
	set, fs := parse(t, string(src))
	if set == nil {
		t.Fatalf("misplaced rejects are not fatal: check still tests routing: %v", fs)
	}
	want := []struct {
		line int
		msg  string
	}{
		{1, `reject_mode: want refuse or log, got "refus" (did you mean refuse?)`},
		{3, `aliases."mixed"[1]: reject must be the only action of its entry`},
		{4, `aliases."second"[1]: reject must be the only action of its entry`},
		{5, `aliases."first"[0]: reject must be the only action of its entry`},
		{6, `aliases."onerr".onerror: reject cannot be an onerror`},
		{7, `aliases."withonerr".onerror: a reject takes no onerror`},
		{8, `aliases."badtext".text: text must be printable ASCII on one line`},
		{9, `aliases."longtext".text: text is 202 characters long`},
		{10, `aliases."listtext".text: want a string`},
		{11, `unknown key "txt" for a reject action (did you mean text?)`},
	}
	for _, w := range want {
		if !hasFinding(fs, rules.Error, w.line, w.msg) {
			t.Errorf("missing error at line %d: %s\nfindings:\n%v", w.line, w.msg, fs)
		}
	}
	if n := len(fs.Errors()); n != len(want) {
		t.Errorf("%d errors, want %d:\n%v", n, len(want), fs)
	}
	for _, k := range []string{"mixed", "withonerr", "badtext"} {
		if set.Aliases[k].Rejection() != nil {
			t.Errorf("%s: an invalid reject entry must not reject", k)
		}
	}
	// And such a file is never installed nor compiled.
	dir := t.TempDir()
	if err := rules.Install(filepath.Join(dir, "r.yaml"), src); err == nil {
		t.Errorf("Install accepted misplaced rejects")
	}
}

func TestRejectModeValues(t *testing.T) {
	tests := []struct{ src, msg string }{
		{"reject_mode: LOG\n", `got "LOG" (did you mean log?)`},
		{"reject_mode: yes\n", `want refuse or log, got "yes"`},
		{"reject_mode: [log]\n", `want refuse or log, got a list`},
		{"reject_mode: drop\n", `want refuse or log, got "drop"`},
		{"rejectmode: log\n", `did you mean reject_mode?`},
	}
	for _, tt := range tests {
		_, fs := parse(t, tt.src)
		if !hasFinding(fs, rules.Error, 1, tt.msg) {
			t.Errorf("%q: want an error containing %q, got %v", tt.src, tt.msg, fs)
		}
	}
}

// The compiled form keeps reject_mode and reject texts.
func TestRejectCompiledRoundTrip(t *testing.T) {
	src, err := os.ReadFile("testdata/reject.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "r.yaml")
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rules.Compile(path, src); err != nil {
		t.Fatal(err)
	}
	loaded, err := rules.Load(path)
	if err != nil || !loaded.Compiled {
		t.Fatalf("Load: compiled=%v err=%v", loaded.Compiled, err)
	}
	parsed := mustParse(t, string(src))
	if loaded.Set.RejectMode != rules.RejectLog {
		t.Errorf("RejectMode = %q after the compiled form", loaded.Set.RejectMode)
	}
	for k, want := range parsed.Aliases {
		if got := loaded.Set.Alias(k); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: compiled %+v, parsed %+v", k, got, want)
		}
	}
	if got := loaded.Set.Default.Rejection(); got == nil || got.RejectReply() != "550 5.1.1 User unknown" {
		t.Errorf("default reject lost in the compiled form: %+v", loaded.Set.Default)
	}
}

// A resident daemon routes from many goroutines at once through one
// compiled Set (run with -race).
func TestCompiledConcurrentLookups(t *testing.T) {
	var b strings.Builder
	b.WriteString("aliases:\n")
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for _, k := range keys {
		b.WriteString("  " + k + ": {type: reject}\n")
	}
	path := filepath.Join(t.TempDir(), "r.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rules.Compile(path, []byte(b.String())); err != nil {
		t.Fatal(err)
	}
	loaded, err := rules.Load(path)
	if err != nil || !loaded.Compiled {
		t.Fatalf("Load: compiled=%v err=%v", loaded.Compiled, err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, k := range keys {
				if loaded.Set.Alias(k).Rejection() == nil {
					t.Errorf("%s: not a reject", k)
				}
			}
		}()
	}
	wg.Wait()
}
