// Package scripttest holds the testscript commands the CLI tests of both
// binaries share. It is imported by tests only.
package scripttest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"
)

// Status returns the script command
//
//	status N [<FILE] PROGRAM ARGS...
//
// which runs PROGRAM and fails unless it exits with exactly N: `! exec`
// only means non-zero, and 1 against 75 is a bounce against a retry. The
// program sees the host environment without variables starting with
// dropPrefix, plus the script's values of pass. Its stdout and stderr
// become the script's.
func Status(dropPrefix string, pass ...string) func(ts *testscript.TestScript, neg bool, args []string) {
	return func(ts *testscript.TestScript, neg bool, args []string) {
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
			if !strings.HasPrefix(kv, dropPrefix) {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		for _, k := range pass {
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
}
