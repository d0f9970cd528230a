package main

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"quietmx/internal/atomicfile"
	"quietmx/internal/spec"
	"quietmx/internal/supervisor"
)

// cmdRun is the container's entry point (PID 1).
func cmdRun(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("quietmx run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	specPath := specFlag(fs, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	src, err := spec.ResolvePath(*specPath, nil)
	if err != nil {
		fmt.Fprintf(stderr, "quietmx: %v\n", err)
		return 1
	}
	if note := src.Note(); note != "" {
		fmt.Fprintf(stdout, "quietmx: %s\n", note)
	}
	if err := ensureGeneratedPassword(os.Getenv("QUIETMX_PASSWORD_FILE"), stdout); err != nil {
		fmt.Fprintf(stderr, "quietmx: %v\n", err)
		return 1
	}
	if err := supervisor.Run(context.Background(), supervisor.Options{SpecPath: src.Path, Out: stdout}); err != nil {
		fmt.Fprintf(stderr, "quietmx: %v\n", err)
		return 1
	}
	return 0
}

// ensureGeneratedPassword creates the one-mailbox shortcut's password file
// on first start when it is missing and lives on the state volume, and
// prints the password once, so `make up` gives a working login with no
// secret to prepare. A file elsewhere (a Docker secret) is the operator's.
func ensureGeneratedPassword(path string, out io.Writer) error {
	if path == "" || !strings.HasPrefix(filepath.Clean(path), spec.StateDir+"/") {
		return nil
	}
	if _, err := os.Stat(path); err == nil || !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var b [15]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	pw := strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := atomicfile.Write(path, []byte(pw+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(out, "quietmx: generated the mailbox password (shown once; kept in %s): %s\n", path, pw)
	return nil
}
