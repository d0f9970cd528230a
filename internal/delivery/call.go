package delivery

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"quietmx/internal/dump"
	"quietmx/internal/message"
)

// DefaultRules is where the rule file lives unless -c or
// $ALTPOSTLOCAL_CONFIG say otherwise.
const DefaultRules = "/etc/altpostlocal/altpostlocal.yaml"

// DefaultSocket is where the resident agent (altpostlocal serve) answers
// LMTP for Postfix's lmtp(8). Its directory decides who may connect.
const DefaultSocket = "/run/altpostlocal/lmtp"

// DefaultDeadline keeps a whole run well under Postfix's
// command_time_limit (1000s by default; the appliance sets 600s), because
// Postfix bounces a command that outlives its limit.
const DefaultDeadline = 300 * time.Second

// DefaultLog is where the log line goes unless -log says otherwise.
const DefaultLog = "syslog"

// RulesPath is the rule file for a -c flag value: the flag, else
// $ALTPOSTLOCAL_CONFIG, else DefaultRules.
func RulesPath(flagValue string, getenv func(string) string) string {
	if flagValue != "" {
		return flagValue
	}
	if env := getenv("ALTPOSTLOCAL_CONFIG"); env != "" {
		return env
	}
	return DefaultRules
}

// Call is one agent call as its command line describes it:
//
//	altpostlocal [-c RULES] [-q QUEUEID] -f SENDER -- RECIPIENT...   (message on stdin)
//	altpostlocal [-c RULES] -j [DUMP.json...]                         (redeliver dumps)
type Call struct {
	Config
	Sender  string
	QueueID string
	JSON    bool     // redeliver dumps
	Args    []string // the recipients; with JSON, the dump files (none: stdin)
	Log     string   // log destination (see maillog.Open)
	Verbose bool     // also write the log line on stderr
	Err     error    // the command line is bad: Run defers
}

// ParseCall reads the agent's command line. It never fails: a bad command
// line is kept in Call.Err, and Run turns it into a deferred Result, so
// that the log says why and Postfix retries instead of bouncing.
func ParseCall(args []string, getenv func(string) string) Call {
	c := Call{}
	fs := flag.NewFlagSet("altpostlocal", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // nothing may reach Postfix's status pipe
	fs.StringVar(&c.Sender, "f", "", "envelope sender (empty: the null sender)")
	fs.StringVar(&c.Sender, "sender", "", "same as -f")
	fs.BoolVar(&c.JSON, "j", false, "redeliver JSON dumps (files, or stdin)")
	fs.BoolVar(&c.JSON, "json", false, "same as -j")
	config := fs.String("c", "", "rule file")
	fs.StringVar(&c.QueueID, "q", "", "Postfix queue id, for the log")
	fs.StringVar(&c.Log, "log", DefaultLog, "log destination: syslog, stderr, unix:PATH or a file")
	fs.BoolVar(&c.Verbose, "v", false, "also print the delivery line on stderr")
	fs.DurationVar(&c.Deadline, "deadline", DefaultDeadline, "whole-run deadline; past it, kill children and defer")
	fs.StringVar(&c.Sendmail, "sendmail", "/usr/sbin/sendmail", "Postfix sendmail, for forward actions")
	fs.StringVar(&c.Hostname, "hostname", "", "the appliance's host name: its own Authentication-Results verdict is read (dmarc_fail: junk)")
	fs.StringVar(&c.ForwardSender, "forward-sender", "", "envelope sender for forwards (default: forward_sender in the rules, else postmaster@<recipient domain>)")
	if err := fs.Parse(args); err != nil {
		c.Err = fmt.Errorf("bad command line %q: %w", args, err)
	}
	c.RulesPath = RulesPath(*config, getenv)
	c.Args = fs.Args()
	return c
}

// Run reads the call's input (the message on stdin, or the dumps) and
// delivers it. Every failure, a bad command line and unreadable input
// included, is a Result: Deferred, with at least one Record saying why.
func (c Call) Run(ctx context.Context, stdin io.Reader) Result {
	if c.Err != nil {
		return c.Failed(c.Err)
	}
	var reqs []Request
	if c.JSON {
		sources := c.Args
		if len(sources) == 0 {
			sources = []string{"-"}
		}
		// Read every dump before delivering any: a retry after a bad one
		// must not deliver the good ones twice.
		for _, src := range sources {
			d, err := readDump(src, stdin)
			if err != nil {
				return c.Failed(fmt.Errorf("read dump %s: %w", src, err))
			}
			reqs = append(reqs, Request{Sender: d.Sender, Recipients: d.Recipients, QueueID: c.QueueID, Message: d.Mail})
		}
	} else {
		msg, err := message.Read(stdin)
		if err != nil {
			return c.Failed(fmt.Errorf("read message: %w", err))
		}
		reqs = append(reqs, Request{Sender: c.Sender, Recipients: c.Args, QueueID: c.QueueID, Message: msg})
	}
	var res Result
	for i, req := range reqs {
		r := Run(ctx, c.Config, req)
		// The exit code must cover the worst outcome of the dumps.
		if i == 0 || r.Outcome > res.Outcome {
			res.Outcome, res.Err = r.Outcome, r.Err
		}
		if res.RulesStale == "" {
			res.RulesStale = r.RulesStale
		}
		res.Records = append(res.Records, r.Records...)
	}
	return res
}

// Failed is the Result of a call that could not deliver at all (bad
// command line, unreadable input, a panic): Deferred, with one Record per
// recipient the command line named, or one without a recipient.
func (c Call) Failed(err error) Result {
	res := Result{Outcome: Deferred, Err: err}
	rec := Record{QueueID: c.QueueID, Sender: c.Sender, Outcome: Deferred, Error: err.Error()}
	if !c.JSON {
		for _, r := range c.Args {
			rec.OrigRecipient, rec.Recipient = r, r
			res.Records = append(res.Records, rec)
		}
	}
	if len(res.Records) == 0 {
		res.Records = append(res.Records, rec)
	}
	return res
}

func readDump(src string, stdin io.Reader) (dump.Dump, error) {
	var data []byte
	var err error
	if src == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(src)
	}
	if err != nil {
		return dump.Dump{}, err
	}
	return dump.Decode(data)
}
