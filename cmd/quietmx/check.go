package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"quietmx/internal/render"
)

// quietmx check: validate the spec, its rules (with package check, as the
// agent's check does, routing tests included) and its secret files,
// without writing anything. --verify also renders into a temporary
// directory and runs the real postconf and doveconf on it.
func cmdCheck(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("quietmx check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	specPath := specFlag(fs, "")
	verify := fs.Bool("verify", false, "also render into a temporary directory and run postconf -n, postconf -M and doveconf -n on it")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: quietmx check [--spec FILE] [--verify]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	s := loadSpec(*specPath, stderr)
	if s == nil {
		return 1
	}
	if *verify {
		tmp, err := os.MkdirTemp("", "quietmx-check-")
		if err != nil {
			fmt.Fprintf(stderr, "quietmx check: %v\n", err)
			return 1
		}
		defer os.RemoveAll(tmp)
		out := filepath.Join(tmp, "tree")
		if err := render.RenderWith(s, out, render.Options{Verify: true}); err != nil {
			fmt.Fprintf(stderr, "quietmx check: %v\n", err)
			return 1
		}
	}
	name := s.File
	if name == "" {
		name = "the environment"
	}
	rulesFrom := s.Rules.Origin
	if s.Rules.Generated {
		rulesFrom = "generated (every address to " + s.Mailboxes[0].Login + ")"
	}
	fmt.Fprintf(stdout, "%s: OK: %s for %d domain(s), %d mailbox(es), tls %s, rules %s (%d aliases, %d routing tests passed), %d warning(s)\n",
		name, s.Hostname, len(s.Domains), len(s.Mailboxes), s.TLS.Mode, rulesFrom, len(s.Rules.Set.Aliases), len(s.Rules.Set.Tests), len(s.Warnings))
	return 0
}
