// Command floor is the baseline the delivery agent is measured against (see
// docs/performance.md): the least a correct Maildir delivery can cost when
// it runs as a process of its own, as the agent does under Postfix's
// pipe(8).
//
//	floor MAILDIR <MESSAGE      the agent benchmark (cmd/altpostlocal)
//	floor -c ... -- RCPT <MSG   bind-mounted over the agent: the trivial-pipe
//	                            baseline of e2e/bench/throughput, delivering
//	                            to the Maildir fixed at build time
//	                            (-ldflags "-X main.maildir=DIR"), since
//	                            pipe(8) passes no environment
//	floor -noop <MESSAGE        only read stdin: the cost of a Go process
//	                            (e2e/bench/diag.sh)
//
// It reads the whole message from stdin, then does the bare durable write
// that package maildir does: create a uniquely named file in MAILDIR/tmp,
// write, fsync, link it into MAILDIR/new, unlink the tmp name, fsync
// MAILDIR/new. No rules, no trace headers, no log, no os.Root: anything the
// agent costs beyond this is the agent's own overhead.
//
// It exits 0 once the message is durable in new/, else 75, like the agent.
// It lives in testdata so that `go build ./...` and `go vet ./...` leave it
// alone; build it by path, with CGO_ENABLED=0 so it is static like the agent:
//
//	CGO_ENABLED=0 go build -o floor ./internal/maildir/testdata/floor
package main

import (
	"io"
	"os"
	"strconv"
	"time"
)

// maildir is where the agent's argv form delivers; set with -ldflags -X.
var maildir = "/var/mail/vmail/bench.example/me/Maildir"

func main() {
	dir := maildir
	switch {
	case len(os.Args) < 2:
		os.Stderr.WriteString("usage: floor MAILDIR <MESSAGE\n")
		os.Exit(75)
	case os.Args[1] == "-noop":
		if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
			os.Exit(75)
		}
		return
	case len(os.Args) == 2 && os.Args[1][0] != '-':
		dir = os.Args[1]
	}
	if err := deliver(dir, os.Stdin); err != nil {
		os.Stderr.WriteString("floor: " + err.Error() + "\n")
		os.Exit(75)
	}
}

func deliver(dir string, stdin io.Reader) error {
	// Read everything first, as the agent must (Postfix counts exit 0 as
	// delivered whether or not stdin was read).
	msg, err := io.ReadAll(stdin)
	if err != nil {
		return err
	}
	// Unique enough for one process at a time: seconds, microseconds, pid.
	now := time.Now()
	name := strconv.FormatInt(now.Unix(), 10) + ".M" + strconv.Itoa(now.Nanosecond()/1000) +
		"P" + strconv.Itoa(os.Getpid()) + ".floor"
	tmp, final := dir+"/tmp/"+name, dir+"/new/"+name

	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if os.IsNotExist(err) {
		// Only the first delivery into a fresh Maildir pays for this.
		for _, sub := range []string{"tmp", "new", "cur"} {
			if err := os.MkdirAll(dir+"/"+sub, 0o700); err != nil {
				return err
			}
		}
		f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(msg); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	// link() never replaces an existing file, unlike rename().
	if err := os.Link(tmp, final); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Remove(tmp); err != nil {
		return err
	}
	d, err := os.Open(dir + "/new")
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
