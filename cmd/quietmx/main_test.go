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
			"status": cmdStatus,
		},
	})
}

// status N [<FILE] PROGRAM ARGS... runs PROGRAM and fails unless it exits
// with exactly N (`! exec` only means non-zero; 1 and 2 mean different
// things here). Its stdout and stderr become the script's.
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
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "QUIETMX_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for _, k := range []string{"PATH", "HOME", "QUIETMX_SPEC", "QUIETMX_HOSTNAME", "QUIETMX_DOMAINS", "QUIETMX_MAILBOX", "QUIETMX_PASSWORD_FILE", "QUIETMX_DOMAIN"} {
		if v := ts.Getenv(k); v != "" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
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
