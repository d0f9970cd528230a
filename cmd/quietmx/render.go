package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"quietmx/internal/render"
)

// quietmx render: the spec's files into a fresh directory, on any Linux
// machine: the tree is built next to DIR and renamed into place only when
// complete (and verified, with --verify), so a failure leaves nothing.
// File owners (dovecot/passwd's group) are the supervisor's to set when it
// installs a tree live (render.Swap); this command never touches the live
// tree.
func cmdRender(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("quietmx render", flag.ContinueOnError)
	fs.SetOutput(stderr)
	specPath := specFlag(fs, "")
	out := fs.String("out", "", "the directory to render into; it must not exist or be empty (required)")
	live := fs.String("live", render.DefaultLive, "the path the rendered files will be read through once live")
	previous := fs.String("previous", "", "a tree rendered before: keep its password hashes that still match, and list what changed (default: --live, when it exists)")
	verify := fs.Bool("verify", false, "also run postconf -n, postconf -M and doveconf -n on the result")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: quietmx render [--spec FILE] --out DIR [--live PATH] [--previous DIR] [--verify]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	s := loadSpec(*specPath, stderr)
	if s == nil {
		return 1
	}
	prev := *previous
	if prev == "" {
		if _, err := os.Stat(*live); err == nil {
			prev = *live
		}
	}
	// No Ownership: the tree renders on any machine. The supervisor sets
	// owners when it installs a tree into the live one.
	if err := render.RenderWith(s, *out, render.Options{Live: *live, Previous: prev, Verify: *verify}); err != nil {
		fmt.Fprintf(stderr, "quietmx render: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "rendered %s\n", *out)
	if prev != "" {
		changed, err := render.Diff(prev, *out)
		if err != nil {
			fmt.Fprintf(stderr, "quietmx render: compare with %s: %v\n", prev, err)
			return 1
		}
		if len(changed) == 0 {
			fmt.Fprintf(stdout, "unchanged since %s\n", prev)
		} else {
			pf, dc := render.Reloads(changed)
			fmt.Fprintf(stdout, "changed since %s: %s\n", prev, strings.Join(changed, ", "))
			fmt.Fprintf(stdout, "reload after swapping: postfix %v, dovecot %v\n", pf, dc)
		}
	}
	return 0
}
