package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"quietmx/internal/spec"
)

// specFlag adds --spec to a command's flags.
func specFlag(fs *flag.FlagSet, usage string) *string {
	if usage == "" {
		usage = "the appliance spec (default $" + spec.PathEnv + ", else " + spec.DefaultPath + ")"
	}
	return fs.String("spec", "", usage)
}

// loadSpec loads the spec spec.ResolvePath names (a file named by --spec
// or $QUIETMX_SPEC must exist). It prints every problem and every warning
// on stderr and returns nil on problems.
func loadSpec(flagValue string, stderr io.Writer) *spec.Spec {
	src, err := spec.ResolvePath(flagValue, nil)
	if err != nil {
		fmt.Fprintf(stderr, "quietmx: %v\n", err)
		return nil
	}
	if note := src.Note(); note != "" {
		fmt.Fprintf(stderr, "quietmx: %s\n", note)
	}
	s, err := spec.LoadFile(src.Path, nil)
	if err != nil {
		printErrors(stderr, err)
		return nil
	}
	for _, w := range s.Warnings {
		fmt.Fprintln(stderr, w)
	}
	return s
}

// printErrors prints a joined error one problem per line.
func printErrors(w io.Writer, err error) {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			fmt.Fprintln(w, e)
		}
		return
	}
	fmt.Fprintln(w, err)
}
