package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"quietmx/internal/delivery"
	"quietmx/internal/maillog"
)

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
		case "serve":
			return cmdServe(args[1:], stderr)
		}
	}
	return deliver(args, stdin, stderr)
}

func rulesPath(flagValue string) string {
	return delivery.RulesPath(flagValue, os.Getenv)
}

// deliver is delivery mode: package delivery decides everything; this
// only turns a panic into a Result, writes the log and returns the exit
// code (0 or 75, whatever happens).
func deliver(args []string, stdin io.Reader, stderr io.Writer) (code int) {
	// Go dies on SIGPIPE when writing to a closed stdout/stderr; Postfix
	// would count that as a failed delivery and retry, duplicating mail.
	signal.Ignore(syscall.SIGPIPE)
	start := time.Now()
	call := delivery.Call{Log: delivery.DefaultLog}
	var res delivery.Result
	var log *slog.Logger
	closeLog := func() {}
	// Registered first: a panic in flag parsing, log opening or delivery
	// defers too, and is logged.
	defer func() {
		if r := recover(); r != nil {
			res = call.Failed(fmt.Errorf("panic: %v", r))
		}
		if log == nil {
			log, closeLog = maillog.Open(delivery.DefaultLog, nil)
		}
		delivery.Log(log, res, time.Since(start))
		closeLog()
		code = delivery.ExitCode(res.Outcome)
	}()
	call = delivery.ParseCall(args, os.Getenv)
	var also io.Writer
	if call.Verbose {
		also = stderr
	}
	log, closeLog = maillog.Open(call.Log, also)
	res = call.Run(context.Background(), stdin)
	return // the deferred function logs res and sets code
}
