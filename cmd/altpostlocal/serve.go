package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// ServeBinary is the resident LMTP server, a binary of its own (see
// cmd/altpostlocal-serve) so that this one, run once per recipient by
// pipe(8), does not carry the server's packages.
const ServeBinary = "altpostlocal-serve"

// cmdServe is `altpostlocal serve`: it becomes altpostlocal-serve, found
// beside this binary, else on $PATH, with the command line it was given
// ("altpostlocal serve ..."): ps and pkill -f know it by that name.
func cmdServe(args []string, stderr io.Writer) int {
	bin := ServeBinary
	if self, err := os.Executable(); err == nil {
		bin = filepath.Join(filepath.Dir(self), ServeBinary)
	}
	if _, err := os.Stat(bin); err != nil {
		if p, perr := exec.LookPath(ServeBinary); perr == nil {
			bin = p
		}
	}
	err := syscall.Exec(bin, append([]string{os.Args[0], "serve"}, args...), os.Environ())
	fmt.Fprintf(stderr, "altpostlocal serve: %s: %v (it is installed beside altpostlocal)\n", bin, err)
	return 2
}
