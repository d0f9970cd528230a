package rules_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"quietmx/internal/rules"
)

func parse(t testing.TB, src string) (*rules.Set, rules.Findings) {
	t.Helper()
	return rules.Parse("r.yaml", []byte(src))
}

func mustParse(t testing.TB, src string) *rules.Set {
	t.Helper()
	set, fs := parse(t, src)
	if set == nil || fs.HasErrors() {
		t.Fatalf("parse: %v", fs)
	}
	return set
}

func hasFinding(fs rules.Findings, sev rules.Severity, line int, substr string) bool {
	for _, f := range fs {
		if f.Severity == sev && (line == 0 || f.Line == line) && strings.Contains(f.String(), substr) {
			return true
		}
	}
	return false
}

// The seed article's anchor example: shared filters through << merge keys.
func TestAnchorsAndMergeKeys(t *testing.T) {
	set := mustParse(t, `
anchors:
  - &filter
    type: pipe
    cmd: /usr/local/bin/mailfilter
    timeout: 30
  - &me {type: maildir, value: /var/mail/me/Maildir}
aliases:
  foo: {<<: *filter, args: [foo, 3]}
  baz: {<<: *filter, args: [baz, 2, foo@example.net], timeout: 5}
  john: *me
  jh: [*me]
`)
	foo := set.Aliases["foo"].Actions[0]
	if foo.Type != "pipe" || foo.Cmd != "/usr/local/bin/mailfilter" || !reflect.DeepEqual(foo.Args, []string{"foo", "3"}) || foo.Timeout != 30*time.Second {
		t.Errorf("foo = %+v", foo)
	}
	baz := set.Aliases["baz"].Actions[0]
	if baz.Timeout != 5*time.Second || !reflect.DeepEqual(baz.Args, []string{"baz", "2", "foo@example.net"}) {
		t.Errorf("explicit keys must override merged ones: %+v", baz)
	}
	if set.Aliases["john"].Actions[0].Value != "/var/mail/me/Maildir" || len(set.Aliases["jh"].Actions) != 1 {
		t.Errorf("alias of an anchor: %+v", set.Aliases["john"].Actions[0])
	}
	// With several merge sources the first wins: type pipe from *filter,
	// and value: from *me is then an unknown key for a pipe.
	set2, fs := parse(t, "a: &f {type: pipe, cmd: /f}\nb: &m {type: maildir, value: /m}\naliases:\n  both: {<<: [*f, *m]}\n")
	if both := set2.Aliases["both"].Actions[0]; both.Type != "pipe" || !hasFinding(fs, rules.Error, 0, `unknown key "value" for a pipe`) {
		t.Errorf("merge order: %+v %v", both, fs)
	}
}

func TestShapes(t *testing.T) {
	set, fs := parse(t, `
aliases:
  list: [{type: discard}, {type: nothing}]
  single: {type: discard}
  none: []
  nullval:
  falseval: false
  123: {type: discard}
  yes: {type: discard}
  "456": {type: discard}
  Upper: {type: discard}
`)
	if set == nil {
		t.Fatal(fs)
	}
	if n := len(set.Aliases["list"].Actions); n != 2 {
		t.Errorf("list: %d actions", n)
	}
	if n := len(set.Aliases["single"].Actions); n != 1 {
		t.Errorf("a mapping is a one-element list, got %d", n)
	}
	if e := set.Aliases["none"]; e == nil || len(e.Actions) != 0 {
		t.Errorf("[] means do nothing: %+v", e)
	}
	for _, k := range []string{"nullval", "falseval", "123", "yes", "true"} {
		if _, ok := set.Aliases[k]; ok {
			t.Errorf("key %q must count as absent", k)
		}
	}
	if _, ok := set.Aliases["456"]; !ok {
		t.Errorf("a quoted number is a string key")
	}
	for _, want := range []string{"null", "key 123 is not a string", "key yes is not a string", "uppercase"} {
		if !hasFinding(fs, rules.Warning, 0, want) {
			t.Errorf("missing warning %q in %v", want, fs)
		}
	}
	if fs.HasErrors() {
		t.Errorf("unexpected errors: %v", fs.Errors())
	}
}

func TestEveryKeyOptional(t *testing.T) {
	for _, src := range []string{"", "---\n", "default: {type: discard}\n", "aliases:\n", "rescue: /r\n"} {
		set, fs := parse(t, src)
		if set == nil || fs.HasErrors() {
			t.Errorf("%q: %v", src, fs)
		}
	}
}

func TestBooleansYAML11(t *testing.T) {
	set := mustParse(t, `
rescue: /var/mail/rescue
rescue_json: yes
die_quietly: On
aliases:
  j: {type: maildir, value: /m, junk: yes}
  n: {type: maildir, value: /m, junk: no}
`)
	if !set.RescueJSON || !set.DieQuietly || !set.Aliases["j"].Actions[0].Junk || set.Aliases["n"].Actions[0].Junk {
		t.Errorf("YAML 1.1 booleans: %+v", set)
	}
}

func TestExtensionsSpelling(t *testing.T) {
	set := mustParse(t, "extensions: \"\\\\+\"\n")
	if set.Extension == nil || set.Extension.Source != `\+` {
		t.Fatalf("extensions: not accepted: %+v", set.Extension)
	}
	set, fs := parse(t, "extension: \"-\"\nextensions: \"\\\\+\"\n")
	if set.Extension.Source != "-" || !hasFinding(fs, rules.Warning, 0, "extension wins") {
		t.Errorf("both set: %v %v", set.Extension.Source, fs)
	}
}

// Fatal errors: the file cannot route, Parse returns no Set.
func TestFatal(t *testing.T) {
	tests := []struct {
		name, src string
		line      int
		msg       string
	}{
		{"syntax", "aliases:\n  a: [\n", 3, "YAML syntax"},
		{"truncated", "aliases:\n  a: {type: maildir, value: /m\n", 2, "YAML syntax"},
		{"root list", "- a\n- b\n", 1, "must be a mapping"},
		{"aliases list", "aliases: [a, b]\n", 1, "aliases: want a mapping"},
		{"rematch list", "rematch: [a]\n", 1, "rematch: want a mapping"},
		{"empty extension", "extension: \"x*\"\n", 1, "can match the empty string"},
		{"empty alternative", "extension: \"(?:\\\\+|)\"\n", 1, "can match the empty string"},
		{"word boundary", "extension: \"\\\\b\"\n", 1, "can match the empty string"},
		{"lookbehind", "extension: \"(?<=a)b\"\n", 1, "lookaround"},
		{"backreference", "rematch:\n  \"(a)\\\\1\": x@y\n", 2, "backreference"},
		{"possessive", "extension: \"a++\"\n", 1, "possessive"},
		{"bad regexp", "extension: \"[\"\n", 1, "does not compile"},
		{"rematch target", "rematch:\n  a: [x]\n", 2, "replacement address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, fs := parse(t, tt.src)
			if set != nil {
				t.Fatalf("Parse(%q) returned a Set; want a fatal error", tt.src)
			}
			if !hasFinding(fs, rules.Error, tt.line, tt.msg) {
				t.Errorf("findings %v; want an error on line %d containing %q", fs, tt.line, tt.msg)
			}
		})
	}
}

// Action-level errors leave the Set usable; the action carries a Problem.
func TestActionProblems(t *testing.T) {
	tests := []struct {
		name, action string
		msg          string
	}{
		{"unknown type", "{type: maildri, value: /m}", `unknown action "maildri"`},
		{"nouser", "{type: nouser}", "nouser was removed"},
		{"typo in key", "{type: pipe, cmd: /bin/true, arg: [x]}", `unknown key "arg" for a pipe action (did you mean args?)`},
		{"bad timeout", "{type: pipe, cmd: /bin/true, timeout: soon}", `want a number of seconds`},
		{"negative timeout", "{type: pipe, cmd: /bin/true, timeout: -1}", `want a number of seconds`},
		{"missing cmd", "{type: pipe}", "missing cmd"},
		{"missing value", "{type: maildir}", "missing value"},
		{"relative maildir", "{type: maildir, value: Maildir}", "must be an absolute path"},
		{"relative dump", "{type: dump, value: dumps}", "must be an absolute path"},
		{"no type", "{value: /m}", "missing type"},
		{"scalar", "/var/mail/x", "want an action"},
		{"forward empty", "{type: forward, value: []}", "nothing to forward"},
		{"args not list", "{type: pipe, cmd: /bin/true, args: x}", "want a list of arguments"},
		{"onerror list", "{type: pipe, cmd: /bin/true, onerror: [{type: discard}]}", "want an action"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, fs := parse(t, "aliases:\n  a: "+tt.action+"\n  ok: {type: discard}\n")
			if set == nil {
				t.Fatalf("an action error must not make the file unusable: %v", fs)
			}
			if !hasFinding(fs, rules.Error, 2, tt.msg) {
				t.Errorf("findings %v; want an error on line 2 containing %q", fs, tt.msg)
			}
			a := set.Aliases["a"].Actions[0]
			for a.OnError != nil && a.Problem == "" {
				a = a.OnError
			}
			if a.Problem == "" {
				t.Errorf("action has no Problem: %+v", a)
			}
			if set.Aliases["ok"].Actions[0].Problem != "" {
				t.Errorf("a healthy action got a problem")
			}
		})
	}
}

func TestOnErrorChainCycle(t *testing.T) {
	set, fs := parse(t, "aliases:\n  a: &a {type: pipe, cmd: /bin/false, onerror: *a}\n")
	if set == nil {
		t.Fatalf("fatal: %v", fs)
	}
	if !hasFinding(fs, rules.Error, 0, "onerror chain cycles") {
		t.Errorf("findings %v; want an onerror cycle", fs)
	}
}

func TestOnErrorChain(t *testing.T) {
	set := mustParse(t, `
aliases:
  foo:
    type: pipe
    cmd: dangerfilter
    onerror:
      type: pipe
      cmd: saferfilter
      onerror:
        type: maildir
        value: /var/maildir/safezone
`)
	a := set.Aliases["foo"].Actions[0]
	if a.OnError == nil || a.OnError.OnError == nil || a.OnError.OnError.Value != "/var/maildir/safezone" {
		t.Fatalf("onerror chain: %+v", a)
	}
}

func TestAliasBombRefused(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 {type: discard}\n")
	prev := "a0"
	for i := 1; i <= 9; i++ {
		name := "a" + string(rune('0'+i))
		b.WriteString(name + ": &" + name + " {")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("<<: *" + prev)
		}
		b.WriteString("}\n")
		prev = name
	}
	// Merge keys are what a node walker expands: ten merges of ten merges...
	lol := "lol: &lol [" + strings.Repeat("*a9, ", 9) + "*a9]\n"
	src := "anchors:\n" + indent(b.String()+lol) + "aliases:\n  x: {<<: [" + strings.Repeat("*lol, ", 9) + "*lol], type: discard}\n"
	done := make(chan rules.Findings, 1)
	go func() { _, fs := parse(t, src); done <- fs }()
	select {
	case fs := <-done:
		if !hasFinding(fs, rules.Error, 0, "alias expansion exceeds") && !fs.HasErrors() {
			t.Errorf("alias bomb not refused: %v", fs)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("alias bomb: parse did not return")
	}
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n  ") + "\n"
}

func TestMergeBombRefused(t *testing.T) {
	var b strings.Builder
	b.WriteString("anchors:\n  - &m0 {type: discard, a: 1}\n")
	for i := 1; i <= 8; i++ {
		b.WriteString("  - &m" + string(rune('0'+i)) + " {<<: [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*m" + string(rune('0'+i-1)))
		}
		b.WriteString("]}\n")
	}
	b.WriteString("aliases:\n  x: *m8\n")
	_, fs := parse(t, b.String())
	if !hasFinding(fs, rules.Error, 0, "alias expansion exceeds") {
		t.Errorf("merge bomb (1e8 expansions) not refused: %v", fs)
	}
}

func TestCompiledFormRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.yaml")
	src := []byte(`
extension: "(?:uk|\\+)"
rematch: {"^x-": x@example.com}
aliases:
  a: [{type: pipe, cmd: /bin/f, args: [a, "${recipient}"], timeout: 2.5, onerror: {type: maildir, value: /m, junk: yes}}]
  b: {type: forward, value: [a@b, c@d]}
default: []
rescue: /r
rescue_json: yes
forward_sender: fwd@example.com
`)
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rules.Compile(path, src); err != nil {
		t.Fatal(err)
	}
	parsed := mustParse(t, string(src))
	loaded, err := rules.Load(path)
	if err != nil || !loaded.Compiled || loaded.Stale {
		t.Fatalf("Load: compiled=%v stale=%v err=%v", loaded.Compiled, loaded.Stale, err)
	}
	got := loaded.Set
	if got.Extension.Source != parsed.Extension.Source || got.Extension.Rindex("haruka") != 3 || !got.Rematch[0].Pattern.MatchString("x-1") {
		t.Errorf("patterns not restored")
	}
	for k, want := range parsed.Aliases {
		if e := got.Alias(k); !reflect.DeepEqual(e, want) {
			t.Errorf("compiled entry %q differs from the YAML:\n%+v\n%+v", k, e, want)
		}
	}
	if got.Alias("nosuchkey") != nil || got.RescueJSON != parsed.RescueJSON || got.ForwardSender != parsed.ForwardSender || got.Rescue != "/r" || len(got.Default.Actions) != 0 {
		t.Errorf("compiled form differs from the YAML: %+v", got)
	}
	// A changed rule file makes the compiled form stale: it must be ignored.
	if err := os.WriteFile(path, []byte("default: {type: discard}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err = rules.Load(path)
	if err != nil || loaded.Compiled || loaded.Set.Default.Actions[0].Type != "discard" {
		t.Errorf("stale compiled form used: compiled=%v err=%v", loaded.Compiled, err)
	}
	// A corrupt compiled form is ignored too.
	if err := os.WriteFile(rules.CompiledPath(path), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if loaded, err = rules.Load(path); err != nil || loaded.Compiled {
		t.Errorf("corrupt compiled form: compiled=%v err=%v", loaded.Compiled, err)
	}
}

func TestLoadFallsBackToLastValid(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.yaml")
	good := []byte("default: {type: maildir, value: /m/good}\n")
	if err := rules.Install(path, good); err != nil {
		t.Fatal(err)
	}
	// A half-saved file: truncated YAML.
	if err := os.WriteFile(path, good[:20], 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err := rules.Load(path)
	if err != nil {
		t.Fatalf("Load with a snapshot: %v", err)
	}
	if !loaded.Stale || loaded.Reason == "" || loaded.Set.Default.Actions[0].Value != "/m/good" {
		t.Errorf("want the last valid rules, stale with a reason: %+v", loaded)
	}
	// Missing live file: snapshot too.
	os.Remove(path)
	if loaded, err = rules.Load(path); err != nil || !loaded.Stale {
		t.Errorf("missing file: stale=%v err=%v", loaded.Stale, err)
	}
	// No snapshot: ErrRulesInvalid.
	os.Remove(rules.LastValidPath(path))
	if _, err = rules.Load(path); !errors.Is(err, rules.ErrRulesInvalid) {
		t.Errorf("no snapshot: err = %v, want ErrRulesInvalid", err)
	}
}

func TestInstallRefusesErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.yaml")
	if err := rules.Install(path, []byte("aliases: {a: {type: bogus}}\n")); err == nil {
		t.Fatal("Install accepted a file with errors")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused install wrote the live file")
	}
}

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yaml")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("aliases:\n  a: &a {type: pipe, cmd: x, onerror: *a}\n"))
	f.Add([]byte("extension: \"\\\\+\"\ndefault: []\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, fs := rules.Parse("f.yaml", data)
		for _, fd := range fs {
			if fd.Severity == rules.Error && fd.Line <= 0 {
				t.Fatalf("error without a position: %v", fd)
			}
		}
		if set == nil && !fs.HasErrors() {
			t.Fatalf("no Set and no error")
		}
	})
}

// A compiled form cut short anywhere (a crash while another tool wrote it
// without rename, a disk error) is refused, never half-used: Load falls back
// to parsing the YAML.
func TestTruncatedCompiledFormIgnored(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.yaml")
	src := []byte("rematch: {\"^x\": a@b}\naliases:\n  a: {type: maildir, value: /m/a}\n  b: {type: discard}\ndefault: {type: maildir, value: /m/d}\n")
	os.WriteFile(path, src, 0o644)
	if err := rules.Compile(path, src); err != nil {
		t.Fatal(err)
	}
	full, _ := os.ReadFile(rules.CompiledPath(path))
	for n := 0; n < len(full); n++ {
		os.WriteFile(rules.CompiledPath(path), full[:n], 0o644)
		loaded, err := rules.Load(path)
		if err != nil || loaded.Compiled {
			t.Fatalf("truncated at %d/%d: compiled=%v err=%v", n, len(full), loaded.Compiled, err)
		}
		if e := loaded.Set.Alias("a"); e == nil || e.Actions[0].Value != "/m/a" {
			t.Fatalf("truncated at %d: alias a = %+v", n, e)
		}
	}
}

// Booleans are exactly the unquoted YAML 1.1 words, in any case; anything
// else is an error, never a guess (a quoted "false" once read as true made
// die_quietly lose mail).
func TestBooleans(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  bool
		err   string // "" = accepted
	}{
		// The full word list is yamlconf's test; these show each key uses it.
		{"True", true, ""}, {"YES", true, ""}, {"on", true, ""}, {"Off", false, ""}, {"no", false, ""}, {"", false, ""},
		{`"false"`, false, `got "false" (a quoted string)`},
		{"0", false, "got 0 (a number)"},
		{"1", false, "got 1 (a number)"},
		{"y", false, `got "y"`},
		{"[true]", false, "got a list"},
	} {
		for _, key := range []string{"die_quietly", "rescue_json", "junk"} {
			t.Run(key+"="+tc.value, func(t *testing.T) {
				src := "rescue: /r\n" + key + ": " + tc.value + "\naliases:\n  a: {type: maildir, value: /m}\n"
				get := func(s *rules.Set) bool {
					switch key {
					case "die_quietly":
						return s.DieQuietly
					case "rescue_json":
						return s.RescueJSON
					}
					return s.Aliases["a"].Actions[0].Junk
				}
				if key == "junk" {
					src = "rescue: /r\naliases:\n  a: {type: maildir, value: /m, junk: " + tc.value + "}\n"
				}
				set, fs := parse(t, src)
				if set == nil {
					t.Fatalf("no set: %v", fs)
				}
				if tc.err == "" {
					if fs.HasErrors() || get(set) != tc.want {
						t.Errorf("%s: %v = %v, want %v (%v)", key, tc.value, get(set), tc.want, fs)
					}
					return
				}
				want := "want true or false (also yes/no, on/off, unquoted), " + tc.err
				line := 2
				if key == "junk" {
					line = 3
				}
				if !hasFinding(fs, rules.Error, line, want) {
					t.Errorf("findings %v; want an error on line %d: %q", fs, line, want)
				}
				if get(set) {
					t.Errorf("a refused boolean must not read as true")
				}
			})
		}
	}
}

// writeRules installs good as the last valid rules, then puts bad live.
func writeRules(t *testing.T, good, bad string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "r.yaml")
	if good != "" {
		if err := rules.Install(path, []byte(good)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// A file with any error is invalid at delivery, as check reports it: Load
// uses the last valid rules (stale, with the reason), else fails with
// ErrRulesInvalid so the agent defers. Never half-understood rules.
func TestLoadRefusesAnyError(t *testing.T) {
	const good = "default: {type: maildir, value: /m/good}\n"
	for _, tc := range []struct{ name, bad, reason string }{
		{"quoted die_quietly", "die_quietly: \"false\"\ndefault: {type: maildir, value: /m/new}\n",
			`r.yaml:1:14: die_quietly: want true or false (also yes/no, on/off, unquoted), got "false" (a quoted string)`},
		{"numeric die_quietly", "die_quietly: 0\ndefault: {type: discard}\n", "got 0 (a number)"},
		{"alias: for aliases:", "alias:\n  me: {type: maildir, value: /m/me}\ndefault: {type: discard}\n",
			`r.yaml:1:1: alias: unknown key "alias" (did you mean aliases?)`},
		{"action typo", "default: {type: maildri, value: /m/new}\n", `unknown action "maildri"`},
		{"flow mapping left open", "rescue: /r\nrescue_json: yes\ndie_quietly: no\ndefault: {type: discard\n",
			"r.yaml:4:10: YAML syntax: did not find expected ',' or '}'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeRules(t, good, tc.bad)
			loaded, err := rules.Load(path)
			if err != nil {
				t.Fatalf("Load with a snapshot: %v", err)
			}
			if !loaded.Stale || loaded.Set.Default.Actions[0].Value != "/m/good" || !strings.Contains(loaded.Reason, tc.reason) {
				t.Errorf("want the last valid rules, stale, reason containing %q; got stale=%v reason=%q", tc.reason, loaded.Stale, loaded.Reason)
			}
			if loaded.Set.DieQuietly {
				t.Errorf("die_quietly must not be true")
			}
			path = writeRules(t, "", tc.bad)
			if _, err := rules.Load(path); !errors.Is(err, rules.ErrRulesInvalid) || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("no snapshot: err = %v, want ErrRulesInvalid naming %q", err, tc.reason)
			}
			// Nor may a compiled form be made of it (delivery trusts one unparsed).
			if err := rules.Compile(path, []byte(tc.bad)); err == nil {
				t.Errorf("Compile accepted an invalid file")
			}
		})
	}
}

// Top-level keys: a near miss of a real key is an error with a did-you-mean;
// any other extra key (anchors:, x-...) is ignored, as in the original.
func TestTopLevelKeys(t *testing.T) {
	for _, tc := range []struct{ key, want string }{
		{"alias", "aliases"}, {"Aliases", "aliases"}, {"defualt", "default"}, {"rescu", "rescue"},
		{"die_quietely", "die_quietly"}, {"dieQuietly", "die_quietly"}, {"rescue-json", "rescue_json"},
		{"extention", "extension"}, {"rematches", "rematch"}, {"test", "tests"}, {"forward_senders", "forward_sender"},
	} {
		_, fs := parse(t, tc.key+": x\ndefault: {type: discard}\n")
		want := `r.yaml:1:1: ` + tc.key + `: unknown key "` + tc.key + `" (did you mean ` + tc.want + `?)`
		if !hasFinding(fs, rules.Error, 1, want) {
			t.Errorf("%s: findings %v; want %q", tc.key, fs, want)
		}
	}
	for _, key := range []string{"anchors", "x-foo", "templates", "_common", "123", "yes", "comment"} {
		if _, fs := parse(t, key+":\n  - &a {type: discard}\ndefault: *a\n"); len(fs) != 0 {
			t.Errorf("%s: must be accepted silently: %v", key, fs)
		}
	}
}

// A key defined twice is a warning naming both lines; the last one wins.
func TestDuplicateKeys(t *testing.T) {
	set, fs := parse(t, "rescue: /a\naliases:\n  a: {type: discard}\n  a: {type: nothing, type: maildir, value: /m}\nrescue: /b\n")
	if set == nil || fs.HasErrors() {
		t.Fatalf("duplicates must not be errors: %v", fs)
	}
	if set.Rescue != "/b" || set.Aliases["a"].Actions[0].Type != "maildir" {
		t.Errorf("the last one must win: rescue=%q a=%+v", set.Rescue, set.Aliases["a"].Actions[0])
	}
	for _, want := range []string{
		`r.yaml:5:1: warning: key "rescue" is defined more than once (first at line 1); the last one wins`,
		`r.yaml:4:3: warning: aliases: key "a" is defined more than once (first at line 3); the last one wins`,
		`r.yaml:4:22: warning: aliases."a": key "type" is defined more than once (first at line 4); the last one wins`,
	} {
		if !hasFinding(fs, rules.Warning, 0, want) {
			t.Errorf("findings %v; want %q", fs, want)
		}
	}
}

// A YAML syntax error names the line it is on: a flow mapping left open on
// line 4 is reported at line 4, with the column of its brace.
func TestSyntaxErrorPosition(t *testing.T) {
	_, fs := parse(t, "rescue: /r\naliases:\n  a: {type: discard}\n  b: {type: maildir, value: /m\n  c: {type: discard}\n")
	want := "r.yaml:4:6: YAML syntax: did not find expected ',' or '}'"
	if len(fs) != 1 || fs[0].String() != want {
		t.Errorf("findings %v; want exactly %q", fs, want)
	}
}
