// Package delivery runs one agent call: load the rules, route each
// recipient, run its actions, and when anything fails, rescue the message or
// defer it. Every run ends in exactly one Outcome, and ExitCode maps it to
// the only two codes Postfix may see: 0 and 75 (EX_TEMPFAIL).
//
// DIAGNOSTICS
// One log record per recipient (see Record), written by the caller.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"quietmx/internal/action"
	"quietmx/internal/dump"
	"quietmx/internal/maildir"
	"quietmx/internal/message"
	"quietmx/internal/route"
	"quietmx/internal/rules"
)

// Outcome is how a call ended.
type Outcome int

const (
	Delivered Outcome = iota // every action of every recipient succeeded
	Dropped                  // dropped on purpose (nothing/discard/[]) or lost under die_quietly
	Rescued                  // saved in the rescue directory after an error
	Deferred                 // Postfix keeps the message and retries
)

func (o Outcome) String() string {
	return [...]string{"delivered", "dropped", "rescued", "deferred"}[o]
}

// ExTempFail is sysexits EX_TEMPFAIL: Postfix defers and retries.
const ExTempFail = 75

// ExitCode is the one place an Outcome becomes an exit code.
func ExitCode(o Outcome) int {
	if o == Deferred {
		return ExTempFail
	}
	return 0
}

// ErrLoop means the message already carries Delivered-To for the recipient.
var ErrLoop = errors.New("mail loop: message already has Delivered-To for this recipient")

// Request is one call of the agent.
type Request struct {
	Sender     string
	Recipients []string
	QueueID    string
	Message    []byte
}

// Config holds everything a run needs besides the message.
type Config struct {
	RulesPath     string
	Sendmail      string        // path of sendmail for forward actions
	ForwardSender string        // overrides the rule file's forward_sender
	Deadline      time.Duration // whole-run limit, under Postfix's command_time_limit
}

// ActionLog is one action and what became of it.
type ActionLog struct {
	Action string `json:"action"` // e.g. maildir:/var/mail/a/Maildir
	Result string `json:"result"` // ok, failed: ..., skipped
}

// Record is the log line for one recipient.
type Record struct {
	QueueID       string
	Sender        string
	OrigRecipient string
	Recipient     string // after rematch
	Key           string
	Actions       []ActionLog
	Outcome       Outcome
	Error         string
	Detail        string // where the rescue copy went, or why it was lost
}

// Result is what a run did.
type Result struct {
	Outcome    Outcome
	Records    []Record
	RulesStale string // non-empty: the last valid rules were used, and why
	Err        error  // the reason for a defer or rescue
}

// Run delivers req. It never panics out (a panic defers) and never returns
// an outcome other than the four.
func Run(ctx context.Context, cfg Config, req Request) (res Result) {
	defer func() {
		if r := recover(); r != nil {
			res.Outcome = Deferred
			res.Err = fmt.Errorf("panic: %v", r)
		}
	}()
	if cfg.Deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Deadline)
		defer cancel()
	}
	loaded, err := rules.Load(cfg.RulesPath)
	if err != nil {
		res.Outcome = Deferred
		res.Err = err
		for _, r := range req.Recipients {
			res.Records = append(res.Records, Record{QueueID: req.QueueID, Sender: req.Sender, OrigRecipient: r, Recipient: r, Outcome: Deferred, Error: err.Error()})
		}
		return res
	}
	if loaded.Stale {
		res.RulesStale = loaded.Reason
	}
	r := runner{ctx: ctx, cfg: cfg, set: loaded.Set, req: req}
	return r.run(res)
}

type runner struct {
	ctx context.Context
	cfg Config
	set *rules.Set
	req Request
}

func (r *runner) run(res Result) Result {
	res.Outcome = Dropped
	var failure error
	var failed int
	for i, rcpt := range r.req.Recipients {
		rec, err := r.recipient(rcpt)
		res.Records = append(res.Records, rec)
		if r.ctx.Err() != nil {
			failure = fmt.Errorf("deadline: %w", r.ctx.Err())
			failed = i
			break
		}
		if err != nil {
			failure, failed = err, i
			break
		}
		if rec.Outcome == Delivered {
			res.Outcome = Delivered
		}
	}
	if failure == nil {
		return res
	}
	res.Err = failure
	// The rest of the recipients are not routed: the rescue copy (or the
	// retry) covers the whole message, as in the original.
	for _, rcpt := range r.req.Recipients[failed+1:] {
		res.Records = append(res.Records, Record{QueueID: r.req.QueueID, Sender: r.req.Sender, OrigRecipient: rcpt, Recipient: rcpt, Error: "not routed: an earlier recipient of this call failed"})
	}
	outcome, detail := r.rescue(failure, res.Records[failed].Recipient)
	res.Outcome = outcome
	for i := failed; i < len(res.Records); i++ {
		res.Records[i].Outcome = outcome
		res.Records[i].Detail = detail
	}
	return res
}

// recipient routes one recipient and runs its actions.
func (r *runner) recipient(rcpt string) (Record, error) {
	rec := Record{QueueID: r.req.QueueID, Sender: r.req.Sender, OrigRecipient: rcpt, Recipient: rcpt}
	plan := route.Resolve(r.set, rcpt)
	rec.Recipient, rec.Key = plan.Rewritten, plan.Key
	if message.HasDeliveredTo(r.req.Message, plan.Rewritten) || message.HasDeliveredTo(r.req.Message, rcpt) {
		rec.Error = ErrLoop.Error()
		return rec, fmt.Errorf("%s: %w", plan.Rewritten, ErrLoop)
	}
	if plan.Err != nil {
		rec.Error = plan.Err.Error()
		return rec, plan.Err
	}
	d := &action.Delivery{
		Sender: r.req.Sender, Recipient: plan.Rewritten, Recipients: r.req.Recipients,
		Message: r.req.Message, Sendmail: r.cfg.Sendmail, ForwardSender: action.ForwardSender(r.set.ForwardSender, r.cfg.ForwardSender, plan.Rewritten),
	}
	rec.Outcome = Dropped
	for i, pl := range plan.Actions {
		if err := r.ctx.Err(); err != nil {
			rec.Error = err.Error()
			return rec, err
		}
		delivered, err := r.runPlanned(pl, d, &rec.Actions)
		if err != nil {
			for _, rest := range plan.Actions[i+1:] {
				rec.Actions = append(rec.Actions, ActionLog{Action: rest.Action.Summary(), Result: "skipped"})
			}
			rec.Error = err.Error()
			return rec, fmt.Errorf("action %d (%s): %w", i+1, pl.Action.Summary(), err)
		}
		if delivered {
			rec.Outcome = Delivered
		}
	}
	return rec, nil
}

// runPlanned runs one action and, when it fails, its onerror list. It
// reports whether the message was kept somewhere (not only dropped).
func (r *runner) runPlanned(pl route.Planned, d *action.Delivery, logs *[]ActionLog) (bool, error) {
	_, err := action.Run(r.ctx, pl.Action, d)
	desc := pl.Action.Summary()
	if err == nil {
		*logs = append(*logs, ActionLog{Action: desc, Result: "ok"})
		return keeps(pl.Action), nil
	}
	*logs = append(*logs, ActionLog{Action: desc, Result: "failed: " + err.Error()})
	if r.ctx.Err() != nil || len(pl.OnError) == 0 {
		return false, err
	}
	kept := false
	for _, oe := range pl.OnError {
		k, oerr := r.runPlanned(oe, d, logs)
		if oerr != nil {
			return false, fmt.Errorf("%w; onerror: %w", err, oerr)
		}
		kept = kept || k
	}
	return kept, nil
}

func keeps(a *rules.Action) bool {
	return a.Type != rules.TypeNothing && a.Type != rules.TypeDiscard
}

// rescue saves the message after failure and says how the call ends.
func (r *runner) rescue(failure error, rcpt string) (Outcome, string) {
	if r.ctx.Err() != nil {
		// Past our own deadline Postfix would soon kill us and bounce:
		// defer now and let it retry.
		return Deferred, "deferred: agent deadline passed"
	}
	dir := r.set.Rescue
	var err error
	var where string
	switch {
	case dir == "":
		err = errors.New("no rescue directory configured")
	case !filepath.IsAbs(dir):
		err = fmt.Errorf("rescue directory %q is not absolute", dir)
	case r.set.RescueJSON:
		where, err = dump.WriteRescue(dir, dump.Dump{Sender: r.req.Sender, Recipients: r.req.Recipients, Recipient: rcpt, Mail: r.req.Message})
	default:
		// Return-Path and X-Original-To keep the envelope; not Delivered-To,
		// which would make a re-injected rescue copy look like a loop.
		where, err = maildir.Store(dir, "", message.RescueHeaders(r.req.Sender, rcpt, r.req.Message), r.req.Message)
	}
	if err == nil {
		return Rescued, "rescued to " + where
	}
	if r.set.DieQuietly {
		return Dropped, fmt.Sprintf("LOST (die_quietly): rescue failed: %v", err)
	}
	return Deferred, fmt.Sprintf("deferred: rescue failed: %v", err)
}
