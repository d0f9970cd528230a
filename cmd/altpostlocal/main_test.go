package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
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
			"status": cmdStatus,
			"subst":  cmdSubst,
		},
	})
}

// status N [<FILE] PROGRAM ARGS... runs PROGRAM and fails unless it exits
// with exactly N: `! exec` only means non-zero, and 1 against 75 is a bounce
// against a retry.
func cmdStatus(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: status N [<FILE] program args...")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("status: %v", err)
	}
	args = args[1:]
	var stdin []byte
	if strings.HasPrefix(args[0], "<") {
		stdin = []byte(ts.ReadFile(strings.TrimPrefix(args[0], "<")))
		args = args[1:]
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		path = ts.MkAbs(args[0])
	}
	cmd := exec.Command(path, args[1:]...)
	cmd.Dir = ts.Getenv("WORK")
	cmd.Env = os.Environ()
	for _, kv := range []string{"PATH", "ALTPOSTLOCAL_CONFIG", "HOME"} {
		cmd.Env = append(cmd.Env, kv+"="+ts.Getenv(kv))
	}
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("status: %v", err)
	}
	_, _ = ts.Stdout().Write(out.Bytes())
	_, _ = ts.Stderr().Write(errb.Bytes())
	if got != want {
		ts.Fatalf("%s exited %d, want %d\nstdout: %s\nstderr: %s", args[0], got, want, out.String(), errb.String())
	}
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
