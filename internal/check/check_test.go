package check_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"quietmx/internal/check"
	"quietmx/internal/explain"
	"quietmx/internal/rules"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// corpus is the rule-file corpus that package rules owns; check's goldens
// for it live in testdata/NAME.check.
const corpus = "../rules/testdata"

// TestCheckGolden runs check on every rule file in the corpus and compares
// the findings, with their exact lines, to testdata/NAME.check.
func TestCheckGolden(t *testing.T) {
	files, _ := filepath.Glob(corpus + "/*.yaml")
	if len(files) < 5 {
		t.Fatalf("corpus missing: %v", files)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, fs := check.File(f)
			var b bytes.Buffer
			for _, fd := range fs {
				b.WriteString(fd.String() + "\n")
			}
			golden(t, filepath.Join("testdata", strings.TrimSuffix(filepath.Base(f), ".yaml")+".check"), b.Bytes())
			bad := strings.HasPrefix(filepath.Base(f), "bad_") || filepath.Base(f) == "bomb.yaml"
			if bad != fs.HasErrors() {
				t.Errorf("HasErrors = %v for %s", fs.HasErrors(), f)
			}
		})
	}
}

func TestExplainGolden(t *testing.T) {
	loaded, err := rules.Load(corpus + "/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	addrs := []string{"John+Shop@Example.com", "abuse@any.example", "filtered+x@example.net", "bounce-42@lists.example.com", "team@example.com", "spamtrap@x.example"}
	reports := explain.Explain(loaded.Set, "sender@example.org", addrs, "/usr/sbin/sendmail", "postmaster@example.com")
	var text, js bytes.Buffer
	if err := explain.Text(&text, reports); err != nil {
		t.Fatal(err)
	}
	if err := explain.JSON(&js, reports); err != nil {
		t.Fatal(err)
	}
	golden(t, "testdata/good.explain", text.Bytes())
	golden(t, "testdata/good.explain.json", js.Bytes())
}

func TestInstall(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "altpostlocal.yaml")
	good, _ := os.ReadFile(corpus + "/good.yaml")
	if _, err := check.Install(live, good, "new.yaml"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{live, rules.LastValidPath(live), rules.CompiledPath(live)} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("install did not write %s", p)
		}
	}
	bad, _ := os.ReadFile(corpus + "/bad_loops.yaml")
	fs, err := check.Install(live, bad, "new.yaml")
	if err == nil || !fs.HasErrors() {
		t.Fatal("install accepted a file with errors")
	}
	if got, _ := os.ReadFile(live); !bytes.Equal(got, good) {
		t.Errorf("a refused install changed the live file")
	}
}

// tests: entries can assert a refusal at RCPT time.
func TestRoutingTestsReject(t *testing.T) {
	src := `aliases:
  old@example.com: {type: reject, text: gone}
  me: {type: maildir, value: /m/me}
default: {type: maildir, value: /m/catchall}
tests:
  - {address: old@example.com, expect: reject}
  - {address: old@example.com, expect: "550 5.1.1 gone"}
  - {address: me@example.com, expect: reject}
  - {address: old@example.com, expect: me}
`
	set, fs := rules.Parse("r.yaml", []byte(src))
	if set == nil || fs.HasErrors() {
		t.Fatalf("Parse: %v", fs)
	}
	got := check.RunTests(set)
	if len(got) != 2 {
		t.Fatalf("RunTests = %v, want the two wrong expectations (tests[2], tests[3])", got)
	}
	if got[0].Path != "tests[2]" || got[1].Path != "tests[3]" || !strings.Contains(got[1].Msg, "refused at RCPT (550 5.1.1 gone)") {
		t.Errorf("RunTests = %v", got)
	}
}
