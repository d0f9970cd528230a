package delivery_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"quietmx/internal/check"
	"quietmx/internal/delivery"
	"quietmx/internal/explain"
	"quietmx/internal/rules"
)

func TestFallbackFor(t *testing.T) {
	tests := []struct {
		name string
		set  rules.Set
		want delivery.Fallback
		text string
	}{
		{"nothing set", rules.Set{}, delivery.Fallback{Kind: delivery.FallbackDefer, Why: "no rescue directory configured"}, "defer: no rescue directory configured; Postfix keeps the message and retries (exit 75)"},
		{"die_quietly", rules.Set{DieQuietly: true}, delivery.Fallback{Kind: delivery.FallbackLose, Why: "no rescue directory configured"}, "LOST: no rescue directory configured and die_quietly is set (exit 0, logged at ERROR)"},
		{"rescue", rules.Set{Rescue: "/r"}, delivery.Fallback{Kind: delivery.FallbackRescue, Dir: "/r", IfRescueFails: delivery.Deferred}, "rescue as a raw message in /r (exit 0); if that fails: defer (exit 75)"},
		{"rescue_json, die_quietly", rules.Set{Rescue: "/r", RescueJSON: true, DieQuietly: true}, delivery.Fallback{Kind: delivery.FallbackRescue, Dir: "/r", JSON: true, IfRescueFails: delivery.Lost}, "rescue as a JSON dump in /r (exit 0); if that fails: LOST under die_quietly (exit 0, logged at ERROR)"},
		{"relative rescue", rules.Set{Rescue: "r"}, delivery.Fallback{Kind: delivery.FallbackDefer, Why: `rescue directory "r" is not absolute`}, `defer: rescue directory "r" is not absolute; Postfix keeps the message and retries (exit 75)`},
		{"relative rescue, die_quietly", rules.Set{Rescue: "r", DieQuietly: true}, delivery.Fallback{Kind: delivery.FallbackLose, Why: `rescue directory "r" is not absolute`}, `LOST: rescue directory "r" is not absolute and die_quietly is set (exit 0, logged at ERROR)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := delivery.FallbackFor(&tt.set)
			if got != tt.want {
				t.Errorf("FallbackFor = %+v, want %+v", got, tt.want)
			}
			if got.Describe() != tt.text {
				t.Errorf("Describe = %q, want %q", got.Describe(), tt.text)
			}
		})
	}
}

// A fallback case: one rule file, run for real in its own directory.
type fallbackCase struct {
	name     string
	path     string
	rescueOK string // the rescue directory when it exists and is writable
	addrs    []string
}

// TestFallbackAgreement is the property that delivery, explain and check
// never disagree on what happens after a failure: over the rule-file
// corpus of package rules (every path in it made unwritable) and generated
// combinations of rescue, rescue_json, die_quietly, default and failing
// actions, the outcome delivery really produces for a failing run is the
// one explain's text promises and the one check's warning names.
func TestFallbackAgreement(t *testing.T) {
	cases := corpusCases(t)
	cases = append(cases, generatedCases(t)...)
	if len(cases) < 50 {
		t.Fatalf("only %d cases", len(cases))
	}
	var mu sync.Mutex
	seen := map[delivery.Outcome]int{}
	t.Run("cases", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				for _, o := range agreement(t, c) {
					mu.Lock()
					seen[o]++
					mu.Unlock()
				}
			})
		}
	})
	for _, o := range []delivery.Outcome{delivery.Rescued, delivery.Deferred, delivery.Lost} {
		if seen[o] == 0 {
			t.Errorf("no case ended %v: the corpus does not cover it (seen %v)", o, seen)
		}
	}
}

// agreement runs every address of c for real and compares the outcome with
// explain and check. It returns the outcomes of the failing runs.
func agreement(t *testing.T, c fallbackCase) []delivery.Outcome {
	t.Helper()
	var seen []delivery.Outcome
	loaded, err := rules.Load(c.path)
	if err != nil {
		return nil // unusable rules defer before any fallback applies
	}
	fb := delivery.FallbackFor(loaded.Set)
	desc := fb.Describe()
	warnings := fallbackWarnings(check.Validate(loaded.Set))
	for _, addr := range c.addrs {
		cfg := delivery.Config{RulesPath: c.path, Sendmail: "/nonexistent/sendmail", Deadline: 30 * time.Second}
		res := delivery.Run(context.Background(), cfg, delivery.Request{Sender: "s@x", Recipients: []string{addr}, Message: []byte(msg)})
		if res.Outcome == delivery.Delivered || res.Outcome == delivery.Dropped {
			continue // nothing failed
		}
		seen = append(seen, res.Outcome)
		where := addr
		rec := res.Records[0]
		// explain: every "on failure" it prints ends in the fallback.
		rep := explain.Explain(loaded.Set, "s@x", []string{addr}, "", "")[0]
		texts := failureTexts(rep)
		if len(texts) == 0 {
			t.Fatalf("%s: delivery %v (%s), but explain shows no failure path", where, res.Outcome, rec.Error)
		}
		for _, text := range texts {
			if !strings.HasSuffix(text, desc) {
				t.Fatalf("%s: explain says %q, the fallback is %q", where, text, desc)
			}
		}
		if got := promised(desc, c.rescueOK != "" && fb.Dir == c.rescueOK); got != res.Outcome {
			t.Fatalf("%s: delivery %v (detail %q), explain promises %v: %q", where, res.Outcome, rec.Detail, got, desc)
		}
		if res.Outcome == delivery.Rescued && filepath.Dir(rec.RescueFile) != fb.Dir {
			t.Fatalf("%s: rescued to %q, explain names %s", where, rec.RescueFile, fb.Dir)
		}
		if res.Outcome != delivery.Rescued && rec.RescueFile != "" {
			t.Fatalf("%s: %v with a rescue file %q", where, res.Outcome, rec.RescueFile)
		}
		// check: its fallback warnings quote the same text, and one
		// is there whenever unknown mail or a failure loses mail.
		for _, w := range warnings {
			if !strings.Contains(w, desc) {
				t.Fatalf("%s: check warns %q, the fallback is %q", where, w, desc)
			}
		}
		if (loaded.Set.Default == nil || fb.Kind == delivery.FallbackLose) && len(warnings) == 0 {
			t.Fatalf("%s: check has no fallback warning (default %v, fallback %q)", where, loaded.Set.Default != nil, desc)
		}
	}
	return seen
}

// promised is the outcome a fallback text announces, given whether the
// rescue directory it names can be written.
func promised(desc string, rescueWorks bool) delivery.Outcome {
	if strings.HasPrefix(desc, "rescue as ") {
		if rescueWorks {
			return delivery.Rescued
		}
		_, desc, _ = strings.Cut(desc, "if that fails: ")
	}
	switch {
	case strings.HasPrefix(desc, "LOST"):
		return delivery.Lost
	case strings.HasPrefix(desc, "defer"):
		return delivery.Deferred
	}
	return -1
}

// failureTexts collects every "what happens after a failure" text of a report.
func failureTexts(r explain.Report) []string {
	var out []string
	if r.Error != "" {
		out = append(out, r.OnError)
	}
	var walk func([]explain.Step)
	walk = func(steps []explain.Step) {
		for _, s := range steps {
			out = append(out, s.OnFailure)
			walk(s.OnError)
		}
	}
	walk(r.Actions)
	return out
}

// fallbackWarnings are check's findings about what happens after a failure.
func fallbackWarnings(fs rules.Findings) []string {
	var out []string
	for _, f := range fs {
		if f.Severity == rules.Warning && (strings.Contains(f.Msg, "unknown address") || strings.Contains(f.Msg, "actions fail")) {
			out = append(out, f.Msg)
		}
	}
	return out
}

var absValue = regexp.MustCompile(`(:\s*"?)/`)

// corpusCases copies each rule file of package rules twice into a temp
// directory: with every absolute path moved under a regular file (so each
// Maildir, dump and rescue write fails, even as root, and no command
// exists), and the same with a writable rescue directory.
func corpusCases(t *testing.T) []fallbackCase {
	files, _ := filepath.Glob("../rules/testdata/*.yaml")
	if len(files) < 5 {
		t.Fatalf("rule-file corpus missing: %v", files)
	}
	var out []fallbackCase
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		blocker := filepath.Join(dir, "ro")
		if err := os.WriteFile(blocker, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		moved := absValue.ReplaceAllString(string(src), "${1}"+blocker+"/")
		addrs := []string{"unknown-zz9@nowhere.invalid", "nobody@example.org"}
		if set, _ := rules.Parse(f, src); set != nil {
			for _, tc := range set.Tests {
				addrs = append(addrs, tc.Address)
			}
			keys := make([]string, 0, len(set.Aliases))
			for k := range set.Aliases {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				k = strings.TrimSuffix(k, "=")
				switch {
				case strings.HasPrefix(k, "@"):
					addrs = append(addrs, "someone"+k)
				case !strings.Contains(k, "@"):
					addrs = append(addrs, k+"@example.com")
				default:
					addrs = append(addrs, strings.TrimSuffix(k, "."))
				}
			}
		}
		base := strings.TrimSuffix(filepath.Base(f), ".yaml")
		broken := filepath.Join(dir, "broken.yaml")
		writeFile(t, broken, moved)
		out = append(out, fallbackCase{name: base + " (every path unwritable)", path: broken, addrs: addrs})

		rescue := filepath.Join(dir, "rescue")
		if err := os.Mkdir(rescue, 0o700); err != nil {
			t.Fatal(err)
		}
		withRescue := regexp.MustCompile(`(?m)^rescue:.*$`).ReplaceAllString(moved, "rescue: "+rescue)
		if !strings.Contains(withRescue, "rescue: "+rescue) {
			withRescue = strings.TrimRight(withRescue, "\n") + "\nrescue: " + rescue + "\n"
		}
		good := filepath.Join(dir, "rescue.yaml")
		writeFile(t, good, withRescue)
		out = append(out, fallbackCase{name: base + " (writable rescue)", path: good, rescueOK: rescue, addrs: addrs})
	}
	return out
}

// generatedCases combines rescue (none, writable, missing), rescue_json,
// die_quietly and default (none, failing pipe, unwritable Maildir,
// discard) with aliases whose actions fail in different ways.
func generatedCases(t *testing.T) []fallbackCase {
	var out []fallbackCase
	for _, rescue := range []string{"none", "writable", "missing"} {
		for _, asJSON := range []bool{false, true} {
			for _, quiet := range []bool{false, true} {
				for _, def := range []string{"none", "pipe", "maildir", "discard"} {
					dir := t.TempDir()
					blocker := filepath.Join(dir, "file")
					writeFile(t, blocker, "")
					var b strings.Builder
					c := fallbackCase{name: fmt.Sprintf("rescue=%s json=%v die_quietly=%v default=%s", rescue, asJSON, quiet, def)}
					switch rescue {
					case "writable":
						c.rescueOK = filepath.Join(dir, "rescue")
						if err := os.Mkdir(c.rescueOK, 0o700); err != nil {
							t.Fatal(err)
						}
						fmt.Fprintf(&b, "rescue: %s\n", c.rescueOK)
					case "missing":
						fmt.Fprintf(&b, "rescue: %s/missing\n", dir)
					}
					fmt.Fprintf(&b, "rescue_json: %v\ndie_quietly: %v\n", asJSON, quiet)
					switch def {
					case "pipe":
						b.WriteString("default: {type: pipe, cmd: /bin/false}\n")
					case "maildir":
						fmt.Fprintf(&b, "default: {type: maildir, value: %s/box}\n", blocker)
					case "discard":
						b.WriteString("default: {type: discard}\n")
					}
					fmt.Fprintf(&b, `aliases:
  pipe@x: {type: pipe, cmd: /bin/false}
  chain@x: {type: pipe, cmd: /bin/false, onerror: {type: maildir, value: %[1]s/box}}
  second@x: [{type: maildir, value: %[2]s/ok}, {type: dump, value: %[1]s/dumps}]
  forward@x: {type: forward, value: far@elsewhere.example}
  loop@x: {type: alias, value: loop2@x}
  loop2@x: {type: alias, value: loop@x}
`, blocker, dir)
					c.path = filepath.Join(dir, "rules.yaml")
					writeFile(t, c.path, b.String())
					c.addrs = []string{"unknown@x"}
					if def == "none" {
						// The aliases fail the same whatever the default.
						c.addrs = append(c.addrs, "pipe@x", "chain@x", "second@x", "forward@x", "loop@x")
					}
					out = append(out, c)
				}
			}
		}
	}
	return out
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
