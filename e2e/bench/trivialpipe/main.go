// Command trivialpipe is the trivial-pipe baseline of the throughput
// benchmark (e2e/bench/throughput, variant c): a stand-in for the delivery
// agent, bind-mounted over /usr/local/bin/altpostlocal so that Postfix runs
// it through the very same pipe(8) service (same argv, same user, one
// process per recipient). It is the ceiling of any pipe(8) design: the least
// a process that delivers durably can do.
//
// It ignores its arguments (the agent's -c/-deadline/-q/-f/-- RECIPIENT),
// reads the whole message from stdin and writes it into one fixed Maildir
// with the same durable sequence as package maildir and
// internal/maildir/testdata/floor: create a unique file in tmp/, write,
// fsync, link() into new/, unlink the tmp name, fsync new/. No rules, no
// trace headers, no log line. It exits 0 once the message is durable, else
// 75 (Postfix defers), never anything that bounces.
//
// internal/maildir/testdata/floor does the same write but takes the Maildir
// as its only argument and refuses any other argv (exit 75), so it cannot
// stand behind the agent's pipe(8) command line as it is.
//
// With -noop as its first argument (never the case under pipe(8): the
// agent's argv starts with -c) it only reads stdin and exits 0: the cost of
// starting a Go process at all, for e2e/bench/diag.sh.
//
// The Maildir is fixed at build time (pipe(8) resets the environment):
//
//	CGO_ENABLED=0 go build -ldflags "-X main.maildir=/var/mail/vmail/bench.example/me/Maildir" \
//	    -o trivialpipe ./e2e/bench/trivialpipe
package main

import (
	"io"
	"os"
	"strconv"
	"time"
)

// maildir is where every message goes; set with -ldflags -X.
var maildir = "/var/mail/vmail/bench.example/me/Maildir"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-noop" {
		if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
			os.Exit(75)
		}
		return
	}
	if err := deliver(maildir, os.Stdin); err != nil {
		os.Stderr.WriteString("trivialpipe: " + err.Error() + "\n")
		os.Exit(75)
	}
}

func deliver(dir string, stdin io.Reader) error {
	// Read everything first, as the agent must.
	msg, err := io.ReadAll(stdin)
	if err != nil {
		return err
	}
	now := time.Now()
	host, _ := os.Hostname()
	name := strconv.FormatInt(now.Unix(), 10) + ".M" + strconv.Itoa(now.Nanosecond()/1000) +
		"P" + strconv.Itoa(os.Getpid()) + "." + host
	tmp, final := dir+"/tmp/"+name, dir+"/new/"+name

	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if os.IsNotExist(err) {
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
