// Package action runs one delivery action: write to a Maildir, run a filter,
// re-inject through sendmail, write a dump. It returns an error and never
// decides what happens next: that is delivery's job (onerror, rescue, defer).
//
// SECURITY
// Commands run with exec (no shell), each argument expanded on its own, in
// their own process group, with their own pipes: a child never holds the
// agent's stdout/stderr, which Postfix reads as the delivery status.
package action

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"quietmx/internal/dump"
	"quietmx/internal/maildir"
	"quietmx/internal/message"
	"quietmx/internal/rules"
)

// Delivery is what an action needs to know about the message.
type Delivery struct {
	Sender     string   // envelope sender ("" = null sender)
	Recipient  string   // after rematch, before aliases: what ${recipient} means
	Recipients []string // every recipient of the call (for dumps)
	Message    []byte   // the message as received
	// Sendmail is the path of Postfix's sendmail, ForwardSender the local
	// envelope sender for forwards (so a far-side rejection returns to us).
	Sendmail      string
	ForwardSender string
}

// Result says what an action did, for the delivery log.
type Result struct {
	File   string // the file written (maildir, dump)
	Output string // a command's output (pipe, forward), at most outputLimit bytes
}

// waitDelay bounds how long we wait for a child's pipes once it has exited
// (a grandchild may hold them open) or once it was killed.
const waitDelay = 5 * time.Second

// Run performs a. It returns nil only when the action fully succeeded.
func Run(ctx context.Context, a *rules.Action, d *Delivery) (Result, error) {
	if a.Problem != "" {
		return Result{}, fmt.Errorf("invalid action: %s", a.Problem)
	}
	trace := message.TraceHeaders(d.Sender, d.Recipient, d.Message)
	switch a.Type {
	case rules.TypeMaildir:
		p, err := maildir.Deliver(a.Value, a.Junk, trace, d.Message)
		return Result{File: p}, err
	case rules.TypeDump:
		p, err := dump.Write(a.Value, dump.Dump{Sender: d.Sender, Recipients: d.Recipients, Recipient: d.Recipient, Mail: d.Message})
		return Result{File: p}, err
	case rules.TypeNothing, rules.TypeDiscard:
		return Result{}, nil
	case rules.TypePipe:
		out, err := command(ctx, a.Timeout, PipeCommand(a, d), trace, d.Message)
		return Result{Output: out}, err
	case rules.TypeForward:
		out, err := command(ctx, 0, ForwardCommand(a, d), trace, d.Message)
		return Result{Output: out}, err
	case rules.TypeAlias:
		return Result{}, errors.New("alias action reached delivery unexpanded")
	}
	return Result{}, fmt.Errorf("unknown action type %q", a.Type)
}

// ForwardSender is the envelope sender of a forward for recipient rcpt:
// the rule file's forward_sender, else the agent's -forward-sender, else
// postmaster@<rcpt's domain>. Always a local address, so a far-side
// rejection comes back to us (and is routed by our own rules), never to
// the original sender.
func ForwardSender(fromRules, fromFlag, rcpt string) string {
	switch {
	case fromRules != "":
		return fromRules
	case fromFlag != "":
		return fromFlag
	}
	if _, domain, ok := strings.Cut(rcpt, "@"); ok && domain != "" {
		return "postmaster@" + domain
	}
	return "postmaster"
}

// PipeCommand is the command line a pipe action runs for d: cmd, then each
// argument expanded on its own (see expand).
func PipeCommand(a *rules.Action, d *Delivery) []string {
	argv := make([]string, 0, 1+len(a.Args))
	argv = append(argv, a.Cmd)
	for _, s := range a.Args {
		argv = append(argv, expand(s, d))
	}
	return argv
}

// ForwardCommand is the command line a forward action runs for d:
// sendmail -i -f FORWARD_SENDER -- ADDR... The envelope sender is local
// (see ForwardSender), never the original sender.
func ForwardCommand(a *rules.Action, d *Delivery) []string {
	return append([]string{d.Sendmail, "-i", "-f", d.ForwardSender, "--"}, a.Addresses...)
}

// expand replaces an argument that is exactly ${sender} or ${recipient}.
// Substrings stay literal, as in the original.
func expand(arg string, d *Delivery) string {
	switch arg {
	case "${sender}":
		return d.Sender
	case "${recipient}":
		return d.Recipient
	}
	return arg
}

// outputLimit caps how much of a command's output is kept for the log.
const outputLimit = 2048

// capped keeps the buffer in a named field: embedding bytes.Buffer would
// promote its ReadFrom, which io.Copy (used by os/exec) prefers to Write,
// bypassing the cap.
type capped struct{ buf bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := outputLimit - c.buf.Len(); room > 0 {
		if len(p) > room {
			c.buf.Write(p[:room])
		} else {
			c.buf.Write(p)
		}
	}
	return len(p), nil
}

// command runs argv, the message on stdin, in its own process group. A
// timeout (0 = none) or the end of ctx kills the whole group.
func command(ctx context.Context, timeout time.Duration, argv []string, stdin ...[]byte) (string, error) {
	name, args := argv[0], argv[1:]
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var out capped
	cmd := exec.CommandContext(ctx, name, args...)
	readers := make([]io.Reader, len(stdin))
	for i, b := range stdin {
		readers[i] = bytes.NewReader(b)
	}
	cmd.Stdin = io.MultiReader(readers...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// Kill the group, not just the child: a filter's own children
		// must not outlive the timeout.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	if cmd.Process != nil {
		// Whatever happened, leave no stray members of the group behind.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	text := strings.TrimSpace(out.buf.String())
	switch {
	case err == nil, errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success():
		return text, nil
	case ctx.Err() != nil:
		return text, fmt.Errorf("%s: killed after timeout: %w", name, ctx.Err())
	}
	if text != "" {
		return text, fmt.Errorf("%s: %w: %s", name, err, firstLine(text))
	}
	return text, fmt.Errorf("%s: %w", name, err)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
