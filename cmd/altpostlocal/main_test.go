package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"quietmx/internal/scripttest"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"altpostlocal": func() { os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs the real binary (this test binary, re-executed as
// altpostlocal) over the scripts in testdata/script.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"status": scripttest.Status("ALTPOSTLOCAL_", "PATH", "HOME", "ALTPOSTLOCAL_CONFIG"),
			"subst":  cmdSubst,
		},
	})
}

// subst FILE... replaces $WORK in files with the script's work directory
// (rule files need absolute paths).
func cmdSubst(ts *testscript.TestScript, neg bool, args []string) {
	for _, f := range args {
		data := strings.ReplaceAll(ts.ReadFile(f), "$WORK", ts.Getenv("WORK"))
		if err := os.WriteFile(ts.MkAbs(f), []byte(data), 0o644); err != nil {
			ts.Fatalf("subst: %v", err)
		}
	}
}

type panicReader struct{}

func (panicReader) Read([]byte) (int, error) { panic("reader exploded") }

// A panic outside delivery.Run (here: reading the message) still defers,
// with the one log line saying why.
func TestPanicDefers(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "agent.log")
	var stderr bytes.Buffer
	code := deliver([]string{"-log", logFile, "-q", "Q1", "-f", "s@x", "--", "r@x"}, panicReader{}, &stderr)
	if code != 75 {
		t.Errorf("exit %d, want 75", code)
	}
	data, _ := os.ReadFile(logFile)
	if !strings.Contains(string(data), `level=ERROR msg=delivery queue_id=Q1 sender=s@x recipient=r@x orig_recipient=r@x key="" actions="" outcome=deferred exit=75`) ||
		!strings.Contains(string(data), `error="panic: reader exploded"`) || strings.Count(string(data), "\n") != 1 {
		t.Errorf("log = %q", data)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr = %q", stderr.String())
	}
}

// Without altpostlocal-serve beside it or on $PATH, serve says so and
// exits 2.
func TestServeMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var stderr bytes.Buffer
	if code := Main([]string{"serve", "-socket", "/nonexistent"}, nil, nil, &stderr); code != 2 || !strings.Contains(stderr.String(), "altpostlocal-serve") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}
