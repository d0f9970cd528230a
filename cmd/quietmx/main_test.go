package main

import (
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"quietmx/internal/scripttest"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"quietmx": func() { os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs this test binary, re-executed as quietmx, over the
// scripts in testdata/script.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			// Never read the host's /etc/quietmx/quietmx.yaml.
			env.Setenv("QUIETMX_SPEC", env.WorkDir+"/no-spec-given.yaml")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"status": scripttest.Status("QUIETMX_", "PATH", "HOME", "QUIETMX_SPEC", "QUIETMX_HOSTNAME", "QUIETMX_DOMAINS", "QUIETMX_MAILBOX", "QUIETMX_PASSWORD_FILE", "QUIETMX_DOMAIN"),
		},
	})
}
