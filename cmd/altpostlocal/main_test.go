package main

import (
	"os"
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
