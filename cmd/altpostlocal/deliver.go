package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"quietmx/internal/delivery"
	"quietmx/internal/dump"
	"quietmx/internal/maillog"
	"quietmx/internal/message"
)

// DefaultRules is where the rule file lives unless -c or
// $ALTPOSTLOCAL_CONFIG say otherwise.
const DefaultRules = "/etc/altpostlocal/altpostlocal.yaml"

// DefaultDeadline keeps a whole run well under Postfix's
// command_time_limit (1000s by default; the appliance sets 600s), because
// Postfix bounces a command that outlives its limit.
const DefaultDeadline = 300 * time.Second

// Main dispatches to an operator command or runs a delivery.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "check":
			return cmdCheck(args[1:], stdout, stderr)
		case "explain":
			return cmdExplain(args[1:], stdout, stderr)
		case "compile":
			return cmdCompile(args[1:], stdout, stderr)
		}
	}
	return deliver(args, stdin, stderr)
}

func rulesPath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if env := os.Getenv("ALTPOSTLOCAL_CONFIG"); env != "" {
		return env
	}
	return DefaultRules
}

// deliver is delivery mode. It returns only 0 or 75, whatever happens: bad
// flags, unreadable input, a panic.
func deliver(args []string, stdin io.Reader, stderr io.Writer) (code int) {
	// Go dies on SIGPIPE when writing to a closed stdout/stderr; Postfix
	// would count that as a failed delivery and retry, duplicating mail.
	signal.Ignore(syscall.SIGPIPE)
	start := time.Now()
	fs := flag.NewFlagSet("altpostlocal", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // nothing may reach Postfix's status pipe
	sender := fs.String("f", "", "envelope sender (empty: the null sender)")
	fs.StringVar(sender, "sender", "", "same as -f")
	jsonMode := fs.Bool("j", false, "redeliver JSON dumps (files, or stdin)")
	fs.BoolVar(jsonMode, "json", false, "same as -j")
	config := fs.String("c", "", "rule file")
	queueID := fs.String("q", "", "Postfix queue id, for the log")
	logDest := fs.String("log", "syslog", "log destination: syslog, stderr, unix:PATH or a file")
	verbose := fs.Bool("v", false, "also print the delivery line on stderr")
	deadline := fs.Duration("deadline", DefaultDeadline, "whole-run deadline; past it, kill children and defer")
	sendmail := fs.String("sendmail", "/usr/sbin/sendmail", "Postfix sendmail, for forward actions")
	fwdSender := fs.String("forward-sender", "", "envelope sender for forwards (default: forward_sender in the rules, else postmaster@<recipient domain>)")
	perr := fs.Parse(args)

	var also io.Writer
	if *verbose {
		also = stderr
	}
	log, closeLog := maillog.Open(*logDest, also)
	defer closeLog()
	defer func() {
		if r := recover(); r != nil {
			log.Error("delivery", "outcome", "deferred", "exit", delivery.ExTempFail, "error", fmt.Sprintf("panic: %v", r))
			code = delivery.ExTempFail
		}
	}()
	if perr != nil {
		log.Error("delivery", "outcome", "deferred", "exit", delivery.ExTempFail, "error", "bad command line: "+perr.Error(), "args", strings.Join(args, " "))
		return delivery.ExTempFail
	}
	cfg := delivery.Config{RulesPath: rulesPath(*config), Sendmail: *sendmail, ForwardSender: *fwdSender, Deadline: *deadline}

	var reqs []delivery.Request
	if *jsonMode {
		sources := fs.Args()
		if len(sources) == 0 {
			sources = []string{"-"}
		}
		for _, src := range sources {
			d, err := readDump(src, stdin)
			if err != nil {
				log.Error("delivery", "outcome", "deferred", "exit", delivery.ExTempFail, "error", fmt.Sprintf("read dump %s: %v", src, err))
				return delivery.ExTempFail
			}
			reqs = append(reqs, delivery.Request{Sender: d.Sender, Recipients: d.Recipients, Message: d.Mail, QueueID: *queueID})
		}
	} else {
		msg, err := message.Read(stdin)
		if err != nil {
			log.Error("delivery", "queue_id", *queueID, "outcome", "deferred", "exit", delivery.ExTempFail, "error", "read message: "+err.Error())
			return delivery.ExTempFail
		}
		if fs.NArg() == 0 {
			log.Error("delivery", "queue_id", *queueID, "outcome", "deferred", "exit", delivery.ExTempFail, "error", "no recipient on the command line (want -f SENDER -- RECIPIENT)")
			return delivery.ExTempFail
		}
		reqs = append(reqs, delivery.Request{Sender: *sender, Recipients: fs.Args(), QueueID: *queueID, Message: msg})
	}

	code = 0
	for _, req := range reqs {
		res := delivery.Run(context.Background(), cfg, req)
		logResult(log, res, time.Since(start))
		if c := delivery.ExitCode(res.Outcome); c != 0 {
			code = c
		}
	}
	return code
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

// logResult writes one line per recipient (the log's API: tests and
// operators rely on these keys).
func logResult(log *slog.Logger, res delivery.Result, took time.Duration) {
	for _, rec := range res.Records {
		level := slog.LevelInfo
		switch {
		case rec.Outcome == delivery.Deferred || strings.HasPrefix(rec.Detail, "LOST"):
			level = slog.LevelError
		case rec.Outcome == delivery.Rescued || res.RulesStale != "":
			level = slog.LevelWarn
		}
		var acts []string
		for _, a := range rec.Actions {
			acts = append(acts, a.Action+"="+a.Result)
		}
		attrs := []slog.Attr{
			slog.String("queue_id", rec.QueueID),
			slog.String("sender", rec.Sender),
			slog.String("recipient", rec.Recipient),
			slog.String("orig_recipient", rec.OrigRecipient),
			slog.String("key", rec.Key),
			slog.String("actions", strings.Join(acts, "; ")),
			slog.String("outcome", rec.Outcome.String()),
			slog.Int("exit", delivery.ExitCode(res.Outcome)),
			slog.Int64("duration_ms", took.Milliseconds()),
		}
		if res.RulesStale != "" {
			attrs = append(attrs, slog.String("rules_stale", "using the last valid rule file: "+res.RulesStale))
		}
		if rec.Error != "" {
			attrs = append(attrs, slog.String("error", rec.Error))
		}
		if rec.Detail != "" {
			attrs = append(attrs, slog.String("detail", rec.Detail))
		}
		log.LogAttrs(context.Background(), level, "delivery", attrs...)
	}
	if len(res.Records) == 0 && res.Err != nil {
		log.Error("delivery", "outcome", res.Outcome.String(), "exit", delivery.ExitCode(res.Outcome), "error", res.Err.Error())
	}
}
