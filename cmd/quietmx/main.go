// Command quietmx is the appliance's operator tool:
//
//	quietmx render  [--spec FILE] --out DIR [--live PATH] [--verify]   render every file into a fresh DIR
//	quietmx check   [--spec FILE] [--verify]                           validate the spec, its rules and their tests
//	quietmx explain [--spec FILE | -c RULES] [-f SENDER] [--json] ADDRESS...
//	quietmx passwd                                                     hash a password read on stdin
//	quietmx run     [--spec FILE]                                      the container's entry point
//	quietmx health                                                     the container's health check
//
// The spec is --spec, else $QUIETMX_SPEC, else /etc/quietmx/quietmx.yaml
// (spec.ResolvePath, the same for every command). A file named by --spec or
// QUIETMX_SPEC must exist; only the default may be absent, and then the
// QUIETMX_* environment alone configures the host. QUIETMX_* variables
// override the file (docs/spec.md).
//
// Exit codes: 0 fine, 1 the spec or the rendering has problems (every one
// is printed), 2 usage. Nothing is written before the whole spec is valid.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

func main() {
	os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// command is one subcommand: it gets its arguments and streams and returns
// the exit code.
type command struct {
	run   func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
	usage string
}

var commands = map[string]command{
	"render":  {cmdRender, "render every Postfix, Dovecot, agent and certbot file into a fresh directory"},
	"check":   {cmdCheck, "validate the spec, its rules and their routing tests"},
	"explain": {cmdExplain, "show how the rules route an address"},
	"passwd":  {cmdPasswd, "hash a password read on stdin for password_hash"},
	"run":     {cmdRun, "run the appliance (the container's entry point)"},
	"health":  {cmdHealth, "check that the running appliance is healthy"},
}

// order lists the commands for usage.
var order = []string{"run", "health", "render", "check", "explain", "passwd"}

// Main runs one subcommand and returns the exit code. A panic is reported
// as an internal error (exit 1), never as Go's exit 2, which means usage.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "quietmx: internal error: %v\n%s", r, debug.Stack())
			code = 1
		}
	}()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "quietmx: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	return c.run(args[1:], stdin, stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: quietmx COMMAND [flags]")
	fmt.Fprintln(w)
	for _, name := range order {
		fmt.Fprintf(w, "  %-8s %s\n", name, commands[name].usage)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "quietmx COMMAND -h shows a command's flags. The spec and its QUIETMX_* variables: docs/spec.md.")
}
