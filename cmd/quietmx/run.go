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
	"time"

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
	defaultPasswordFile(os.Getenv, os.Setenv)
	if err := ensureGeneratedPassword(os.Getenv("QUIETMX_PASSWORD_FILE"), spec.StateDir, stdout); err != nil {
		fmt.Fprintf(stderr, "quietmx: %v\n", err)
		return 1
	}
	grace, err := stopGrace(os.Getenv("QUIETMX_STOP_GRACE"))
	if err != nil {
		fmt.Fprintf(stderr, "quietmx: %v\n", err)
		return 1
	}
	if err := supervisor.Run(context.Background(), supervisor.Options{SpecPath: src.Path, Out: stdout, StopGrace: grace}); err != nil {
		fmt.Fprintf(stderr, "quietmx: %v\n", err)
		return 1
	}
	return 0
}

// defaultPasswordFile gives the one-mailbox shortcut (QUIETMX_MAILBOX)
// without a password the generated password file compose.yaml names, so
// `docker run` with QUIETMX_HOSTNAME, QUIETMX_DOMAINS and QUIETMX_MAILBOX
// starts exactly as `docker compose up` does.
func defaultPasswordFile(getenv func(string) string, setenv func(string, string) error) {
	if getenv("QUIETMX_MAILBOX") != "" && getenv("QUIETMX_PASSWORD_FILE") == "" && getenv("QUIETMX_PASSWORD_HASH") == "" {
		_ = setenv("QUIETMX_PASSWORD_FILE", spec.GeneratedPasswordFile)
	}
}

// stopGrace reads QUIETMX_STOP_GRACE: how long a stop may take in all
// (set it a little under the container's stop timeout); "" = the default.
func stopGrace(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("QUIETMX_STOP_GRACE: want a duration of at least 1s such as 55s, got %q", v)
	}
	return d, nil
}

// ensureGeneratedPassword creates the one-mailbox shortcut's password file
// on first start when it is missing and lives on the state volume, so
// `make up` gives a working login with no secret to prepare. The log says
// where it is and how to read it, never the password: container logs are
// often shipped to log services. A file elsewhere (a Docker secret) is
// the operator's.
func ensureGeneratedPassword(path, stateDir string, out io.Writer) error {
	if path == "" || !strings.HasPrefix(filepath.Clean(path), stateDir+"/") {
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
	clear(b[:])
	fmt.Fprintf(out, "quietmx: generated the mailbox password into %s; read it with: docker exec <container> cat %s\n", path, path)
	return nil
}
