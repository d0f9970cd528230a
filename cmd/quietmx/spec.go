package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"quietmx/internal/spec"
)

// DefaultSpec is where the image keeps the spec.
const DefaultSpec = "/etc/quietmx/quietmx.yaml"

// specFlag adds --spec to a command's flags.
func specFlag(fs *flag.FlagSet) *string {
	return fs.String("spec", "", "the appliance spec (default $QUIETMX_SPEC, else "+DefaultSpec+")")
}

// loadSpec loads the spec named by --spec or $QUIETMX_SPEC (which must
// exist), else the default file, else the environment alone. It prints
// every problem and every warning on stderr and returns nil on problems.
func loadSpec(flagValue string, stderr io.Writer) *spec.Spec {
	path := flagValue
	if path == "" {
		path = os.Getenv("QUIETMX_SPEC")
	}
	if path == "" {
		path = DefaultSpec
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stderr, "quietmx: no spec at %s: using the QUIETMX_* environment alone\n", path)
			path = ""
		}
	}
	s, err := spec.LoadFile(path, nil)
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
