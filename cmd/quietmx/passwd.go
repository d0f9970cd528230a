package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"

	"quietmx/internal/passwd"
)

// quietmx passwd: read one password line on stdin, print its {ARGON2ID}
// hash in the PHC form Dovecot verifies (the parameters `doveadm pw -s
// ARGON2ID` uses), for a mailbox's password_hash. It is computed here with
// golang.org/x/crypto/argon2, so it works where Dovecot is not installed;
// the tests check that doveadm verifies it.
func cmdPasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("quietmx passwd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: quietmx passwd < FILE   (or: echo 'password' | quietmx passwd)")
		fmt.Fprintln(stderr, "Reads one line, prints its {ARGON2ID} hash for password_hash.")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	if f, ok := stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(stderr, "Password (shown as you type; pipe it in to avoid that): ")
		}
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadBytes('\n')
	if err != nil && err != io.EOF {
		fmt.Fprintf(stderr, "quietmx passwd: %v\n", err)
		return 1
	}
	pw, err := passwd.ReadSecret(line)
	if err != nil {
		fmt.Fprintln(stderr, "quietmx passwd: no password on stdin")
		return 1
	}
	hash, err := passwd.Hash(pw, nil)
	clear(pw)
	if err != nil {
		fmt.Fprintf(stderr, "quietmx passwd: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, hash)
	return 0
}
