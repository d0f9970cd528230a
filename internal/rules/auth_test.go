package rules_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"quietmx/internal/authres"
	"quietmx/internal/rules"
)

// TestDMARCFail: the mapping is read, kept by the compiled form, and every
// mistake is an error at its line (a typo must not turn refuse into
// deliver silently).
func TestDMARCFail(t *testing.T) {
	src := "default: {type: maildir, value: /m/}\ndmarc_fail:\n  me: refuse\n  Boss@example.com: JUNK\n  default: deliver\n"
	set, fs := parse(t, src)
	if fs.HasErrors() {
		t.Fatal(fs)
	}
	want := map[string]authres.Disposition{"me": authres.Refuse, "boss@example.com": authres.Junk, "default": authres.Deliver}
	if !reflect.DeepEqual(set.DMARCFail, want) {
		t.Errorf("got %v, want %v", set.DMARCFail, want)
	}
	if !hasFinding(fs, rules.Warning, 4, `keys are matched in lowercase`) {
		t.Errorf("no lowercase warning: %v", fs)
	}
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rules.Compile(path, []byte(src)); err != nil {
		t.Fatal(err)
	}
	loaded, err := rules.Load(path)
	if err != nil || !loaded.Compiled {
		t.Fatalf("Load: compiled=%v err=%v", loaded.Compiled, err)
	}
	if !reflect.DeepEqual(loaded.Set.DMARCFail, want) {
		t.Errorf("compiled form: got %v, want %v", loaded.Set.DMARCFail, want)
	}

	for _, tc := range []struct{ name, src, want string }{
		{"unknown disposition", "dmarc_fail: {me: refuze}\n", `r.yaml:1:18: dmarc_fail."me": unknown disposition "refuze" (did you mean refuse?)`},
		{"not a mapping", "dmarc_fail: refuse\n", `r.yaml:1:13: dmarc_fail: want a mapping (address: deliver, junk or refuse), got "refuse"`},
		{"empty value", "dmarc_fail: {me: }\n", `dmarc_fail."me": want deliver, junk or refuse, got nothing (null)`},
		{"top-level typo", "dmarc_fial: {me: refuse}\n", `unknown key "dmarc_fial" (did you mean dmarc_fail?)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, fs := parse(t, tc.src)
			if !fs.HasErrors() || !strings.Contains(fs.Err().Error(), tc.want) {
				t.Errorf("got %v, want %s", fs, tc.want)
			}
		})
	}
}

func FuzzDMARCFail(f *testing.F) {
	for _, s := range []string{"dmarc_fail: {me: refuse}\n", "dmarc_fail: [x]\n", "dmarc_fail: {&a me: *a}\n", "dmarc_fail:\n  default: junk\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		set, fs := rules.Parse("r.yaml", []byte(src))
		if set == nil || fs.HasErrors() {
			return
		}
		for k, d := range set.DMARCFail {
			if d != authres.Deliver && d != authres.Junk && d != authres.Refuse {
				t.Fatalf("key %q: disposition %q accepted", k, d)
			}
		}
	})
}
