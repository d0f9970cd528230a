// Command altpostlocal-serve is `altpostlocal serve`: the delivery agent
// as a resident LMTP server for Postfix's lmtp(8) (package lmtp), and the
// SMTPD policy service that refuses reject addresses at RCPT time (package
// policy), both from one set of rules kept loaded:
//
//	altpostlocal-serve [-c RULES] [-socket PATH] [-policy-socket PATH] [-log DEST] [-deadline D] [-max-size N]
//
// -socket "" answers no LMTP (delivery: pipe, where only the policy
// service runs).
//
// It is a binary of its own so that the agent pipe(8) runs once per
// recipient stays small: the server's packages (net, go-smtp, crypto/tls)
// cost that one start-up time and memory on every exec. `altpostlocal
// serve` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"quietmx/internal/delivery"
	"quietmx/internal/lmtp"
	"quietmx/internal/maillog"
	"quietmx/internal/rules"
)

// PolicyServer serves the SMTP policy protocol on l with the daemon's
// rules until ctx ends, its decisions logged to log (policy.go sets it).
var PolicyServer func(ctx context.Context, l net.Listener, current func() *rules.Set, log *slog.Logger, logf func(string, ...any)) error

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "serve" {
		args = args[1:] // run as `altpostlocal serve ...` (see cmd/altpostlocal)
	}
	os.Exit(serve(args, os.Stderr))
}

// serve runs the server. It exits 0 after SIGTERM or SIGINT, once the
// messages in progress are answered (or the drain time is spent), and 2
// when it cannot start.
func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("altpostlocal serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("c", "", "rule file (default $ALTPOSTLOCAL_CONFIG, else "+delivery.DefaultRules+")")
	socket := fs.String("socket", delivery.DefaultSocket, "unix socket to answer LMTP on (\"\": none)")
	policy := fs.String("policy-socket", "", "unix socket to answer the SMTP policy protocol on (optional)")
	logDest := fs.String("log", delivery.DefaultLog, "delivery lines: syslog, stderr, unix:PATH or a file")
	deadline := fs.Duration("deadline", lmtp.DefaultDeadline, "per-message deadline; past it, recipients not answered get 451")
	maxSize := fs.Int64("max-size", 0, "largest message accepted, bytes (0: no limit of ours); larger ones get 451")
	drain := fs.Duration("drain", 20*time.Second, "at stop, how long messages in progress may still run")
	sendmail := fs.String("sendmail", "/usr/sbin/sendmail", "Postfix sendmail, for forward actions")
	fwd := fs.String("forward-sender", "", "envelope sender for forwards (default: forward_sender in the rules, else postmaster@<recipient domain>)")
	milterFlags := addMilterFlags(fs)
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: altpostlocal serve [-c RULES] [-socket PATH] [-policy-socket PATH] [-log DEST] [-deadline D] [-max-size N]")
		return 2
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "altpostlocal serve: "+format+"\n", a...) }
	log, closeLog := maillog.Open(*logDest, nil)
	defer closeLog()
	live := rules.NewLive(delivery.RulesPath(*config, os.Getenv), logf)
	auth := milterFlags.settings(live, logf)
	srv := lmtp.New(lmtp.Config{
		Delivery: delivery.Config{RulesPath: live.Path(), Sendmail: *sendmail, ForwardSender: *fwd, Rules: live, Hostname: auth.Hostname},
		Log:      log,
		Logf:     logf,
		MaxSize:  *maxSize,
		Deadline: *deadline,
	})
	// Signals are caught before the socket exists: whoever sees it answer
	// may stop us cleanly.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *socket == "" && *policy == "" {
		logf("nothing to serve: -socket and -policy-socket are both empty")
		return 2
	}
	served := make(chan error, 2)
	if *policy != "" {
		if err := startPolicy(ctx, *policy, live, log, logf, served); err != nil {
			logf("%v", err)
			return 2
		}
	}
	if err := milterFlags.start(ctx, auth, live, log, logf); err != nil {
		logf("%v", err)
		return 2
	}
	if *socket != "" {
		l, err := lmtp.Listen(*socket)
		if err != nil {
			logf("%v", err)
			return 2
		}
		go func() { served <- srv.Serve(l) }()
		logf("answering LMTP on %s (rules %s)", *socket, live.Path())
	}
	select {
	case err := <-served:
		// The supervisor restarts us: better than serving half.
		logf("stopped: %v", err)
		return 1
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logf("%v", err)
	}
	logf("stopped")
	return 0
}

// startPolicy serves the policy protocol beside LMTP, from the same
// rules; served receives why it stopped before ctx ended.
func startPolicy(ctx context.Context, path string, live *rules.Live, log *slog.Logger, logf func(string, ...any), served chan<- error) error {
	if PolicyServer == nil {
		logf("warning: -policy-socket %s ignored: this build has no policy service", path)
		return nil
	}
	l, err := lmtp.Listen(path)
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	go func() {
		if err := PolicyServer(ctx, l, live.Set, log, logf); err != nil && ctx.Err() == nil {
			served <- fmt.Errorf("policy service: %w", err)
		}
	}()
	logf("answering the SMTPD access policy on %s (rules %s)", path, live.Path())
	return nil
}
